#include "hv/qemu/qemu_confinement.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace hearth::hv::qemu {
namespace {

namespace fs = std::filesystem;

// True when `path` is `dir` or inside it (both absolute and normal).
bool Inside(const fs::path& path, const fs::path& dir) {
  auto rel = path.lexically_normal().lexically_relative(dir.lexically_normal());
  return !rel.empty() && *rel.begin() != "..";
}

void AddTraverse(std::vector<Grant>& out, const fs::path& dir, const fs::path& data_dir) {
  // Every directory from the data directory down to `dir`.
  std::vector<fs::path> chain;
  for (fs::path d = dir.lexically_normal(); Inside(d, data_dir); d = d.parent_path()) {
    chain.push_back(d);
    if (d == data_dir.lexically_normal() || d == d.parent_path()) break;
  }
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    Grant g{*it, Grant::Kind::kTraverse};
    if (std::find(out.begin(), out.end(), g) == out.end()) out.push_back(g);
  }
}

}  // namespace

int64_t QemuMemoryLimitBytes(MiB guest, Accel accel) {
  int64_t mib = guest.value + 96 + guest.value / 64;
  if (accel == Accel::kTcg) mib += kTcgCacheMiB;
  return mib << 20;
}

std::vector<Grant> PlanGrants(const MachineSpec& spec, const fs::path& data_dir) {
  std::vector<Grant> out;
  if (data_dir.empty()) return out;
  // The VM's directory gets its own group from AssignVmmUser; only the path to it is granted.
  AddTraverse(out, spec.vm_dir.parent_path(), data_dir);
  auto shared = [&](const std::string& file, bool writable) {
    if (file.empty() || !Inside(file, data_dir)) return;
    if (Inside(file, spec.vm_dir) || writable) {
      // A writable disk is the VM's alone, as with Firecracker's jailer.
      AddTraverse(out, fs::path(file).parent_path(), data_dir);
      out.push_back({file, Grant::Kind::kOwn});
      return;
    }
    AddTraverse(out, fs::path(file).parent_path(), data_dir);
    out.push_back({file, Grant::Kind::kShareRead});
  };
  shared(spec.kernel, false);
  shared(spec.initrd, false);
  shared(spec.rootfs, !spec.rootfs_readonly);
  for (const fs::path& own :
       {spec.memory_file, spec.console_log, fs::path(spec.agent_pipe.string() + ".in"),
        fs::path(spec.agent_pipe.string() + ".out")}) {
    if (!own.empty() && own != ".in" && own != ".out") out.push_back({own, Grant::Kind::kOwn});
  }
  // The VM directory is traversed through its own group (AssignVmmUser), not the shared one.
  std::erase(out, Grant{spec.vm_dir.lexically_normal(), Grant::Kind::kTraverse});
  return out;
}

Status ApplyGrants(const std::vector<Grant>& grants, const VmmUser& user) {
  for (const auto& g : grants) {
    struct stat st {};
    if (::lstat(g.path.c_str(), &st) != 0) {
      if (g.kind == Grant::Kind::kOwn && errno == ENOENT) continue;  // QEMU creates it
      return Fail(Code::kInternal, fmt::format("stat {}: {}", g.path.string(), strerror(errno)));
    }
    // A symlink's target may be anywhere (a kernel under /boot): it is not hearth's to re-own or
    // re-mode. QEMU's access to it is checked as its user before exec (QemuOpens).
    if (S_ISLNK(st.st_mode)) continue;
    int rc = 0;
    switch (g.kind) {
      case Grant::Kind::kTraverse:
        rc = ::chown(g.path.c_str(), static_cast<uid_t>(-1), user.shared_gid);
        if (rc == 0) rc = ::chmod(g.path.c_str(), (st.st_mode & 0700) | 0010);
        break;
      case Grant::Kind::kShareRead:
        rc = ::chown(g.path.c_str(), static_cast<uid_t>(-1), user.shared_gid);
        if (rc == 0) rc = ::chmod(g.path.c_str(), (st.st_mode & 0700) | 0040);
        break;
      case Grant::Kind::kOwn:
        rc = ::chown(g.path.c_str(), user.uid, user.gid);
        if (rc == 0) rc = ::chmod(g.path.c_str(), 0600);
        break;
    }
    if (rc != 0) {
      return Fail(Code::kInternal, fmt::format("giving {} to the VMM's user {}: {}",
                                               g.path.string(), user.uid, strerror(errno)));
    }
  }
  return Ok();
}

Status CheckDataDirReachable(const fs::path& data_dir, const VmmUserRange& users) {
  if (!users.enabled()) return Ok();
  fs::path dir = data_dir.lexically_normal();
  while (dir.has_relative_path() && dir != dir.parent_path()) {
    dir = dir.parent_path();
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) continue;  // not there yet: created with the data dir
    bool passable = (st.st_mode & S_IXOTH) || (st.st_gid == users.base && (st.st_mode & S_IXGRP));
    if (!passable) {
      return Fail(Code::kFailedPrecondition,
                  fmt::format("--data-dir {}: QEMU runs as unprivileged users (--vmm-id-base {}) "
                              "and cannot pass through {} (mode {:04o}); `chmod o+x {}`, or put "
                              "the data dir elsewhere, or run QEMU as root with --vmm-id-base 0",
                              data_dir.string(), users.base, dir.string(), st.st_mode & 07777,
                              dir.string()));
    }
  }
  return Ok();
}

std::vector<std::pair<std::string, int>> QemuOpens(const MachineSpec& spec) {
  std::vector<std::pair<std::string, int>> out;
  auto add = [&](const std::string& path, int mode) {
    if (!path.empty()) out.emplace_back(path, mode);
  };
  add(spec.kernel, R_OK);
  add(spec.initrd, R_OK);
  add(spec.rootfs, spec.rootfs_readonly ? R_OK : R_OK | W_OK);
  add(spec.memory_file.string(), R_OK | W_OK);
  add(spec.console_log.string(), W_OK);
  if (!spec.agent_pipe.empty()) {
    add(spec.agent_pipe.string() + ".in", R_OK | W_OK);
    add(spec.agent_pipe.string() + ".out", R_OK | W_OK);
  }
  return out;
}

}  // namespace hearth::hv::qemu

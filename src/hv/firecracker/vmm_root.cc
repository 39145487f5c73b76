#include "hv/firecracker/vmm_root.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace hearth::hv::firecracker {
namespace {

namespace fs = std::filesystem;

tl::unexpected<Error> Errno(std::string what) {
  return Fail(Code::kInternal, fmt::format("{}: {}", what, strerror(errno)));
}

}  // namespace

VmmRoot VmmRoot::Direct(fs::path vm_dir) {
  VmmRoot r;
  r.dir_ = std::move(vm_dir);
  return r;
}

VmmRoot VmmRoot::Jailed(const JailConfig& jail, std::string_view vm_id) {
  VmmRoot r;
  r.jailed_ = true;
  r.jail_dir_ = jail.chroot_base / jail.firecracker.filename() / std::string(vm_id);
  r.dir_ = r.jail_dir_ / files::kJailRoot;
  r.uid_ = jail.uid;
  r.gid_ = jail.gid;
  return r;
}

std::string VmmRoot::Vmm(std::string_view name) const {
  return jailed_ ? "/" + std::string(name) : (dir_ / std::string(name)).string();
}

fs::path VmmRoot::Host(std::string_view name) const { return dir_ / std::string(name); }

Result<std::string> VmmRoot::Import(const fs::path& source, std::string_view name, bool writable,
                                    bool may_copy) const {
  if (!jailed_) return source.string();
  fs::path target = Host(name);
  std::error_code ec;
  fs::remove(target, ec);
  if (::link(source.c_str(), target.c_str()) != 0) {
    if (errno != EXDEV || !may_copy) {
      return Fail(Code::kFailedPrecondition,
                  fmt::format("linking {} into the jail {}: {}{}", source.string(), dir_.string(),
                              strerror(errno),
                              errno == EXDEV ? "; put the jailer's chroot base on the same "
                                               "filesystem as the data directory"
                                             : ""));
    }
    fs::copy_file(source, target, ec);
    if (ec) {
      return Fail(Code::kInternal, fmt::format("copying {} into the jail {}: {}", source.string(),
                                               dir_.string(), ec.message()));
    }
  }
  // A hard link shares the inode: giving it to the jail changes the original's owner or group.
  struct stat st {};
  if (::stat(target.c_str(), &st) != 0) return Errno("stat " + target.string());
  if (writable) {
    if (::chown(target.c_str(), uid_, gid_) != 0) return Errno("chown " + target.string());
  } else if (st.st_uid != uid_ && st.st_gid != gid_ && !(st.st_mode & S_IROTH)) {
    if (::chown(target.c_str(), static_cast<uid_t>(-1), gid_) != 0) {
      return Errno("chown " + target.string());
    }
    if (::chmod(target.c_str(), (st.st_mode & 07777) | S_IRGRP) != 0) {
      return Errno("chmod " + target.string());
    }
  }
  return Vmm(name);
}

Status VmmRoot::Export(std::string_view name, const fs::path& target) const {
  fs::path source = Host(name);
  std::error_code ec;
  fs::rename(source, target, ec);
  if (!ec) return Ok();
  if (ec != std::errc::cross_device_link) {
    return Fail(Code::kInternal,
                fmt::format("moving {} to {}: {}", source.string(), target.string(), ec.message()));
  }
  fs::path partial = target.string() + std::string(files::kPartialSuffix);
  fs::copy_file(source, partial, fs::copy_options::overwrite_existing, ec);
  if (!ec) fs::rename(partial, target, ec);
  if (ec) {
    return Fail(Code::kInternal, fmt::format("copying {} to {}: {}", source.string(),
                                             target.string(), ec.message()));
  }
  fs::remove(source, ec);
  return Ok();
}

Status VmmRoot::Reset() const {
  std::error_code ec;
  if (jailed_) fs::remove_all(jail_dir_, ec);
  fs::create_directories(dir_, ec);
  if (ec) {
    return Fail(Code::kInternal, fmt::format("creating {}: {}", dir_.string(), ec.message()));
  }
  if (jailed_) {
    // hearthd's umask makes directories 0700: the path down to the chroot stays traversable (as
    // the jailer makes it), and the chroot itself is the jail user's, as the jailer leaves it.
    for (const fs::path& d : {jail_dir_.parent_path(), jail_dir_}) {
      fs::permissions(d, fs::perms(0755), ec);
    }
    if (::chown(dir_.c_str(), uid_, gid_) != 0) return Errno("chown " + dir_.string());
  }
  return Ok();
}

void VmmRoot::Remove() const {
  if (!jailed_) return;
  std::error_code ec;
  fs::remove_all(jail_dir_, ec);
}

Status VmmRoot::MakeFile(std::string_view name) const {
  fs::path path = Host(name);
  std::error_code ec;
  fs::remove(path, ec);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("creating " + path.string());
  ::close(fd);
  if (jailed_ && ::chown(path.c_str(), uid_, gid_) != 0) return Errno("chown " + path.string());
  return Ok();
}

Status VmmRoot::MakeFifo(std::string_view name) const {
  fs::path path = Host(name);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISFIFO(st.st_mode)) {
    std::error_code ec;
    fs::remove(path, ec);
    if (::mkfifo(path.c_str(), 0600) != 0) return Errno("mkfifo " + path.string());
  }
  if (jailed_ && ::chown(path.c_str(), uid_, gid_) != 0) return Errno("chown " + path.string());
  return Ok();
}

}  // namespace hearth::hv::firecracker

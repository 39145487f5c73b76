#include "hv/cgroup.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace hearth::hv {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> Split(std::string_view text, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(sep, start);
    if (end == std::string_view::npos) end = text.size();
    out.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

bool Has(const std::vector<std::string>& items, std::string_view item) {
  return std::find(items.begin(), items.end(), item) != items.end();
}

struct Mount {
  std::string root;                  // the mount's root inside its hierarchy
  fs::path point;                    // where it is mounted
  std::string fstype;                // cgroup or cgroup2
  std::vector<std::string> options;  // super options (v1: the controllers)
};

std::vector<Mount> CgroupMounts(std::string_view mountinfo) {
  std::vector<Mount> mounts;
  for (const auto& line : Split(mountinfo, '\n')) {
    auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    auto before = Split(line.substr(0, dash), ' ');
    auto after = Split(line.substr(dash + 3), ' ');
    if (before.size() < 5 || after.size() < 3) continue;
    if (after[0] != "cgroup" && after[0] != "cgroup2") continue;
    mounts.push_back({before[3], before[4], after[0], Split(after[2], ',')});
  }
  return mounts;
}

// The directory of cgroup `path` (as /proc/self/cgroup shows it) under `mount`.
fs::path Under(const Mount& mount, std::string path) {
  if (mount.root != "/" && path.rfind(mount.root, 0) == 0) path = path.substr(mount.root.size());
  fs::path out = mount.point;
  for (const auto& part : Split(path, '/')) {
    if (!part.empty()) out /= part;
  }
  return out;
}

// hearthd's own cgroup in the v1 hierarchy that has `controller`; empty when it has none.
std::string OwnV1Path(std::string_view self_cgroup, std::string_view controller) {
  for (const auto& line : Split(self_cgroup, '\n')) {
    auto fields = Split(line, ':');
    if (fields.size() < 3 || fields[0] == "0") continue;
    if (Has(Split(fields[1], ','), controller))
      return line.substr(line.find(':', line.find(':') + 1) + 1);
  }
  return "";
}

std::string Trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

std::string ReadText(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

tl::unexpected<Error> CgroupError(const fs::path& path, std::string_view what, int err) {
  return Fail(Code::kFailedPrecondition,
              fmt::format("cgroup {}: {} {}: {}; hearthd needs a writable cgroup hierarchy with "
                          "the memory and cpu controllers (see README, \"Confinement\")",
                          path.string(), what, path.string(), strerror(err)));
}

Status WriteFile(const CgroupWrite& w) {
  int fd = ::open(w.file.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return CgroupError(w.file, "opening", errno);
  ssize_t n = ::write(fd, w.value.data(), w.value.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(w.value.size())) {
    return CgroupError(w.file, fmt::format("writing '{}' to", w.value), n < 0 ? err : EIO);
  }
  return Ok();
}

}  // namespace

CgroupHierarchy FindCgroupHierarchy(std::string_view mountinfo, std::string_view self_cgroup,
                                    const std::function<std::string(const fs::path&)>& read_file) {
  CgroupHierarchy h;
  auto mounts = CgroupMounts(mountinfo);
  std::string v2_note;
  for (const auto& m : mounts) {
    if (m.fstype != "cgroup2") continue;
    auto controllers = Split(Trim(read_file(m.point / "cgroup.controllers")), ' ');
    if (Has(controllers, "memory") && Has(controllers, "cpu")) {
      h.kind = CgroupHierarchy::Kind::kV2;
      h.v2_mount = m.point;
      h.parent = m.point / std::string(kCgroupSlice);
      return h;
    }
    v2_note = fmt::format("the cgroup v2 mount {} offers no memory and cpu controllers",
                          m.point.string());
  }
  const Mount* memory = nullptr;
  const Mount* cpu = nullptr;
  for (const auto& m : mounts) {
    if (m.fstype != "cgroup") continue;
    if (!memory && Has(m.options, "memory")) memory = &m;
    if (!cpu && Has(m.options, "cpu")) cpu = &m;
  }
  if (memory && cpu) {
    h.kind = CgroupHierarchy::Kind::kV1;
    h.memory_parent = Under(*memory, OwnV1Path(self_cgroup, "memory")) / std::string(kCgroupSlice);
    h.cpu_parent = Under(*cpu, OwnV1Path(self_cgroup, "cpu")) / std::string(kCgroupSlice);
    return h;
  }
  h.why_none = v2_note.empty() ? "no cgroup v2 mount with the memory and cpu controllers" : v2_note;
  h.why_none += ", and no cgroup v1 memory and cpu mounts";
  return h;
}

CgroupHierarchy FindOwnCgroupHierarchy() {
  return FindCgroupHierarchy(ReadText("/proc/self/mountinfo"), ReadText("/proc/self/cgroup"),
                             ReadText);
}

CgroupPlan PlanVmCgroup(const CgroupHierarchy& h, std::string_view vm_id, int64_t memory_max_bytes,
                        int vcpus) {
  CgroupPlan plan;
  std::string name(vm_id);
  int units = std::max(1, vcpus);
  switch (h.kind) {
    case CgroupHierarchy::Kind::kNone:
      break;
    case CgroupHierarchy::Kind::kV2: {
      // Controllers reach a child only when every ancestor enables them for its children.
      plan.parents = {h.parent};
      plan.parent_writes = {{h.v2_mount / "cgroup.subtree_control", "+memory +cpu"},
                            {h.parent / "cgroup.subtree_control", "+memory +cpu"}};
      fs::path dir = h.parent / name;
      plan.dirs = {dir};
      plan.writes = {{dir / "memory.max", std::to_string(memory_max_bytes)},
                     {dir / "memory.swap.max", "0"},
                     {dir / "cpu.weight", std::to_string(std::min(10000, 100 * units))}};
      plan.procs = {dir / "cgroup.procs"};
      break;
    }
    case CgroupHierarchy::Kind::kV1: {
      plan.parents = {h.memory_parent, h.cpu_parent};
      fs::path memory = h.memory_parent / name;
      fs::path cpu = h.cpu_parent / name;
      plan.dirs = {memory, cpu};
      plan.writes = {{memory / "memory.limit_in_bytes", std::to_string(memory_max_bytes)},
                     {cpu / "cpu.shares", std::to_string(std::min(262144, 1024 * units))}};
      plan.procs = {memory / "cgroup.procs", cpu / "cgroup.procs"};
      break;
    }
  }
  return plan;
}

Status CreateCgroups(const CgroupPlan& plan) {
  for (const auto& dir : plan.parents) {
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return CgroupError(dir, "creating", errno);
    }
  }
  for (const auto& w : plan.parent_writes) {
    if (auto s = WriteFile(w); !s) return s;
  }
  for (const auto& dir : plan.dirs) {
    ::rmdir(dir.c_str());  // an empty one of the VM's previous process
    if (::mkdir(dir.c_str(), 0755) != 0) {
      return CgroupError(dir, errno == EEXIST ? "still has processes:" : "creating",
                         errno == EEXIST ? EBUSY : errno);
    }
  }
  for (const auto& w : plan.writes) {
    // memory.swap.max exists only where swap accounting is on; without it there is nothing to cap.
    if (w.file.filename() == "memory.swap.max" && ::access(w.file.c_str(), F_OK) != 0) continue;
    if (auto s = WriteFile(w); !s) {
      RemoveCgroups(plan);
      return s;
    }
  }
  return Ok();
}

Result<std::vector<int>> OpenCgroupProcs(const CgroupPlan& plan) {
  std::vector<int> fds;
  for (const auto& file : plan.procs) {
    int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      for (int f : fds) ::close(f);
      return CgroupError(file, "opening", err);
    }
    fds.push_back(fd);
  }
  return fds;
}

Status JoinCgroups(const std::vector<int>& procs, pid_t pid) {
  std::string text = std::to_string(pid);
  Status result = Ok();
  for (int fd : procs) {
    if (result && ::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
      result = Fail(Code::kFailedPrecondition,
                    fmt::format("moving pid {} into its cgroup: {}", pid, strerror(errno)));
    }
    ::close(fd);
  }
  return result;
}

bool RemoveCgroups(const CgroupPlan& plan) {
  bool all = true;
  for (const auto& dir : plan.dirs) {
    if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) all = false;
  }
  return all;
}

}  // namespace hearth::hv

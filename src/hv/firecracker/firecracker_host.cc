#include "hv/firecracker/firecracker_host.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace hearth::hv::firecracker {

namespace fs = std::filesystem;

Result<fs::path> FindExecutable(std::string_view configured, std::string_view default_name,
                                std::string_view flag, std::string_view path_env) {
  std::string name(configured.empty() ? default_name : configured);
  auto runnable = [](const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
  };
  if (name.find('/') != std::string::npos) {
    fs::path p = fs::absolute(name);
    if (runnable(p)) return p;
    return Fail(Code::kFailedPrecondition,
                fmt::format("--{}: {} is not an executable file ({}); install Firecracker's "
                            "release binaries (docs/firecracker.md) or give the right path",
                            flag, p.string(), strerror(errno)),
                std::string(flag));
  }
  std::string searched;
  size_t start = 0;
  while (start <= path_env.size()) {
    size_t end = path_env.find(':', start);
    if (end == std::string_view::npos) end = path_env.size();
    std::string dir(path_env.substr(start, end - start));
    start = end + 1;
    if (dir.empty()) continue;
    fs::path p = fs::path(dir) / name;
    if (runnable(p)) return fs::absolute(p);
    searched += (searched.empty() ? "" : ":") + dir;
  }
  return Fail(Code::kFailedPrecondition,
              fmt::format("no `{}` binary found: looked in PATH ({}); install it from the "
                          "Firecracker release tarball (docs/firecracker.md) or give its path "
                          "with --{} PATH",
                          name, searched.empty() ? "empty" : searched, flag),
              std::string(flag));
}

Status CheckKvmDevice(const fs::path& device) {
  int fd = ::open(device.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return Fail(Code::kFailedPrecondition,
                fmt::format("Firecracker needs KVM, and {} cannot be opened: {}; {}",
                            device.string(), strerror(err),
                            err == ENOENT ? "load the kvm_intel or kvm_amd module (and enable "
                                            "virtualization in the firmware)"
                                          : "run hearthd as root or give its user access to "
                                            "/dev/kvm (e.g. the kvm group)"));
  }
  ::close(fd);
  return Ok();
}

}  // namespace hearth::hv::firecracker

#include "firecracker_double/host.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace hearth::fcdouble {

Fd::~Fd() { Reset(); }

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    Reset();
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

int Fd::Release() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

void Fd::Reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::string PathResolver::Resolve(const std::string& path) const {
  if (root_.empty()) return path;
  std::string rel = path;
  while (!rel.empty() && rel.front() == '/') rel.erase(0, 1);
  return root_ + "/" + rel;
}

std::string OsError(int err) {
  // Rust prints EBUSY as "Resource busy", EADDRINUSE as "Address in use".
  const char* text = err == EBUSY        ? "Resource busy"
                     : err == EADDRINUSE ? "Address in use"
                                         : std::strerror(err);
  return fmt::format("{} (os error {})", text, err);
}

Result<Fd> OpenFile(const std::string& host_path, bool writable) {
  int fd = ::open(host_path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return Fail(Code::kFailedPrecondition, OsError(errno));
  return Fd(fd);
}

Result<Fd> OpenTap(const std::string& tun_path, const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return Fail(Code::kInvalidArgument,
                fmt::format("Open tap device failed: Invalid interface name: {}", name));
  }
  Fd tun(::open(tun_path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (tun.get() < 0) {
    return Fail(Code::kFailedPrecondition,
                fmt::format("Open tap device failed: Error while opening {}: {}. Invalid TUN/TAP "
                            "Backend provided by {}. Check our documentation on setting up the "
                            "network devices.",
                            tun_path, OsError(errno), name));
  }
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(tun.get(), TUNSETIFF, &ifr) != 0) {
    return Fail(Code::kFailedPrecondition,
                fmt::format("Open tap device failed: Error while creating ifreq structure: {}. "
                            "Invalid TUN/TAP Backend provided by {}. Check our documentation on "
                            "setting up the network devices.",
                            OsError(errno), name));
  }
  return tun;
}

Result<Fd> ListenUnix(const std::string& host_path, int backlog, int* os_error) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (host_path.size() >= sizeof(addr.sun_path)) {
    return Fail(Code::kInvalidArgument, fmt::format("path too long: {}", host_path));
  }
  std::memcpy(addr.sun_path, host_path.c_str(), host_path.size() + 1);
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    const int err = errno;
    if (os_error != nullptr) *os_error = err;
    return Fail(Code::kInternal, OsError(err));
  }
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(fd.get(), backlog) != 0) {
    const int err = errno;
    if (os_error != nullptr) *os_error = err;
    return Fail(Code::kFailedPrecondition, OsError(err));
  }
  return fd;
}

}  // namespace hearth::fcdouble

#include "net/tun_device.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace hearth::net {
namespace {

std::filesystem::path SysClassNet(std::string_view name) {
  return std::filesystem::path("/sys/class/net") / std::string(name);
}

Error TunError(std::string_view name, std::string_view step, int e) {
  Code code = Code::kInternal;
  std::string fix;
  if (e == EPERM || e == EACCES) {
    code = Code::kPermissionDenied;
    fix = "; hearthd needs root (CAP_NET_ADMIN) to create taps";
  } else if (e == ENOENT || e == ENODEV || e == ENXIO) {
    code = Code::kUnavailable;
    fix = "; load the tun module (`modprobe tun`)";
  } else if (e == EBUSY) {
    code = Code::kFailedPrecondition;
    fix = fmt::format("; another process holds tap {}, or it has other flags", name);
  }
  return Error{code, fmt::format("creating tap {}: {}: {}{}", name, step, std::strerror(e), fix)};
}

}  // namespace

bool InterfaceExists(std::string_view name) {
  std::error_code ec;
  return !name.empty() && std::filesystem::exists(SysClassNet(name), ec);
}

std::optional<unsigned> TunFlags(std::string_view name) {
  if (name.empty()) return std::nullopt;
  std::ifstream in(SysClassNet(name) / "tun_flags");
  std::string text;
  if (!(in >> text)) return std::nullopt;
  try {
    return static_cast<unsigned>(std::stoul(text, nullptr, 16));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::string InterfaceAlias(std::string_view name) {
  if (name.empty()) return "";
  std::ifstream in(SysClassNet(name) / "ifalias");
  std::string alias;
  std::getline(in, alias);
  return alias;
}

bool IsTap(unsigned flags) { return (flags & (IFF_TUN | IFF_TAP)) == IFF_TAP; }

bool IsHearthStyleTap(unsigned flags) {
  return IsTap(flags) && (flags & IFF_PERSIST) && !(flags & IFF_MULTI_QUEUE);
}

bool AttachTapFd(int fd, std::string_view name) {
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.data(), std::min<size_t>(name.size(), IFNAMSIZ - 1));
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  return ioctl(fd, TUNSETIFF, &ifr) == 0;
}

Status GrantTap(std::string_view name, uid_t uid, gid_t gid) {
  int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    return Fail(Code::kInternal, fmt::format("opening /dev/net/tun: {}", std::strerror(errno)));
  }
  Status result = Ok();
  if (!AttachTapFd(fd, name) || ioctl(fd, TUNSETOWNER, uid) < 0 ||
      ioctl(fd, TUNSETGROUP, gid) < 0) {
    result = Fail(Code::kInternal, fmt::format("giving tap {} to the jail's {}:{}: {}", name, uid,
                                               gid, std::strerror(errno)));
  }
  ::close(fd);
  return result;
}

Status CreatePersistentTap(std::string_view name) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return Fail(Code::kInvalidArgument,
                fmt::format("tap name \"{}\" must be 1 to {} characters", name, IFNAMSIZ - 1));
  }
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) return Fail(TunError(name, "open /dev/net/tun", errno));
  Status status = Ok();
  if (!AttachTapFd(fd, name)) {
    status = Fail(TunError(name, "TUNSETIFF", errno));
  } else if (ioctl(fd, TUNSETPERSIST, 1) < 0) {
    // Closing the fd below removes the (then non-persistent) tap again.
    status = Fail(TunError(name, "TUNSETPERSIST", errno));
  }
  close(fd);
  return status;
}

}  // namespace hearth::net

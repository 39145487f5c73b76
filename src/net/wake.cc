#include "net/wake.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "net/tun_device.h"

namespace hearth::net {

Result<WakeFilter> MakeWakeFilter(std::string_view guest_mac, std::string_view guest_ip,
                                  std::vector<WakePort> ports) {
  WakeFilter f;
  unsigned m[6];
  std::string mac(guest_mac);
  if (std::sscanf(mac.c_str(), "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) !=
      6) {
    return Fail(Code::kInvalidArgument,
                fmt::format("guest MAC \"{}\" is not aa:bb:cc:dd:ee:ff", mac));
  }
  for (int i = 0; i < 6; ++i) f.guest_mac[i] = static_cast<uint8_t>(m[i]);
  in_addr a{};
  if (inet_pton(AF_INET, std::string(guest_ip).c_str(), &a) != 1) {
    return Fail(Code::kInvalidArgument, fmt::format("guest address \"{}\" is not IPv4", guest_ip));
  }
  f.guest_ip = ntohl(a.s_addr);
  f.ports = std::move(ports);
  return f;
}

FrameVerdict Classify(std::string_view frame, const WakeFilter& filter) {
  auto byte = [&](size_t i) { return static_cast<uint8_t>(frame[i]); };
  if (frame.size() < 14 + 20) return FrameVerdict::kNoise;
  if (std::memcmp(frame.data(), filter.guest_mac.data(), 6) != 0) return FrameVerdict::kNoise;
  if (byte(12) != 0x08 || byte(13) != 0x00) return FrameVerdict::kNoise;  // IPv4 only
  size_t ip = 14;
  if ((byte(ip) >> 4) != 4) return FrameVerdict::kNoise;
  size_t ihl = (byte(ip) & 0x0f) * 4u;
  uint32_t dst = (uint32_t{byte(ip + 16)} << 24) | (uint32_t{byte(ip + 17)} << 16) |
                 (uint32_t{byte(ip + 18)} << 8) | byte(ip + 19);
  if (ihl < 20 || dst != filter.guest_ip) return FrameVerdict::kNoise;
  if (filter.ports.empty()) return FrameVerdict::kWake;
  uint8_t proto = byte(ip + 9);
  bool first_fragment = ((byte(ip + 6) & 0x1f) == 0 && byte(ip + 7) == 0);
  size_t l4 = ip + ihl;
  if (!first_fragment || (proto != 6 && proto != 17) || frame.size() < l4 + 4) {
    return FrameVerdict::kFiltered;
  }
  int port = (byte(l4 + 2) << 8) | byte(l4 + 3);
  Protocol p = proto == 6 ? Protocol::kTcp : Protocol::kUdp;
  for (const auto& w : filter.ports) {
    if (w.protocol == p && w.port == port) return FrameVerdict::kWake;
  }
  return FrameVerdict::kFiltered;
}

Result<int> OpenTap(std::string_view name) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return Fail(Code::kInvalidArgument, fmt::format("tap name \"{}\" is not valid", name));
  }
  int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    return Fail(Code::kUnavailable, fmt::format("open /dev/net/tun: {}", std::strerror(errno)));
  }
  if (!AttachTapFd(fd, name) || ioctl(fd, TUNSETOFFLOAD, 0) < 0) {
    int e = errno;
    ::close(fd);
    return Fail(e == EBUSY ? Code::kFailedPrecondition : Code::kInternal,
                fmt::format("attaching to tap {}: {}{}", name, std::strerror(e),
                            e == EBUSY ? " (another process, e.g. a VMM, holds it)" : ""));
  }
  return fd;
}

namespace {

// One AF_PACKET socket for the whole process, never closed: closing one waits for an RCU grace
// period (synchronize_net, ~10 ms measured), which would come straight out of a wake's latency.
// With protocol 0 it receives nothing; it only sends, addressed per frame.
Result<int> PacketSocket() {
  static std::mutex mu;
  static int fd = -1;
  std::lock_guard lock(mu);
  if (fd < 0) fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return Fail(Code::kInternal, fmt::format("AF_PACKET socket: {}", std::strerror(errno)));
  }
  return fd;
}

}  // namespace

Status SendToGuest(std::string_view tap, const std::vector<std::string>& frames) {
  if (frames.empty()) return Ok();
  auto s = PacketSocket();
  if (!s) return Fail(s.error());
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = static_cast<int>(if_nametoindex(std::string(tap).c_str()));
  if (to.sll_ifindex == 0) {
    return Fail(Code::kInternal, fmt::format("finding tap {}: {}", tap, std::strerror(errno)));
  }
  Status status = Ok();
  for (const auto& f : frames) {
    if (f.size() < 14) continue;                                            // not an Ethernet frame
    std::memcpy(&to.sll_protocol, f.data() + 12, sizeof(to.sll_protocol));  // its EtherType
    if (sendto(*s, f.data(), f.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) < 0) {
      status = Fail(Code::kInternal,
                    fmt::format("sending a frame into tap {}: {}", tap, std::strerror(errno)));
    }
  }
  return status;
}

}  // namespace hearth::net

// LinuxPortHolders: PortHolders (model/host.h) from /proc. The sockets come from
// /proc/net/{tcp,tcp6} (listening) and /proc/net/{udp,udp6} (bound), which show hearthd's own
// network namespace, the host's; their holders from the socket inodes the /proc/<pid>/fd links
// name.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/host.h"

namespace hearth {

struct ProcSocket {
  int port = 0;
  uint64_t inode = 0;
  // The local address: an IPv4 dotted quad ("0.0.0.0" for IPv4's wildcard and for IPv4-mapped
  // IPv6 ones too), "::" for IPv6's wildcard, another IPv6 address in its usual text form.
  std::string address;
  bool operator==(const ProcSocket&) const = default;
};

// The sockets of a /proc/net/{tcp,tcp6,udp,udp6} text: with `listening_only`, those in state
// 0A (TCP LISTEN); otherwise all. Malformed lines are skipped.
std::vector<ProcSocket> ParseProcNetSockets(std::string_view text, bool listening_only);

// The inode of a /proc/<pid>/fd link target "socket:[12345]", or nullopt for anything else.
std::optional<uint64_t> ParseSocketLink(std::string_view target);

class LinuxPortHolders final : public PortHolders {
 public:
  // `proc`: where procfs is mounted (tests pass a directory laid out like it).
  explicit LinuxPortHolders(std::filesystem::path proc = "/proc") : proc_(std::move(proc)) {}
  // Reads /proc on every call (a few KiB per protocol; the fd walk only when a socket matches).
  std::optional<std::string> Holder(const std::string& host_ip, int port,
                                    Protocol protocol) const override;
  // Reads the interfaces' addresses (getifaddrs) on every call.
  bool IsHostAddress(const std::string& ip) const override;

 private:
  // "sshd (pid 412)" for the first process with an fd on one of `inodes`.
  std::optional<std::string> FindProcess(const std::vector<uint64_t>& inodes) const;
  std::filesystem::path proc_;
};

}  // namespace hearth

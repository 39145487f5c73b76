// VM addresses: each VM gets one /30 from the configured pool (network_pool), with the host end
// of its tap at .1 and the guest at .2 of that /30. The pool keeps no state; callers pass the
// addresses in use (the VM records), so allocation survives restarts without a second source of
// truth.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "net/ipv4.h"

namespace hearth::net {

struct VmAddress {
  std::string guest;  // "172.30.0.2"
  std::string host;   // "172.30.0.1" (host end of the VM's tap)
  int prefix = 30;
  std::string guest_cidr() const;  // "172.30.0.2/30"
  std::string host_cidr() const;   // "172.30.0.1/30"
  bool operator==(const VmAddress&) const = default;
};

// A pool of /30 subnets, one per VM: the n-th /30 has host .1 and guest .2 (offsets from the /30
// base). Immutable, so thread-safe.
class AddressPool {
 public:
  // "172.30.0.0/16": IPv4, prefix 8..29, no host bits set, and clear of the special ranges
  // 0.0.0.0/8, 127.0.0.0/8 (loopback), 169.254.0.0/16 (link-local), 224.0.0.0/4 (multicast)
  // and 240.0.0.0/4 (reserved, broadcast). Errors are about field "network_pool".
  static Result<AddressPool> Parse(std::string_view cidr);

  // failed_precondition when a host interface's network overlaps the pool, naming it (VM
  // routes would shadow the host's own); hearth's taps (kTapPrefix), which hold the pool's /30s,
  // are skipped.
  Status CheckHostNetworks(
      const std::vector<std::pair<std::string, Ipv4Network>>& interfaces) const;

  // The lowest /30 whose guest address is not in `used_guest_ips` (addresses outside the pool are
  // ignored). resource_exhausted when the pool is full.
  Result<VmAddress> Allocate(const std::vector<std::string>& used_guest_ips) const;
  // The VmAddress for a guest address of this pool; invalid_argument otherwise.
  Result<VmAddress> FromGuest(std::string_view guest_ip) const;

  const std::string& cidr() const { return cidr_; }
  // How many VMs the pool holds (its number of /30s).
  uint32_t capacity() const { return uint32_t{1} << (30 - network_.prefix); }

 private:
  explicit AddressPool(Ipv4Network network);
  VmAddress At(uint32_t index) const;

  Ipv4Network network_;
  std::string cidr_;
};

}  // namespace hearth::net

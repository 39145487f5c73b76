// IPv4 addresses and networks as host-order integers, parsed strictly: four decimal octets without
// leading zeros, so that a string names exactly one address and formats back to itself.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace hearth::net {

struct Ipv4Network {
  uint32_t base = 0;  // host order; host bits may be set when parsed, see HostBitsSet
  int prefix = 0;

  uint32_t mask() const { return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix); }
  bool Contains(uint32_t address) const { return (address & mask()) == (base & mask()); }
  bool HostBitsSet() const { return (base & ~mask()) != 0; }
  std::string ToString() const;  // "172.30.0.0/16"
};

// "172.30.0.2" -> 0xac1e0002; nullopt unless it is exactly a dotted quad.
std::optional<uint32_t> ParseIpv4(std::string_view text);
std::string FormatIpv4(uint32_t address);
// "172.30.0.0/16" -> {0xac1e0000, 16}; nullopt unless ADDRESS/PREFIX with prefix 0..32.
std::optional<Ipv4Network> ParseIpv4Network(std::string_view text);

}  // namespace hearth::net

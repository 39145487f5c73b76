#include "net/address_pool.h"

#include <fmt/format.h>

#include <unordered_set>

#include "net/tap.h"

namespace hearth::net {
namespace {

constexpr std::string_view kField = "network_pool";
constexpr int kMinPrefix = 8;   // 4M VMs is plenty; shorter prefixes are almost surely a typo
constexpr int kMaxPrefix = 29;  // two /30s

bool Overlaps(const Ipv4Network& a, const Ipv4Network& b) {
  return a.Contains(b.base) || b.Contains(a.base);
}

struct SpecialRange {
  const char* cidr;
  const char* what;
};
constexpr SpecialRange kSpecialRanges[] = {
    {"0.0.0.0/8", "\"this network\""},         {"127.0.0.0/8", "loopback"},
    {"169.254.0.0/16", "link-local"},          {"224.0.0.0/4", "multicast"},
    {"240.0.0.0/4", "reserved and broadcast"},
};

// The index of the /30 that holds `address` when it is that /30's guest (.2) address.
std::optional<uint32_t> GuestIndex(const Ipv4Network& pool, uint32_t address) {
  if (!pool.Contains(address) || (address & 3) != 2) return std::nullopt;
  return (address - pool.base) >> 2;
}

}  // namespace

std::string VmAddress::guest_cidr() const { return fmt::format("{}/{}", guest, prefix); }
std::string VmAddress::host_cidr() const { return fmt::format("{}/{}", host, prefix); }

AddressPool::AddressPool(Ipv4Network network) : network_(network), cidr_(network.ToString()) {}

Result<AddressPool> AddressPool::Parse(std::string_view cidr) {
  constexpr std::string_view kExample = "e.g. 172.30.0.0/16";
  if (cidr.empty()) {
    return Fail(Code::kInvalidArgument,
                fmt::format("network_pool is empty; set it to an IPv4 network for VM addresses, {}",
                            kExample),
                std::string(kField));
  }
  if (cidr.find(':') != std::string_view::npos) {
    return Fail(Code::kInvalidArgument,
                fmt::format("network_pool \"{}\" is IPv6; only IPv4 pools are supported, {}", cidr,
                            kExample),
                std::string(kField));
  }
  auto network = ParseIpv4Network(cidr);
  if (!network) {
    return Fail(Code::kInvalidArgument,
                fmt::format("network_pool \"{}\" is not an IPv4 network ADDRESS/PREFIX; use e.g. "
                            "172.30.0.0/16 (prefix /{} to /{})",
                            cidr, kMinPrefix, kMaxPrefix),
                std::string(kField));
  }
  if (network->prefix < kMinPrefix || network->prefix > kMaxPrefix) {
    return Fail(Code::kInvalidArgument,
                fmt::format("network_pool \"{}\" has prefix /{}; it must be /{} to /{} (each VM "
                            "takes a /30), {}",
                            cidr, network->prefix, kMinPrefix, kMaxPrefix, kExample),
                std::string(kField));
  }
  if (network->HostBitsSet()) {
    Ipv4Network fixed{network->base & network->mask(), network->prefix};
    return Fail(Code::kInvalidArgument,
                fmt::format("network_pool \"{}\" has host bits set; did you mean {}?", cidr,
                            fixed.ToString()),
                std::string(kField));
  }
  for (const SpecialRange& r : kSpecialRanges) {
    if (Overlaps(*network, *ParseIpv4Network(r.cidr))) {
      return Fail(Code::kInvalidArgument,
                  fmt::format("network_pool \"{}\" overlaps {} ({}), which cannot route to VMs; "
                              "use a private range, {}",
                              cidr, r.cidr, r.what, kExample),
                  std::string(kField));
    }
  }
  return AddressPool(*network);
}

Status AddressPool::CheckHostNetworks(
    const std::vector<std::pair<std::string, Ipv4Network>>& interfaces) const {
  for (const auto& [name, net] : interfaces) {
    if (name.rfind(kTapPrefix, 0) == 0) continue;
    Ipv4Network base{net.base & net.mask(), net.prefix};
    if (!Overlaps(network_, base)) continue;
    return Fail(Code::kFailedPrecondition,
                fmt::format("network_pool \"{}\" overlaps {} of host interface {} ({}/{}); pick a "
                            "range this host does not use, e.g. 172.30.0.0/16 or 10.213.0.0/16",
                            cidr_, base.ToString(), name, FormatIpv4(net.base), net.prefix),
                std::string(kField));
  }
  return Ok();
}

VmAddress AddressPool::At(uint32_t index) const {
  uint32_t base = network_.base + (index << 2);
  return VmAddress{FormatIpv4(base + 2), FormatIpv4(base + 1), 30};
}

Result<VmAddress> AddressPool::Allocate(const std::vector<std::string>& used_guest_ips) const {
  std::unordered_set<uint32_t> used;
  for (const auto& ip : used_guest_ips) {
    auto address = ParseIpv4(ip);
    if (!address) continue;
    if (auto index = GuestIndex(network_, *address)) used.insert(*index);
  }
  // At most used.size() + 1 steps: the pool holds no more than that many taken indexes in a row.
  for (uint32_t index = 0; index < capacity(); ++index) {
    if (!used.contains(index)) return At(index);
  }
  std::string grow = "delete VMs";
  if (network_.prefix > kMinPrefix) {
    Ipv4Network larger{0, network_.prefix - 1};
    larger.base = network_.base & larger.mask();
    grow = fmt::format("set network_pool to a larger network (e.g. {} holds {}) or delete VMs",
                       larger.ToString(), capacity() * 2);
  }
  return Fail(Code::kResourceExhausted,
              fmt::format("network pool {} is full: all {} VM addresses are in use; {}", cidr_,
                          capacity(), grow));
}

Result<VmAddress> AddressPool::FromGuest(std::string_view guest_ip) const {
  auto address = ParseIpv4(guest_ip);
  if (!address) {
    return Fail(
        Code::kInvalidArgument,
        fmt::format("\"{}\" is not an IPv4 address (expected e.g. {})", guest_ip, At(0).guest));
  }
  if (!network_.Contains(*address)) {
    return Fail(Code::kInvalidArgument,
                fmt::format("{} is outside the network pool {}; was network_pool changed? VMs "
                            "keep their address only while it is in the pool",
                            guest_ip, cidr_));
  }
  auto index = GuestIndex(network_, *address);
  if (!index) {
    return Fail(Code::kInvalidArgument,
                fmt::format("{} is not a guest address of the network pool {}: guests are .2 of "
                            "each /30 ({}, {}, ...)",
                            guest_ip, cidr_, At(0).guest, At(1).guest));
  }
  return At(*index);
}

}  // namespace hearth::net

// The host side of VM networking: each VM's persistent tap, its name and the guest's MAC on it
// (both derived from stored data, the VM id and the guest address, so they need no storage of
// their own), and the Network interface that sets up taps and hearth's nftables rules. An
// interface so that the node and the tests above it run without root.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "net/address_pool.h"
#include "net/ruleset.h"

namespace hearth::net {

// Every tap hearth creates starts with this; ListTaps finds them (e.g. orphans after a crash).
constexpr std::string_view kTapPrefix = "hth";

// "vm-0123456789abcdef" -> "hth0123456789ab": the prefix and the first 12 hex digits of the id,
// 15 characters (the kernel's limit, IFNAMSIZ - 1). An id not of the form "vm-" + 12 or more
// lowercase hex digits gets the first 12 hex digits of a hash of the whole id instead.
std::string TapName(std::string_view vm_id);

// "52:54:" + the guest IPv4 address's four bytes in hex, e.g. 52:54:ac:1e:00:02 for 172.30.0.2:
// locally administered, unicast and unique per address. A guest that is not an IPv4 address
// gives 52:54:00:00:00:00.
std::string GuestMac(const VmAddress& a);

// True for "52:54:ac:1e:00:02": six pairs of hex digits separated by ':'.
bool IsMacAddress(std::string_view mac);

// OK when `name` can be a network interface name: 1 to 15 characters, none of them '/', ':',
// whitespace or a control character, and not "." or "..".
Status ValidateInterfaceName(std::string_view name);

struct TapConfig {
  std::string name;  // TapName(vm id)
  VmAddress address;
  std::string guest_mac;  // GuestMac(address)
};

// Packets through a tap, both ways, since it was created.
struct TapCounters {
  uint64_t rx_packets = 0;  // sent by the guest
  uint64_t tx_packets = 0;  // sent to the guest
  bool operator==(const TapCounters&) const = default;
};

// Every method is idempotent. Thread-safe.
class Network {
 public:
  virtual ~Network() = default;
  // Host set-up once at start: net.ipv4.ip_forward=1 (logged when it changes it).
  virtual Status Prepare() = 0;
  // Creates (or fixes up) the VM's persistent tap: host address, link up, a permanent neighbour
  // entry guest ip -> guest mac (the host never ARPs, so a sleeping VM is not woken by it), IPv6
  // off (no ND/MLD noise) and route_localnet=1 (so that published ports answer on 127.0.0.1).
  // Other addresses and permanent neighbours on the tap are removed. failed_precondition when the
  // name belongs to something other than a persistent, single-queue tap, or when another
  // interface holds an address in the tap's /30.
  virtual Status EnsureTap(const TapConfig& tap) = 0;
  // Deletes the tap; OK if it is absent. failed_precondition if `name` is not a tap.
  // EnsureTap and RemoveTap take only names that start with kTapPrefix (invalid_argument).
  virtual Status RemoveTap(std::string_view name) = 0;
  // The taps whose name starts with kTapPrefix, sorted (other kinds of interface are left out).
  // A Network with an owner (NetworkOptions) lists only the taps it set up.
  virtual Result<std::vector<std::string>> ListTaps() = 0;
  // Replaces hearth's nftables table (`table ip hearth`, or NetworkOptions::table) with `rules` in
  // one transaction (ValidateRuleSet first).
  virtual Status ApplyRules(const RuleSet& rules) = 0;
  // Deletes hearth's nftables table; OK if it is absent.
  virtual Status RemoveRules() = 0;
  // The tap's packet counters (idle timeouts watch them). not_found when no interface has the
  // name; invalid_argument for a name EnsureTap would not take. Cheap: two small sysfs reads.
  virtual Result<TapCounters> Counters(std::string_view name) = 0;
  // Attaches to the VM's tap for holding it across VMM processes (wake.h: OpenTap). The caller
  // owns the returned fd.
  virtual Result<int> OpenTap(std::string_view name) = 0;
};

}  // namespace hearth::net

// hearth's nftables rules, all in its own tables (`table ip hearth` and `table arp hearth`;
// another name for a hearthd with a non-default data dir, see NetworkOptions), replaced as a whole
// on every change: egress NAT for the VM address pool, DNAT for published ports, and the filter
// that isolates guests (README.md, "Network isolation").
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "model/vm.h"

namespace hearth::net {

constexpr std::string_view kTableName = "hearth";

// A host port published to a VM.
struct Publish {
  std::string guest_ip;
  PortMapping mapping;
  bool operator==(const Publish&) const = default;
};

// A VM's end of its tap: the only source it may send from.
struct Guest {
  std::string tap;  // TapName(vm id), starts with kTapPrefix ("hth")
  std::string ip;   // the guest's address, in the pool
  std::string mac;  // GuestMac(address), e.g. "52:54:ac:1e:00:02"
  bool operator==(const Guest&) const = default;
};

struct RuleSet {
  std::string pool_cidr;   // the VM address pool
  bool masquerade = true;  // egress NAT for the pool
  std::vector<Publish> publish;
  std::vector<Guest> guests;  // the VMs with a tap, for anti-spoofing
  bool operator==(const RuleSet&) const = default;
};

// OK when `rules` renders into a script that means what it says: pool_cidr is an IPv4 network,
// every guest_ip an address in it, ports are 1..65535, every host_ip empty or an IPv4 address,
// no host port/protocol is published twice (on the same address, or on one address and on all),
// and every guest has a tap name of kTapPrefix and up to 12 letters or digits, an address
// in the pool and a MAC of the form 52:54:ac:1e:00:02, no tap or address twice. Errors are
// invalid_argument and name the bad value.
Status ValidateRuleSet(const RuleSet& rules);

// The nftables script that atomically replaces hearth's tables with `rules`: RenderRemoval, then
// "table ip hearth { ... }" and "table arp hearth { ... }", so it works whether or not the tables
// exist. Inputs are not checked; see ValidateRuleSet.
//
// NAT (table ip):
// - chain publish: one DNAT rule per published port, "tcp dport 8080 dnat to 172.30.0.2:80",
//   or, for a port published on one host address, "ip daddr 127.0.0.1 udp dport 5353 dnat to
//   172.30.0.2:53" (the port stays free on the host's other addresses);
// - chains prerouting (other hosts and namespaces) and output (the host itself) jump to it for
//   traffic to any local address (`fib daddr type local`);
// - chain postrouting masquerades the pool's traffic leaving the pool (when `masquerade`),
//   DNATed traffic from the pool back into it (a VM reaching a published port, its own included),
//   and traffic from 127.0.0.0/8 into the pool (a published port reached at 127.0.0.1; the taps
//   have route_localnet=1 so that such packets may leave the host at all).
//
// Filter, for the taps of `guests` (set taps; another hearthd's taps are in its own table):
// - chain from_guest (hook prerouting, priority raw, before conntrack and DNAT): drops packets to
//   127.0.0.0/8 (route_localnet would let them in), and every packet whose tap . source address
//   . source MAC is not that guest's (set guests);
// - chain guest_to_host (hook input): a guest reaches the host only with replies to connections
//   the host opened (ct state established,related) and pings to its own gateway (the address of
//   the tap it came in on); everything else addressed to the host (any of its addresses,
//   hearthd's ports, other taps' gateways) is dropped. Published ports are DNATed in prerouting,
//   so they are forwarded, not delivered to the host, and keep working for guests;
// - chain vm_to_vm (hook forward, tap to tap): drops new connections between VMs except to a
//   published port (ct status dnat) and between address pairs in set vm_peers, which is empty:
//   the seam for a later per-project shared network. Traffic between a tap and any other
//   interface (egress through NAT, clients reaching a guest's address) is left alone.
// - table arp, chain from_guest (hook input): on the taps of `guests`, ARP whose Ethernet source,
//   sender address and sender MAC are not the guest's is dropped.
std::string RenderRuleset(const RuleSet& rules);
// The same in table `table` (a valid table name, see ValidateTableName).
std::string RenderRuleset(const RuleSet& rules, std::string_view table);

// The script that deletes hearth's tables (ip and arp), whether or not they exist.
std::string RenderRemoval(std::string_view table = kTableName);

// OK when `table` is a name this code may put into a script: a letter, then up to 63 letters,
// digits and underscores.
Status ValidateTableName(std::string_view table);

}  // namespace hearth::net

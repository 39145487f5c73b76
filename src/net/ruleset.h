// hearth's nftables rules, all in its own table (`table ip hearth`; another name for a hearthd
// with a non-default data dir, see NetworkOptions), replaced as a whole on every change: egress
// NAT for the VM address pool and DNAT for published ports.
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

struct RuleSet {
  std::string pool_cidr;   // the VM address pool
  bool masquerade = true;  // egress NAT for the pool
  std::vector<Publish> publish;
  bool operator==(const RuleSet&) const = default;
};

// OK when `rules` renders into a script that means what it says: pool_cidr is an IPv4 network,
// every guest_ip an address in it, ports are 1..65535, and no host port/protocol is published
// twice. Errors are invalid_argument and name the bad value.
Status ValidateRuleSet(const RuleSet& rules);

// The nftables script that atomically replaces hearth's table with `rules`:
// "table ip hearth\ndelete table ip hearth\ntable ip hearth { ... }", so it works whether or not
// the table exists. Inputs are not checked; see ValidateRuleSet.
//
// - chain publish: one DNAT rule per published port, "tcp dport 8080 dnat to 172.30.0.2:80";
// - chains prerouting (other hosts and namespaces) and output (the host itself) jump to it for
//   traffic to any local address (`fib daddr type local`);
// - chain postrouting masquerades the pool's traffic leaving the pool (when `masquerade`),
//   DNATed traffic from the pool back into it (a VM reaching a published port, its own included),
//   and traffic from 127.0.0.0/8 into the pool (a published port reached at 127.0.0.1; the taps
//   have route_localnet=1 so that such packets may leave the host at all).
std::string RenderRuleset(const RuleSet& rules);
// The same in table `table` (a valid table name, see ValidateTableName).
std::string RenderRuleset(const RuleSet& rules, std::string_view table);

// The script that deletes hearth's table, whether or not it exists.
std::string RenderRemoval(std::string_view table = kTableName);

// OK when `table` is a name this code may put into a script: a letter, then up to 63 letters,
// digits and underscores.
Status ValidateTableName(std::string_view table);

}  // namespace hearth::net

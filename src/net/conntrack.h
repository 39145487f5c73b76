// UDP flows that a change of published ports leaves pointing the wrong way, found and deleted over
// ctnetlink. Conntrack picks a flow's NAT on its first packet and keeps a UDP flow while packets
// keep coming (30 s unreplied, 120 s once replied), so a client sending from one fixed port (a
// resolver, a game, WireGuard) would keep reaching the old guest port after the mapping changed,
// a guest after the port was withdrawn, or (on kernels that keep a flow after its ICMP port
// unreachable) the host's closed port after the port was published. TCP needs none of this: a
// new connection is a new flow.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "net/ipv4.h"
#include "net/ruleset.h"

namespace hearth::net {

// One IPv4 flow as ctnetlink lists it. Addresses are host order.
struct ConntrackFlow {
  int protocol = 0;  // IPPROTO_UDP, IPPROTO_TCP, ...
  uint32_t orig_src = 0;
  uint32_t orig_dst = 0;
  int orig_sport = 0;
  int orig_dport = 0;
  uint32_t reply_src = 0;  // where replies come from: the guest when the flow was DNATed to one
  int reply_sport = 0;
  std::string tuple;  // the raw CTA_TUPLE_ORIG attribute, which names the flow in a delete
};

// The indexes of the UDP flows to a local address (in `local`, or 127.0.0.0/8) that `rules` would
// not make as they are: a flow to a published UDP port (on its host_ip, or on any local address
// when it has none) that does not reach that guest and guest port, and a flow DNATed to an
// address of the pool that no published UDP port explains any more.
std::vector<size_t> StaleUdpFlows(const std::vector<ConntrackFlow>& flows, const RuleSet& rules,
                                  const std::vector<uint32_t>& local);

// The IPv4 flows of this network namespace (a ctnetlink dump).
Result<std::vector<ConntrackFlow>> ListConntrackFlows();

// Deletes one flow; one already gone is not an error.
Status DeleteConntrackFlow(const ConntrackFlow& flow);

// Lists the flows and deletes the stale ones (StaleUdpFlows with the host's addresses); returns
// how many it deleted.
Result<int> RemoveStaleUdpFlows(const RuleSet& rules);

}  // namespace hearth::net

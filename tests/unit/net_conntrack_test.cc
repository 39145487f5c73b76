// Which UDP flows a change of published ports leaves pointing the wrong way (net/conntrack.h);
// tests/integration/net_publish_test.cc deletes them from the real conntrack table.
#include <gtest/gtest.h>
#include <netinet/in.h>

#include "net/conntrack.h"

namespace hearth::net {
namespace {

uint32_t Ip(std::string_view text) { return *ParseIpv4(text); }

ConntrackFlow Flow(int protocol, std::string_view src, int sport, std::string_view dst, int dport,
                   std::string_view reply_src, int reply_sport) {
  return ConntrackFlow{protocol, Ip(src), Ip(dst), sport, dport, Ip(reply_src), reply_sport, ""};
}

TEST(NetConntrackTest, StaleUdpFlowsAreThoseThePublishedPortsWouldNotMake) {
  RuleSet rules{"172.30.0.0/16",
                true,
                {Publish{"172.30.0.2", {5353, 53, Protocol::kUdp}},
                 Publish{"172.30.0.6", {6000, 60, Protocol::kUdp, "127.0.0.1"}},
                 Publish{"172.30.0.6", {8080, 80, Protocol::kTcp}}}};
  const std::vector<uint32_t> local = {Ip("10.0.0.5"), Ip("172.30.0.1")};
  const int udp = IPPROTO_UDP, tcp = IPPROTO_TCP;
  std::vector<ConntrackFlow> flows = {
      // 0: sent before 5353 was published: it reached the host's closed port.
      Flow(udp, "10.0.0.9", 40000, "10.0.0.5", 5353, "10.0.0.5", 40000),
      // 1: DNATed as the rules say.
      Flow(udp, "10.0.0.9", 40001, "10.0.0.5", 5353, "172.30.0.2", 53),
      // 2: DNATed to the guest port of an older mapping.
      Flow(udp, "10.0.0.9", 40002, "10.0.0.5", 5353, "172.30.0.2", 54),
      // 3: the port published on 127.0.0.1, as the rules say.
      Flow(udp, "127.0.0.1", 40003, "127.0.0.1", 6000, "172.30.0.6", 60),
      // 4: 6000 on another address is not published: the host's own business.
      Flow(udp, "10.0.0.9", 40004, "10.0.0.5", 6000, "10.0.0.5", 40004),
      // 5: DNATed into the pool by a port no longer published.
      Flow(udp, "10.0.0.9", 40005, "10.0.0.5", 7000, "172.30.0.9", 70),
      // 6: the host's own traffic to port 5353 elsewhere.
      Flow(udp, "10.0.0.5", 5353, "192.0.2.1", 5353, "192.0.2.1", 5353),
      // 7: TCP is never touched (a new connection is a new flow).
      Flow(tcp, "10.0.0.9", 40007, "10.0.0.5", 5353, "10.0.0.5", 40007),
      // 8: a guest to its gateway.
      Flow(udp, "172.30.0.2", 40008, "172.30.0.1", 53, "172.30.0.1", 53),
      // 9: sent to 127.0.0.2 before 5353 was published on all addresses.
      Flow(udp, "127.0.0.1", 40009, "127.0.0.2", 5353, "127.0.0.2", 40009),
  };
  EXPECT_EQ(StaleUdpFlows(flows, rules, local), (std::vector<size_t>{0, 2, 5, 9}));
  EXPECT_EQ(StaleUdpFlows(flows, RuleSet{"172.30.0.0/16"}, local),
            (std::vector<size_t>{1, 2, 3, 5}))
      << "with nothing published, every flow DNATed into the pool is stale";
}

}  // namespace
}  // namespace hearth::net

// hearth's nftables script: its exact text for a typical rule set, its variants, and the checks
// that keep bad values out of it. tests/integration/net_host_test.cc has nft parse it.
#include <gtest/gtest.h>

#include "net/ruleset.h"

namespace hearth::net {
namespace {

Publish Pub(std::string guest, int host_port, int guest_port, Protocol p = Protocol::kTcp,
            std::string host_ip = "") {
  return Publish{std::move(guest), PortMapping{host_port, guest_port, p, std::move(host_ip)}};
}

bool Has(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

TEST(NetRulesetTest, RendersTheWholeTable) {
  RuleSet rules{"172.30.0.0/16",
                true,
                {Pub("172.30.0.2", 8080, 80), Pub("172.30.0.6", 5353, 53, Protocol::kUdp)},
                {Guest{"hth0123456789ab", "172.30.0.2", "52:54:ac:1e:00:02"},
                 Guest{"hth0000000000ff", "172.30.0.6", "52:54:ac:1e:00:06"}}};
  EXPECT_EQ(RenderRuleset(rules),
            "table ip hearth\n"
            "delete table ip hearth\n"
            "table arp hearth\n"
            "delete table arp hearth\n"
            "table ip hearth {\n"
            "\tchain publish {\n"
            "\t\ttcp dport 8080 dnat to 172.30.0.2:80\n"
            "\t\tudp dport 5353 dnat to 172.30.0.6:53\n"
            "\t}\n"
            "\n"
            "\tchain prerouting {\n"
            "\t\ttype nat hook prerouting priority dstnat; policy accept;\n"
            "\t\tfib daddr type local jump publish\n"
            "\t}\n"
            "\n"
            "\tchain output {\n"
            "\t\ttype nat hook output priority -100; policy accept;\n"
            "\t\tfib daddr type local jump publish\n"
            "\t}\n"
            "\n"
            "\tchain postrouting {\n"
            "\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
            "\t\tip saddr 172.30.0.0/16 ip daddr != 172.30.0.0/16 masquerade\n"
            "\t\tip saddr 172.30.0.0/16 ip daddr 172.30.0.0/16 ct status dnat masquerade\n"
            "\t\tip saddr 127.0.0.0/8 ip daddr 172.30.0.0/16 masquerade\n"
            "\t}\n"
            "\n"
            "\tset guests {\n"
            "\t\ttype ifname . ipv4_addr . ether_addr\n"
            "\t\telements = { \"hth0123456789ab\" . 172.30.0.2 . 52:54:ac:1e:00:02, "
            "\"hth0000000000ff\" . 172.30.0.6 . 52:54:ac:1e:00:06 }\n"
            "\t}\n"
            "\n"
            "\tset taps {\n"
            "\t\ttype ifname\n"
            "\t\telements = { \"hth0123456789ab\", \"hth0000000000ff\" }\n"
            "\t}\n"
            "\n"
            "\tset vm_peers {\n"
            "\t\ttype ipv4_addr . ipv4_addr\n"
            "\t}\n"
            "\n"
            "\tchain guest_ingress {\n"
            "\t\ttype filter hook prerouting priority raw; policy accept;\n"
            "\t\tiifname @taps jump from_guest\n"
            "\t}\n"
            "\n"
            "\tchain from_guest {\n"
            "\t\tip daddr 127.0.0.0/8 drop\n"
            "\t\tiifname . ip saddr . ether saddr != @guests drop\n"
            "\t}\n"
            "\n"
            "\tchain input {\n"
            "\t\ttype filter hook input priority filter; policy accept;\n"
            "\t\tiifname @taps jump guest_to_host\n"
            "\t}\n"
            "\n"
            "\tchain guest_to_host {\n"
            "\t\tct state established,related accept\n"
            "\t\ticmp type echo-request fib daddr . iif type local accept\n"
            "\t\tdrop\n"
            "\t}\n"
            "\n"
            "\tchain forward {\n"
            "\t\ttype filter hook forward priority filter; policy accept;\n"
            "\t\tiifname @taps oifname @taps jump vm_to_vm\n"
            "\t}\n"
            "\n"
            "\tchain vm_to_vm {\n"
            "\t\tct state established,related accept\n"
            "\t\tct status dnat accept\n"
            "\t\tip saddr . ip daddr @vm_peers accept\n"
            "\t\tdrop\n"
            "\t}\n"
            "}\n"
            "table arp hearth {\n"
            "\tset guests {\n"
            "\t\ttype ifname . ether_addr . ipv4_addr . ether_addr\n"
            "\t\telements = { \"hth0123456789ab\" . 52:54:ac:1e:00:02 . 172.30.0.2 . "
            "52:54:ac:1e:00:02, \"hth0000000000ff\" . 52:54:ac:1e:00:06 . 172.30.0.6 . "
            "52:54:ac:1e:00:06 }\n"
            "\t}\n"
            "\n"
            "\tset taps {\n"
            "\t\ttype ifname\n"
            "\t\telements = { \"hth0123456789ab\", \"hth0000000000ff\" }\n"
            "\t}\n"
            "\n"
            "\tchain input {\n"
            "\t\ttype filter hook input priority filter; policy accept;\n"
            "\t\tiifname @taps jump from_guest\n"
            "\t}\n"
            "\n"
            "\tchain from_guest {\n"
            "\t\tiifname . ether saddr . arp saddr ip . arp saddr ether != @guests drop\n"
            "\t}\n"
            "}\n");
}

TEST(NetRulesetTest, GuestsReachNoLoopbackNoHostAndNoOtherGuest) {
  std::string script = RenderRuleset(RuleSet{"172.30.0.0/16"});
  // The taps of the rule set's guests (set taps), before conntrack.
  EXPECT_TRUE(Has(script,
                  "type filter hook prerouting priority raw; policy accept;\n"
                  "\t\tiifname @taps jump from_guest\n"))
      << script;
  // Before DNAT and routing, where route_localnet would let 127.0.0.0/8 in.
  EXPECT_TRUE(Has(script, "\tchain from_guest {\n\t\tip daddr 127.0.0.0/8 drop\n")) << script;
  // The host: only replies and pings to the gateway; then a final drop.
  EXPECT_TRUE(Has(script, "iifname @taps jump guest_to_host")) << script;
  EXPECT_TRUE(Has(script,
                  "\tchain guest_to_host {\n"
                  "\t\tct state established,related accept\n"
                  "\t\ticmp type echo-request fib daddr . iif type local accept\n"
                  "\t\tdrop\n\t}\n"))
      << script;
  // Other guests: only published ports and the (empty) shared-network seam.
  EXPECT_TRUE(Has(script, "iifname @taps oifname @taps jump vm_to_vm")) << script;
  EXPECT_TRUE(Has(script, "\tset vm_peers {\n\t\ttype ipv4_addr . ipv4_addr\n\t}\n")) << script;
  EXPECT_TRUE(Has(script, "ip saddr . ip daddr @vm_peers accept\n\t\tdrop\n")) << script;
  // Without guests the sets are empty, which nft takes only without an `elements` line.
  EXPECT_FALSE(Has(script, "elements")) << script;
  EXPECT_TRUE(Has(script, "table arp hearth {\n")) << script;
}

TEST(NetRulesetTest, EachGuestMaySendOnlyFromItsOwnAddressAndMac) {
  RuleSet rules{"10.9.0.0/24", true, {}, {Guest{"hthab", "10.9.0.6", "52:54:0a:09:00:06"}}};
  std::string script = RenderRuleset(rules);
  EXPECT_TRUE(Has(script, "\"hthab\" . 10.9.0.6 . 52:54:0a:09:00:06")) << script;
  EXPECT_TRUE(Has(script, "iifname . ip saddr . ether saddr != @guests drop")) << script;
  EXPECT_TRUE(Has(script, "\"hthab\" . 52:54:0a:09:00:06 . 10.9.0.6 . 52:54:0a:09:00:06"))
      << script;
  EXPECT_TRUE(Has(script, "iifname . ether saddr . arp saddr ip . arp saddr ether != @guests drop"))
      << script;
}

TEST(NetRulesetTest, StartsByReplacingTheTableWhetherOrNotItExists) {
  std::string script = RenderRuleset(RuleSet{"10.9.0.0/24"});
  EXPECT_EQ(script.rfind("table ip hearth\ndelete table ip hearth\ntable arp hearth\n"
                         "delete table arp hearth\ntable ip hearth {\n",
                         0),
            0u)
      << script;
  EXPECT_EQ(RenderRemoval(),
            "table ip hearth\ndelete table ip hearth\ntable arp hearth\ndelete table arp hearth\n");
}

TEST(NetRulesetTest, RendersIntoAnotherTable) {
  std::string script = RenderRuleset(RuleSet{"10.9.0.0/24"}, "hearth_0123abcd");
  EXPECT_EQ(script.rfind("table ip hearth_0123abcd\ndelete table ip hearth_0123abcd\n"
                         "table arp hearth_0123abcd\ndelete table arp hearth_0123abcd\n"
                         "table ip hearth_0123abcd {\n",
                         0),
            0u)
      << script;
  EXPECT_FALSE(Has(script, "ip hearth\n")) << script;
  EXPECT_FALSE(Has(script, "ip hearth {")) << script;
  EXPECT_FALSE(Has(script, "arp hearth\n")) << script;
  EXPECT_TRUE(Has(script, "table arp hearth_0123abcd {\n")) << script;
  EXPECT_EQ(RenderRuleset(RuleSet{"10.9.0.0/24"}, "hearth"), RenderRuleset(RuleSet{"10.9.0.0/24"}));
  EXPECT_EQ(RenderRemoval("hearth_x"),
            "table ip hearth_x\ndelete table ip hearth_x\ntable arp hearth_x\n"
            "delete table arp hearth_x\n");
}

TEST(NetRulesetTest, WithoutMasqueradeOnlyPublishedPortsAreNatted) {
  std::string script = RenderRuleset(RuleSet{"10.9.0.0/24", false, {Pub("10.9.0.2", 80, 8000)}});
  EXPECT_FALSE(Has(script, "ip daddr != 10.9.0.0/24 masquerade")) << script;
  // Published ports still work from 127.0.0.1 and from other VMs.
  EXPECT_TRUE(Has(script, "ip saddr 127.0.0.0/8 ip daddr 10.9.0.0/24 masquerade")) << script;
  EXPECT_TRUE(Has(script, "ct status dnat masquerade")) << script;
  EXPECT_TRUE(Has(script, "tcp dport 80 dnat to 10.9.0.2:8000")) << script;
}

TEST(NetRulesetTest, WithNothingPublishedThePublishChainIsEmpty) {
  std::string script = RenderRuleset(RuleSet{"172.30.0.0/16"});
  EXPECT_TRUE(Has(script, "\tchain publish {\n\t}\n")) << script;
  EXPECT_FALSE(Has(script, " dport ")) << script;
  EXPECT_TRUE(Has(script, "ip saddr 172.30.0.0/16 ip daddr != 172.30.0.0/16 masquerade"));
}

TEST(NetRulesetTest, DnatOnlyForLocalDestinationsInBothNatHooks) {
  std::string script = RenderRuleset(RuleSet{"172.30.0.0/16", true, {Pub("172.30.0.2", 1, 2)}});
  EXPECT_TRUE(Has(script, "type nat hook prerouting priority dstnat;"));
  EXPECT_TRUE(Has(script, "type nat hook output priority -100;"));
  EXPECT_TRUE(Has(script, "type nat hook postrouting priority srcnat;"));
  // The DNAT rules live only in chain publish, reached only for local destinations.
  size_t publish_end = script.find("\t}\n");
  EXPECT_EQ(script.find("dnat to"), script.rfind("dnat to"));
  EXPECT_LT(script.find("dnat to"), publish_end);
  size_t jumps = 0;
  for (size_t at = script.find("jump publish"); at != std::string::npos;
       at = script.find("jump publish", at + 1)) {
    constexpr std::string_view kGuard = "fib daddr type local ";
    EXPECT_EQ(script.substr(at - kGuard.size(), kGuard.size()), kGuard);
    ++jumps;
  }
  EXPECT_EQ(jumps, 2u);
}

TEST(NetRulesetTest, APortOnOneHostAddressMatchesThatDestinationOnly) {
  std::string script =
      RenderRuleset(RuleSet{"172.30.0.0/16",
                            true,
                            {Pub("172.30.0.2", 8085, 80, Protocol::kTcp, "127.0.0.1"),
                             Pub("172.30.0.2", 8085, 80, Protocol::kUdp, "127.0.0.1"),
                             Pub("172.30.0.6", 8085, 81, Protocol::kTcp, "192.168.1.10"),
                             Pub("172.30.0.6", 5353, 53, Protocol::kUdp)}});
  EXPECT_TRUE(Has(script,
                  "\tchain publish {\n"
                  "\t\tip daddr 127.0.0.1 tcp dport 8085 dnat to 172.30.0.2:80\n"
                  "\t\tip daddr 127.0.0.1 udp dport 8085 dnat to 172.30.0.2:80\n"
                  "\t\tip daddr 192.168.1.10 tcp dport 8085 dnat to 172.30.0.6:81\n"
                  "\t\tudp dport 5353 dnat to 172.30.0.6:53\n"
                  "\t}\n"))
      << script;
}

TEST(NetRulesetTest, ValidRuleSetsPass) {
  EXPECT_TRUE(ValidateRuleSet(RuleSet{"172.30.0.0/16"}));
  auto s = ValidateRuleSet(
      RuleSet{"172.30.0.0/16",
              true,
              {Pub("172.30.0.2", 80, 80), Pub("172.30.0.6", 443, 443),
               Pub("172.30.0.6", 80, 80, Protocol::kUdp), Pub("172.30.0.2", 65535, 1)}});
  EXPECT_TRUE(s) << s.error().message;
  // The same port on two host addresses goes to two VMs.
  s = ValidateRuleSet(RuleSet{"172.30.0.0/16",
                              true,
                              {Pub("172.30.0.2", 8085, 80, Protocol::kTcp, "127.0.0.1"),
                               Pub("172.30.0.6", 8085, 80, Protocol::kTcp, "192.168.1.10")}});
  EXPECT_TRUE(s) << s.error().message;
  s = ValidateRuleSet(RuleSet{"172.30.0.0/16",
                              true,
                              {},
                              {Guest{"hth0123456789ab", "172.30.0.2", "52:54:ac:1e:00:02"},
                               Guest{"hthtest12345", "172.30.0.6", "52:54:AC:1E:00:06"}}});
  EXPECT_TRUE(s) << s.error().message;
}

TEST(NetRulesetTest, ValidationNamesTheBadValue) {
  struct Case {
    RuleSet rules;
    std::vector<std::string_view> says;
  };
  for (const Case& c : std::vector<Case>{
           {RuleSet{""}, {"pool \"\"", "172.30.0.0/16"}},
           {RuleSet{"172.30.0.0/16; drop"}, {"\"172.30.0.0/16; drop\""}},
           {RuleSet{"172.30.0.0/16", true, {Pub("172.31.0.2", 80, 80)}},
            {"80:80", "\"172.31.0.2\"", "not an address in the pool 172.30.0.0/16"}},
           {RuleSet{"172.30.0.0/16", true, {Pub("172.30.0.2\n}", 80, 80)}}, {"172.30.0.2\n}"}},
           {RuleSet{"172.30.0.0/16", true, {Pub("172.30.0.2", 0, 80)}},
            {"host port 0", "1 to 65535"}},
           {RuleSet{"172.30.0.0/16", true, {Pub("172.30.0.2", 80, 65536)}},
            {"guest port 65536", "1 to 65535"}},
           {RuleSet{
                "172.30.0.0/16", true, {Pub("172.30.0.2", 8080, 80), Pub("172.30.0.6", 8080, 81)}},
            {"host port 8080/tcp is published twice", "172.30.0.2:80", "172.30.0.6:81"}},
           {RuleSet{"172.30.0.0/16",
                    true,
                    {Pub("172.30.0.2", 8080, 80, Protocol::kTcp, "127.0.0.1"),
                     Pub("172.30.0.6", 8080, 81)}},
            {"host port 8080/tcp is published twice", "127.0.0.1:8080:80/tcp", "8080:81/tcp"}},
           {RuleSet{"172.30.0.0/16",
                    true,
                    {Pub("172.30.0.2", 8080, 80, Protocol::kTcp, "127.0.0.1; drop")}},
            {"host address \"127.0.0.1; drop\" is not an IPv4 address"}},
           {RuleSet{
                "172.30.0.0/16", true, {Pub("172.30.0.2", 8080, 80, Protocol::kTcp, "0.0.0.0")}},
            {"\"0.0.0.0\"", "leave it empty for all addresses"}},
           {RuleSet{"172.30.0.0/16", true, {}, {Guest{"eth0", "172.30.0.2", "52:54:ac:1e:00:02"}}},
            {"tap name \"eth0\"", "TapName"}},
           {RuleSet{"172.30.0.0/16",
                    true,
                    {},
                    {Guest{"hth\" accept", "172.30.0.2", "52:54:ac:1e:00:02"}}},
            {"\"hth\" accept\""}},
           {RuleSet{"172.30.0.0/16", true, {}, {Guest{"hth1", "172.31.0.2", "52:54:ac:1e:00:02"}}},
            {"tap hth1", "\"172.31.0.2\"", "not an address in the pool 172.30.0.0/16"}},
           {RuleSet{"172.30.0.0/16", true, {}, {Guest{"hth1", "172.30.0.2", "52:54:ac:1e:00"}}},
            {"tap hth1", "\"52:54:ac:1e:00\"", "GuestMac"}},
           {RuleSet{"172.30.0.0/16",
                    true,
                    {},
                    {Guest{"hth1", "172.30.0.2", "52:54:ac:1e:00:02"},
                     Guest{"hth1", "172.30.0.6", "52:54:ac:1e:00:06"}}},
            {"tap hth1", "listed twice"}},
       }) {
    auto s = ValidateRuleSet(c.rules);
    ASSERT_FALSE(s) << RenderRuleset(c.rules);
    EXPECT_EQ(s.error().code, Code::kInvalidArgument);
    for (auto part : c.says) {
      EXPECT_NE(s.error().message.find(part), std::string::npos)
          << s.error().message << " lacks " << part;
    }
  }
}

}  // namespace
}  // namespace hearth::net

// hearth's nftables script: its exact text for a typical rule set, its variants, and the checks
// that keep bad values out of it. tests/integration/net_host_test.cc has nft parse it.
#include <gtest/gtest.h>

#include "net/ruleset.h"

namespace hearth::net {
namespace {

Publish Pub(std::string guest, int host_port, int guest_port, Protocol p = Protocol::kTcp) {
  return Publish{std::move(guest), PortMapping{host_port, guest_port, p}};
}

bool Has(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

TEST(NetRulesetTest, RendersTheWholeTable) {
  RuleSet rules{"172.30.0.0/16",
                true,
                {Pub("172.30.0.2", 8080, 80), Pub("172.30.0.6", 5353, 53, Protocol::kUdp)}};
  EXPECT_EQ(RenderRuleset(rules),
            "table ip hearth\n"
            "delete table ip hearth\n"
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
            "}\n");
}

TEST(NetRulesetTest, StartsByReplacingTheTableWhetherOrNotItExists) {
  std::string script = RenderRuleset(RuleSet{"10.9.0.0/24"});
  EXPECT_EQ(script.rfind("table ip hearth\ndelete table ip hearth\ntable ip hearth {\n", 0), 0u)
      << script;
  EXPECT_EQ(RenderRemoval(), "table ip hearth\ndelete table ip hearth\n");
}

TEST(NetRulesetTest, RendersIntoAnotherTable) {
  std::string script = RenderRuleset(RuleSet{"10.9.0.0/24"}, "hearth_0123abcd");
  EXPECT_EQ(script.rfind("table ip hearth_0123abcd\ndelete table ip hearth_0123abcd\n"
                         "table ip hearth_0123abcd {\n",
                         0),
            0u)
      << script;
  EXPECT_FALSE(Has(script, "ip hearth\n")) << script;
  EXPECT_FALSE(Has(script, "ip hearth {")) << script;
  EXPECT_EQ(RenderRuleset(RuleSet{"10.9.0.0/24"}, "hearth"), RenderRuleset(RuleSet{"10.9.0.0/24"}));
  EXPECT_EQ(RenderRemoval("hearth_x"), "table ip hearth_x\ndelete table ip hearth_x\n");
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

TEST(NetRulesetTest, ValidRuleSetsPass) {
  EXPECT_TRUE(ValidateRuleSet(RuleSet{"172.30.0.0/16"}));
  auto s = ValidateRuleSet(
      RuleSet{"172.30.0.0/16",
              true,
              {Pub("172.30.0.2", 80, 80), Pub("172.30.0.6", 443, 443),
               Pub("172.30.0.6", 80, 80, Protocol::kUdp), Pub("172.30.0.2", 65535, 1)}});
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

// VM address allocation from the network pool, and the IPv4 parsing under it.
#include <gtest/gtest.h>

#include <tuple>

#include "net/address_pool.h"
#include "net/ipv4.h"

namespace hearth::net {
namespace {

AddressPool Pool(std::string_view cidr) {
  auto pool = AddressPool::Parse(cidr);
  EXPECT_TRUE(pool) << pool.error().message;
  return *pool;
}

void ExpectMessageHas(const Error& e, std::initializer_list<std::string_view> parts) {
  for (auto part : parts) EXPECT_NE(e.message.find(part), std::string::npos) << e.message;
}

TEST(NetIpv4Test, ParsesAndFormatsDottedQuads) {
  EXPECT_EQ(ParseIpv4("172.30.0.2"), 0xac1e0002u);
  EXPECT_EQ(ParseIpv4("0.0.0.0"), 0u);
  EXPECT_EQ(ParseIpv4("255.255.255.255"), 0xffffffffu);
  EXPECT_EQ(FormatIpv4(0xac1e0002u), "172.30.0.2");
  for (std::string_view bad :
       {"", "1.2.3", "1.2.3.4.5", "1.2.3.256", "01.2.3.4", "1.2.3.4 ", " 1.2.3.4", "1..3.4",
        "1.2.3.", "a.b.c.d", "-1.2.3.4", "1.2.3.+4", "::1", "1.2.3.4/30", "1234.1.1.1"}) {
    EXPECT_FALSE(ParseIpv4(bad)) << bad;
  }
}

TEST(NetIpv4Test, ParsesNetworks) {
  auto n = ParseIpv4Network("172.30.0.0/16");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->base, 0xac1e0000u);
  EXPECT_EQ(n->prefix, 16);
  EXPECT_EQ(n->mask(), 0xffff0000u);
  EXPECT_TRUE(n->Contains(0xac1effffu));
  EXPECT_FALSE(n->Contains(0xac1f0000u));
  EXPECT_FALSE(n->HostBitsSet());
  EXPECT_EQ(n->ToString(), "172.30.0.0/16");
  EXPECT_TRUE(ParseIpv4Network("1.2.3.4/32"));
  EXPECT_EQ(ParseIpv4Network("0.0.0.0/0")->mask(), 0u);
  EXPECT_TRUE(ParseIpv4Network("172.30.0.1/16")->HostBitsSet());
  for (std::string_view bad : {"172.30.0.0", "172.30.0.0/", "172.30.0.0/33", "172.30.0.0/016",
                               "/16", "172.30.0/16", "172.30.0.0/16/1", "172.30.0.0/-1"}) {
    EXPECT_FALSE(ParseIpv4Network(bad)) << bad;
  }
}

TEST(NetAddressPoolTest, ParsesAValidPool) {
  auto pool = AddressPool::Parse("172.30.0.0/16");
  ASSERT_TRUE(pool) << pool.error().message;
  EXPECT_EQ(pool->cidr(), "172.30.0.0/16");
  EXPECT_EQ(pool->capacity(), 16384u);
  EXPECT_EQ(Pool("10.0.0.0/8").capacity(), 1u << 22);
  EXPECT_EQ(Pool("192.168.7.8/29").capacity(), 2u);
}

TEST(NetAddressPoolTest, RejectsBadPoolsNamingTheValueAndTheRule) {
  struct Case {
    std::string_view cidr;
    std::vector<std::string_view> says;
  };
  for (const Case& c : std::vector<Case>{
           {"", {"network_pool is empty", "172.30.0.0/16"}},
           {"172.30.0.0", {"\"172.30.0.0\"", "ADDRESS/PREFIX", "/8 to /29"}},
           {"banana", {"\"banana\"", "ADDRESS/PREFIX"}},
           {"172.30.0.0/33", {"\"172.30.0.0/33\"", "ADDRESS/PREFIX"}},
           {"300.1.1.0/24", {"\"300.1.1.0/24\""}},
           {"fd00::/64", {"\"fd00::/64\"", "IPv6", "only IPv4"}},
           {"172.30.0.0/30", {"\"172.30.0.0/30\"", "prefix /30", "/8 to /29", "/30"}},
           {"10.0.0.0/7", {"prefix /7", "/8 to /29"}},
           {"0.0.0.0/0", {"prefix /0"}},
           {"172.30.0.1/16", {"host bits", "did you mean 172.30.0.0/16?"}},
           {"172.30.5.0/20", {"did you mean 172.30.0.0/20?"}},
           {"127.0.0.0/8", {"\"127.0.0.0/8\"", "overlaps 127.0.0.0/8 (loopback)"}},
           {"127.42.0.0/16", {"overlaps 127.0.0.0/8 (loopback)"}},
           {"224.0.0.0/8", {"overlaps 224.0.0.0/4 (multicast)"}},
           {"239.1.0.0/16", {"224.0.0.0/4 (multicast)"}},
           {"169.254.0.0/16", {"overlaps 169.254.0.0/16 (link-local)"}},
           {"169.0.0.0/8", {"169.254.0.0/16 (link-local)"}},
           {"0.0.0.0/8", {"overlaps 0.0.0.0/8"}},
           {"250.0.0.0/8", {"240.0.0.0/4 (reserved and broadcast)"}},
       }) {
    auto pool = AddressPool::Parse(c.cidr);
    ASSERT_FALSE(pool) << c.cidr;
    EXPECT_EQ(pool.error().code, Code::kInvalidArgument) << c.cidr;
    EXPECT_EQ(pool.error().field, "network_pool") << c.cidr;
    for (auto part : c.says) {
      EXPECT_NE(pool.error().message.find(part), std::string::npos)
          << c.cidr << ": " << pool.error().message << " lacks " << part;
    }
  }
}

TEST(NetAddressPoolTest, RefusesAPoolOverlappingTheHostsNetworks) {
  AddressPool pool = Pool("10.20.0.0/16");
  Ipv4Network eth0{*ParseIpv4("10.20.3.7"), 24}, wide{*ParseIpv4("10.0.0.9"), 8},
      other{*ParseIpv4("192.168.1.5"), 24}, tap{*ParseIpv4("10.20.0.1"), 30};
  EXPECT_TRUE(pool.CheckHostNetworks({{"lo", {*ParseIpv4("127.0.0.1"), 8}}, {"eth1", other}}));
  EXPECT_TRUE(pool.CheckHostNetworks({{"hth0123456789ab", tap}}))
      << "hearth's own taps hold the pool's /30s";
  for (const auto& [name, net, says] :
       {std::tuple{"eth0", eth0, "overlaps 10.20.3.0/24 of host interface eth0 (10.20.3.7/24)"},
        std::tuple{"ens3", wide, "overlaps 10.0.0.0/8 of host interface ens3"},
        std::tuple{"veth9", tap, "host interface veth9"}}) {
    auto s = pool.CheckHostNetworks({{"eth1", other}, {name, net}});
    ASSERT_FALSE(s) << name;
    EXPECT_EQ(s.error().code, Code::kFailedPrecondition);
    EXPECT_NE(s.error().message.find(says), std::string::npos) << s.error().message;
  }
}

TEST(NetAddressPoolTest, AllocatesTheLowestFreeSubnet) {
  AddressPool pool = Pool("172.30.0.0/16");
  auto first = pool.Allocate({});
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(*first, (VmAddress{"172.30.0.2", "172.30.0.1", 30}));
  EXPECT_EQ(first->guest_cidr(), "172.30.0.2/30");
  EXPECT_EQ(first->host_cidr(), "172.30.0.1/30");

  EXPECT_EQ(pool.Allocate({"172.30.0.2"})->guest, "172.30.0.6");
  EXPECT_EQ(pool.Allocate({"172.30.0.2"})->host, "172.30.0.5");
  // A hole is reused before the end grows.
  EXPECT_EQ(pool.Allocate({"172.30.0.2", "172.30.0.10"})->guest, "172.30.0.6");
  EXPECT_EQ(pool.Allocate({"172.30.0.6", "172.30.0.2", "172.30.0.10"})->guest, "172.30.0.14");
  // Crossing an octet: the 64th /30 starts at 172.30.1.0.
  std::vector<std::string> used;
  for (int i = 0; i < 64; ++i) used.push_back(pool.Allocate(used)->guest);
  EXPECT_EQ(used.back(), "172.30.0.254");
  EXPECT_EQ(*pool.Allocate(used), (VmAddress{"172.30.1.2", "172.30.1.1", 30}));
}

TEST(NetAddressPoolTest, AllocateIgnoresAddressesThatAreNotGuestsOfThePool) {
  AddressPool pool = Pool("172.30.0.0/16");
  // Other pools, host ends, broadcast addresses and junk do not take a slot.
  auto a = pool.Allocate({"10.0.0.2", "172.30.0.1", "172.30.0.3", "", "garbage", "172.31.0.2"});
  ASSERT_TRUE(a);
  EXPECT_EQ(a->guest, "172.30.0.2");
  // Duplicates count once.
  EXPECT_EQ(pool.Allocate({"172.30.0.2", "172.30.0.2"})->guest, "172.30.0.6");
}

TEST(NetAddressPoolTest, AllocateInAPoolThatDoesNotStartAtZero) {
  AddressPool pool = Pool("192.168.100.64/27");
  EXPECT_EQ(pool.capacity(), 8u);
  EXPECT_EQ(*pool.Allocate({}), (VmAddress{"192.168.100.66", "192.168.100.65", 30}));
  EXPECT_EQ(pool.Allocate({"192.168.100.66"})->guest, "192.168.100.70");
  // Just below the pool's base is not in it.
  EXPECT_EQ(pool.Allocate({"192.168.100.62"})->guest, "192.168.100.66");
}

TEST(NetAddressPoolTest, AFullPoolSaysItsSizeAndHowToGrowIt) {
  AddressPool pool = Pool("172.30.0.8/29");
  std::vector<std::string> used;
  for (int i = 0; i < 2; ++i) {
    auto a = pool.Allocate(used);
    ASSERT_TRUE(a) << a.error().message;
    used.push_back(a->guest);
  }
  EXPECT_EQ(used, (std::vector<std::string>{"172.30.0.10", "172.30.0.14"}));
  auto full = pool.Allocate(used);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, Code::kResourceExhausted);
  ExpectMessageHas(full.error(), {"172.30.0.8/29", "is full", "all 2 VM addresses", "network_pool",
                                  "172.30.0.0/28 holds 4", "delete VMs"});
}

TEST(NetAddressPoolTest, FromGuestGivesTheAllocatedAddressBack) {
  AddressPool pool = Pool("172.30.0.0/16");
  std::vector<std::string> used;
  for (int i = 0; i < 70; ++i) {
    auto a = pool.Allocate(used);
    ASSERT_TRUE(a);
    auto back = pool.FromGuest(a->guest);
    ASSERT_TRUE(back) << back.error().message;
    EXPECT_EQ(*back, *a);
    used.push_back(a->guest);
  }
  EXPECT_EQ(*pool.FromGuest("172.30.255.254"), (VmAddress{"172.30.255.254", "172.30.255.253", 30}));
}

TEST(NetAddressPoolTest, FromGuestRejectsWhatIsNotAGuestOfThePool) {
  AddressPool pool = Pool("172.30.0.0/16");
  struct Case {
    std::string_view ip;
    std::vector<std::string_view> says;
  };
  for (const Case& c : std::vector<Case>{
           {"", {"\"\"", "not an IPv4 address"}},
           {"172.30.0.2/30", {"\"172.30.0.2/30\"", "not an IPv4 address", "172.30.0.2"}},
           {"nonsense", {"not an IPv4 address"}},
           {"172.31.0.2", {"172.31.0.2", "outside the network pool 172.30.0.0/16"}},
           {"10.0.0.2", {"outside the network pool"}},
           {"172.30.0.1", {"172.30.0.1 is not a guest address", "172.30.0.2, 172.30.0.6"}},
           {"172.30.0.0", {"not a guest address"}},
           {"172.30.0.3", {"not a guest address"}},
           {"172.30.0.5", {"not a guest address"}},
       }) {
    auto a = pool.FromGuest(c.ip);
    ASSERT_FALSE(a) << c.ip;
    EXPECT_EQ(a.error().code, Code::kInvalidArgument) << c.ip;
    for (auto part : c.says) {
      EXPECT_NE(a.error().message.find(part), std::string::npos)
          << c.ip << ": " << a.error().message << " lacks " << part;
    }
  }
}

}  // namespace
}  // namespace hearth::net

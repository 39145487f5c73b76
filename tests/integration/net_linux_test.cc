// The real Network against this host's kernel (root only): persistent taps with their address,
// neighbour and sysctls, refusing interfaces that are not hearth's taps, and hearth's nftables
// table. Every interface and rule a test makes is removed by a guard, also when it fails. The
// tests take a host-wide lock, since the nftables table and the test subnets are host-global.
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "image/command.h"
#include "net/linux_network.h"
#include "net/proc_sys.h"
#include "net/tun_device.h"
#include "support/scope_guard.h"
#include "support/temp_dir.h"

namespace hearth::net {
namespace {

using nlohmann::json;

Result<std::string> Cmd(const std::vector<std::string>& argv) {
  auto r = image::RunCommand(argv);
  if (!r) return Fail(r.error());
  return r->out;
}

json IpJson(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"ip", "-j"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto out = Cmd(argv);
  EXPECT_TRUE(out) << out.error().message;
  return out ? json::parse(*out) : json::array();
}

// "172.30.254.1/30" for each IPv4 address on `name`.
std::vector<std::string> Ipv4Addresses(const std::string& name) {
  std::vector<std::string> out;
  for (const auto& link : IpJson({"-4", "addr", "show", "dev", name})) {
    for (const auto& a : link["addr_info"]) {
      out.push_back(fmt::format("{}/{}", a["local"].get<std::string>(), a["prefixlen"].get<int>()));
    }
  }
  return out;
}

bool HearthTableExists() { return bool(Cmd({"nft", "list", "table", "ip", "hearth"})); }

using testing::Guard;

Guard DeleteLinkAtEnd(const std::string& name) {
  return Guard([name] {
    if (InterfaceExists(name)) (void)Cmd({"ip", "link", "del", "dev", name});
  });
}

class NetLinuxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (CAP_NET_ADMIN)";
    lock_fd_ = open("/tmp/hearth-net-integration.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(lock_fd_, 0) << std::strerror(errno);
    ASSERT_EQ(flock(lock_fd_, LOCK_EX), 0) << std::strerror(errno);
  }
  void TearDown() override {
    if (lock_fd_ >= 0) close(lock_fd_);
  }

  std::string Unique(std::string_view prefix) const {
    return fmt::format("{}{}", prefix, getpid());
  }

  std::unique_ptr<Network> net_ = NewLinuxNetwork();
  int lock_fd_ = -1;
};

TapConfig TestTap(std::string name, std::string_view pool_cidr) {
  auto pool = AddressPool::Parse(pool_cidr);
  EXPECT_TRUE(pool) << pool.error().message;
  VmAddress address = *pool->Allocate({});
  return TapConfig{std::move(name), address, GuestMac(address)};
}

// Checks that `tap` is set up as EnsureTap promises.
void ExpectConfiguredTap(const TapConfig& tap) {
  json link = IpJson({"-d", "link", "show", "dev", tap.name});
  ASSERT_EQ(link.size(), 1u);
  const json& info = link[0]["linkinfo"];
  EXPECT_EQ(info["info_kind"], "tun");
  EXPECT_EQ(info["info_data"]["type"], "tap");
  EXPECT_EQ(info["info_data"]["persist"], true);
  EXPECT_EQ(info["info_data"]["pi"], false);
  EXPECT_EQ(info["info_data"]["multi_queue"], false);
  auto flags = link[0]["flags"].get<std::vector<std::string>>();
  EXPECT_NE(std::find(flags.begin(), flags.end(), "UP"), flags.end()) << link.dump();

  json addrs = IpJson({"addr", "show", "dev", tap.name});
  ASSERT_EQ(addrs.size(), 1u);
  ASSERT_EQ(addrs[0]["addr_info"].size(), 1u) << "only the host address, no IPv6: " << addrs;
  EXPECT_EQ(addrs[0]["addr_info"][0]["family"], "inet");
  EXPECT_EQ(addrs[0]["addr_info"][0]["local"], tap.address.host);
  EXPECT_EQ(addrs[0]["addr_info"][0]["prefixlen"], tap.address.prefix);

  json neighbours = IpJson({"neigh", "show", "dev", tap.name});
  ASSERT_EQ(neighbours.size(), 1u) << neighbours;
  EXPECT_EQ(neighbours[0]["dst"], tap.address.guest);
  EXPECT_EQ(neighbours[0]["lladdr"], tap.guest_mac);
  EXPECT_EQ(neighbours[0]["state"], json::array({"PERMANENT"}));

  EXPECT_EQ(*ReadProcSys("net/ipv6/conf/" + tap.name + "/disable_ipv6"), "1");
  EXPECT_EQ(*ReadProcSys("net/ipv4/conf/" + tap.name + "/route_localnet"), "1");
}

bool Listed(Network& net, const std::string& name) {
  auto taps = net.ListTaps();
  EXPECT_TRUE(taps) << taps.error().message;
  return taps && std::find(taps->begin(), taps->end(), name) != taps->end();
}

TEST_F(NetLinuxTest, EnsureTapCreatesAPersistentConfiguredTapAndRemoveTapDeletesIt) {
  TapConfig tap = TestTap(Unique("hthtest"), "172.30.254.0/24");
  Guard cleanup = DeleteLinkAtEnd(tap.name);
  ASSERT_FALSE(InterfaceExists(tap.name));

  auto s = net_->EnsureTap(tap);
  ASSERT_TRUE(s) << s.error().message;
  ExpectConfiguredTap(tap);
  EXPECT_TRUE(Listed(*net_, tap.name));

  s = net_->EnsureTap(tap);
  ASSERT_TRUE(s) << "twice: " << s.error().message;
  ExpectConfiguredTap(tap);

  s = net_->RemoveTap(tap.name);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_FALSE(InterfaceExists(tap.name));
  EXPECT_FALSE(Listed(*net_, tap.name));
  s = net_->RemoveTap(tap.name);
  EXPECT_TRUE(s) << "absent: " << s.error().message;
}

TEST_F(NetLinuxTest, CountersReadTheTapsPacketStatistics) {
  TapConfig tap = TestTap(Unique("hthcnt"), "172.30.252.0/24");
  Guard cleanup = DeleteLinkAtEnd(tap.name);
  auto missing = net_->Counters(tap.name);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Code::kNotFound) << missing.error().message;
  ASSERT_TRUE(net_->EnsureTap(tap));
  auto counters = net_->Counters(tap.name);
  ASSERT_TRUE(counters) << counters.error().message;
  // Nothing holds the tap open, so nothing can have gone through it.
  EXPECT_EQ(*counters, TapCounters{});
  auto refused = net_->Counters("../eth0");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Code::kInvalidArgument);
}

TEST_F(NetLinuxTest, ListTapsSeesOnlyTheTapsOfItsOwner) {
  NetworkOptions mine{"hearth_test_a", Unique("hearth:test-a-")};
  NetworkOptions theirs{"hearth_test_b", Unique("hearth:test-b-")};
  std::unique_ptr<Network> net_mine = NewLinuxNetwork(mine);
  std::unique_ptr<Network> net_theirs = NewLinuxNetwork(theirs);
  TapConfig tap = TestTap(Unique("hthtest"), "172.30.254.0/24");
  Guard cleanup = DeleteLinkAtEnd(tap.name);

  auto s = net_mine->EnsureTap(tap);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(InterfaceAlias(tap.name), mine.owner);
  EXPECT_TRUE(Listed(*net_mine, tap.name));
  EXPECT_FALSE(Listed(*net_theirs, tap.name));
  EXPECT_TRUE(Listed(*net_, tap.name)) << "a Network without an owner lists every tap";
  // A tap set up without an owner (or by an older hearthd) is adopted.
  ASSERT_TRUE(Cmd({"ip", "link", "set", "dev", tap.name, "alias", ""}));
  ASSERT_TRUE(net_mine->EnsureTap(tap));
  EXPECT_EQ(InterfaceAlias(tap.name), mine.owner);
  ExpectConfiguredTap(tap);
}

TEST_F(NetLinuxTest, EnsureTapFixesUpATapThatDrifted) {
  TapConfig tap = TestTap(Unique("hthtest"), "172.30.254.0/24");
  Guard cleanup = DeleteLinkAtEnd(tap.name);
  ASSERT_TRUE(net_->EnsureTap(tap));

  ASSERT_TRUE(Cmd({"ip", "link", "set", "dev", tap.name, "down"}));
  ASSERT_TRUE(Cmd({"ip", "addr", "add", "172.30.253.1/30", "dev", tap.name}));
  ASSERT_TRUE(Cmd({"ip", "neigh", "replace", "172.30.253.2", "lladdr", "52:54:00:00:00:99", "dev",
                   tap.name, "nud", "permanent"}));
  ASSERT_TRUE(Cmd({"ip", "neigh", "replace", tap.address.guest, "lladdr", "52:54:00:00:00:98",
                   "dev", tap.name, "nud", "permanent"}));
  ASSERT_TRUE(WriteProcSys("net/ipv4/conf/" + tap.name + "/route_localnet", "0"));

  auto s = net_->EnsureTap(tap);
  ASSERT_TRUE(s) << s.error().message;
  ExpectConfiguredTap(tap);

  // A new address for the same tap (the pool changed) replaces the old one.
  TapConfig moved = TestTap(tap.name, "172.30.252.0/24");
  s = net_->EnsureTap(moved);
  ASSERT_TRUE(s) << s.error().message;
  ExpectConfiguredTap(moved);
}

TEST_F(NetLinuxTest, EnsureTapLeavesATapThatIsHeldOpenAttached) {
  TapConfig tap = TestTap(Unique("hthtest"), "172.30.254.0/24");
  Guard cleanup = DeleteLinkAtEnd(tap.name);
  ASSERT_TRUE(net_->EnsureTap(tap));

  // Attach the way the wake listener and QEMU do.
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  Guard close_fd([fd] { close(fd); });
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, tap.name.data(), tap.name.size());
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  ASSERT_EQ(ioctl(fd, TUNSETIFF, &ifr), 0) << std::strerror(errno);

  auto s = net_->EnsureTap(tap);
  ASSERT_TRUE(s) << "while attached: " << s.error().message;
  ExpectConfiguredTap(tap);
  json link = IpJson({"link", "show", "dev", tap.name});
  EXPECT_EQ(link[0]["operstate"], "UP") << "a tap with a reader has carrier";
}

TEST_F(NetLinuxTest, RefusesInterfacesThatAreNotItsTaps) {
  std::string veth = Unique("hthtestv");
  std::string tun = Unique("hthtestu");
  Guard cleanup_veth = DeleteLinkAtEnd(veth);
  Guard cleanup_tun = DeleteLinkAtEnd(tun);
  ASSERT_TRUE(Cmd({"ip", "link", "add", veth, "type", "veth", "peer", "name", Unique("hnetvp")}));
  ASSERT_TRUE(Cmd({"ip", "tuntap", "add", "dev", tun, "mode", "tun"}));

  for (const std::string& name : {veth, tun}) {
    auto s = net_->EnsureTap(TestTap(name, "172.30.254.0/24"));
    ASSERT_FALSE(s) << name;
    EXPECT_EQ(s.error().code, Code::kFailedPrecondition);
    EXPECT_NE(s.error().message.find("interface " + name + " exists but is not"), std::string::npos)
        << s.error().message;
    EXPECT_NE(s.error().message.find("ip link del " + name), std::string::npos);

    s = net_->RemoveTap(name);
    ASSERT_FALSE(s) << name;
    EXPECT_EQ(s.error().code, Code::kFailedPrecondition);
    EXPECT_TRUE(InterfaceExists(name));
    EXPECT_FALSE(Listed(*net_, name));
  }
  EXPECT_TRUE(Ipv4Addresses(veth).empty());

  // Names without the prefix are never touched.
  auto s = net_->EnsureTap(TestTap("lo", "172.30.254.0/24"));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kInvalidArgument);
  EXPECT_NE(s.error().message.find("does not start with \"hth\""), std::string::npos);
  s = net_->RemoveTap("lo");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kInvalidArgument);
  EXPECT_FALSE(net_->RemoveTap("hth/../lo"));
}

TEST_F(NetLinuxTest, RefusesASubnetThatAnotherInterfaceHas) {
  TapConfig first = TestTap(Unique("hthtesta"), "172.30.254.0/24");
  TapConfig second = TestTap(Unique("hthtestb"), "172.30.254.0/24");
  Guard cleanup_first = DeleteLinkAtEnd(first.name);
  Guard cleanup_second = DeleteLinkAtEnd(second.name);
  ASSERT_TRUE(net_->EnsureTap(first));

  auto s = net_->EnsureTap(second);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kFailedPrecondition);
  EXPECT_NE(s.error().message.find(first.name + " already has address 172.30.254.1/30"),
            std::string::npos)
      << s.error().message;
  EXPECT_TRUE(Ipv4Addresses(second.name).empty());
}

TEST_F(NetLinuxTest, RenderedRulesPassNftCheck) {
  std::vector<RuleSet> sets = {
      RuleSet{"172.30.0.0/16"},
      RuleSet{"172.30.0.0/16", false},
      RuleSet{"10.88.0.0/20",
              true,
              {Publish{"10.88.0.2", {8080, 80, Protocol::kTcp}},
               Publish{"10.88.0.2", {8080, 80, Protocol::kUdp}},
               Publish{"10.88.15.254", {1, 65535, Protocol::kTcp}}},
              {Guest{"hth0123456789ab", "10.88.0.2", "52:54:0a:58:00:02"},
               Guest{"hthtest12345", "10.88.15.254", "52:54:0a:58:0f:fe"}}},
  };
  hearth::testing::TempDir dir;
  auto check = [&](const std::string& script) {
    std::ofstream(dir / "rules.nft") << script;
    auto r = image::RunCommand({"nft", "-c", "-f", (dir / "rules.nft").string()});
    EXPECT_TRUE(r) << script << "\n" << r.error().message;
  };
  for (const RuleSet& rules : sets) {
    ASSERT_TRUE(ValidateRuleSet(rules));
    check(RenderRuleset(rules));
  }
  check(RenderRemoval());
}

TEST_F(NetLinuxTest, ApplyRulesReplacesTheTableAndRemoveRulesDeletesIt) {
  if (HearthTableExists()) {
    GTEST_SKIP() << "table ip hearth exists: a hearthd runs here (or a stale table is left; "
                    "`nft delete table ip hearth`)";
  }
  Guard cleanup([] { (void)Cmd({"nft", "delete", "table", "ip", "hearth"}); });

  RuleSet first{"172.30.254.0/24", true, {Publish{"172.30.254.2", {18080, 80}}}};
  auto s = net_->ApplyRules(first);
  ASSERT_TRUE(s) << s.error().message;
  std::string listed = *Cmd({"nft", "list", "table", "ip", "hearth"});
  EXPECT_NE(listed.find("tcp dport 18080 dnat to 172.30.254.2:80"), std::string::npos) << listed;
  EXPECT_NE(listed.find("masquerade"), std::string::npos) << listed;

  RuleSet second{"172.30.254.0/24", true, {Publish{"172.30.254.6", {18081, 81, Protocol::kUdp}}}};
  s = net_->ApplyRules(second);
  ASSERT_TRUE(s) << s.error().message;
  listed = *Cmd({"nft", "list", "table", "ip", "hearth"});
  EXPECT_EQ(listed.find("18080"), std::string::npos) << listed;
  EXPECT_NE(listed.find("udp dport 18081 dnat to 172.30.254.6:81"), std::string::npos) << listed;

  // Bad rules are refused before nft runs; the table stays as it was.
  s = net_->ApplyRules(RuleSet{"172.30.254.0/24", true, {Publish{"10.1.1.1", {1, 1}}}});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kInvalidArgument);
  EXPECT_EQ(*Cmd({"nft", "list", "table", "ip", "hearth"}), listed);

  s = net_->RemoveRules();
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_FALSE(HearthTableExists());
  s = net_->RemoveRules();
  EXPECT_TRUE(s) << "absent: " << s.error().message;
}

}  // namespace
}  // namespace hearth::net

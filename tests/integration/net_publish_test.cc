// Published ports end to end without a VM (root only): a network namespace behind a veth stands in
// for the guest behind its tap, with the host end configured the way EnsureTap configures a tap;
// a second namespace is a client elsewhere on the network. Checks DNAT from the host itself
// (127.0.0.1) and from the client, egress masquerade, that RemoveRules takes it all away, ports
// published on one host address, and UDP. Namespaces, links, rules and threads are removed by
// destructors, also when a check fails.
#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <future>
#include <optional>
#include <thread>

#include "image/command.h"
#include "net/linux_network.h"
#include "net/proc_sys.h"
#include "net/tun_device.h"
#include "support/netns.h"
#include "support/scope_guard.h"

namespace hearth::net {
namespace {

using std::chrono::milliseconds;
using testing::Cmd;
using testing::Exchange;
using testing::FreeHostPort;
using testing::FreeHostUdpPort;
using testing::Guard;
using testing::InNetns;
using testing::LineServer;
using testing::MakeNamespace;
using testing::UdpExchange;
using testing::UdpServer;

class NetPublishTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (CAP_NET_ADMIN, network namespaces)";
    lock_fd_ = open("/tmp/hearth-net-integration.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(lock_fd_, 0) << std::strerror(errno);
    ASSERT_EQ(flock(lock_fd_, LOCK_EX), 0) << std::strerror(errno);
    if (Cmd({"nft", "list", "table", "ip", "hearth"})) {
      GTEST_SKIP() << "table ip hearth exists: a hearthd runs here (or a stale table is left; "
                      "`nft delete table ip hearth`)";
    }
  }
  void TearDown() override {
    if (lock_fd_ >= 0) close(lock_fd_);
  }

  int lock_fd_ = -1;
};

// The guest namespace behind a veth configured as a tap, the client namespace behind another
// veth whose host end has client_host_ip (an address of the host's that the test made), and
// hearth's rules; all removed by the destructor, in reverse order, also after a failed check.
class Topology {
 public:
  Topology()
      : guest_ns(fmt::format("hearth-test-guest-{}", getpid())),
        client_ns(fmt::format("hearth-test-client-{}", getpid())),
        guest_link(fmt::format("hnetg{}", getpid())),
        client_link(fmt::format("hnetc{}", getpid())),
        net(NewLinuxNetwork()) {}
  ~Topology() {
    (void)net->RemoveRules();
    for (const auto& ns : {guest_ns, client_ns}) (void)Cmd({"ip", "netns", "del", ns});
    for (const auto& link : {guest_link, client_link}) {
      if (InterfaceExists(link)) (void)Cmd({"ip", "link", "del", "dev", link});
    }
  }

  Status Build() {
    if (auto s = net->Prepare(); !s) return s;
    auto parsed = AddressPool::Parse("172.30.254.0/24");
    if (!parsed) return Fail(parsed.error());
    pool.emplace(*parsed);
    guest = *pool->Allocate({});
    std::string mac = GuestMac(guest);
    if (auto s = MakeNamespace(guest_ns, guest_link, guest.guest_cidr(), mac, guest.host); !s) {
      return s;
    }
    if (auto s = ConfigureHostLink(guest_link, guest, mac); !s) return s;
    if (auto s = MakeNamespace(client_ns, client_link, client_ip + "/30", "02:00:0a:fe:fe:02",
                               client_host_ip);
        !s) {
      return s;
    }
    for (const auto& argv : std::vector<std::vector<std::string>>{
             {"ip", "addr", "add", client_host_ip + "/30", "dev", client_link},
             {"ip", "link", "set", "dev", client_link, "up"}}) {
      if (auto r = Cmd(argv); !r) return Fail(r.error());
    }
    return Ok();
  }

  const std::string guest_ns, client_ns, guest_link, client_link;
  const std::string client_host_ip = "10.254.254.1";
  const std::string client_ip = "10.254.254.2";
  std::unique_ptr<Network> net;
  std::optional<AddressPool> pool;
  VmAddress guest;
};

TEST_F(NetPublishTest, PublishedPortsReachTheGuestFromTheHostAndFromElsewhere) {
  Topology t;
  auto built = t.Build();
  ASSERT_TRUE(built) << built.error().message;
  EXPECT_EQ(*ReadProcSys("net/ipv4/ip_forward"), "1");
  const VmAddress& guest = t.guest;

  LineServer guest_server(t.guest_ns, "guest", 80);
  ASSERT_TRUE(guest_server.status()) << guest_server.status().error().message;
  LineServer client_server(t.client_ns, "client", 8000);
  ASSERT_TRUE(client_server.status()) << client_server.status().error().message;

  const int host_port = FreeHostPort();
  auto applied =
      t.net->ApplyRules(RuleSet{t.pool->cidr(), true, {Publish{guest.guest, {host_port, 80}}}});
  ASSERT_TRUE(applied) << applied.error().message;

  // From the host itself: DNAT in output, then masquerade from 127.0.0.1 to the tap's address.
  auto local = Exchange("127.0.0.1", host_port, milliseconds(5000));
  ASSERT_TRUE(local) << local.error().message;
  EXPECT_EQ(*local, fmt::format("guest sees {}\n", guest.host));

  // From another namespace to the host's address on its link: DNAT in prerouting, the guest
  // sees the client's own address.
  auto remote = InNetns<std::string>(
      t.client_ns, [&] { return Exchange(t.client_host_ip, host_port, milliseconds(5000)); });
  ASSERT_TRUE(remote) << remote.error().message;
  EXPECT_EQ(*remote, fmt::format("guest sees {}\n", t.client_ip));

  // The guest reaching out: masqueraded to the host's address on the way out.
  auto egress = InNetns<std::string>(
      t.guest_ns, [&] { return Exchange(t.client_ip, 8000, milliseconds(5000)); });
  ASSERT_TRUE(egress) << egress.error().message;
  EXPECT_EQ(*egress, fmt::format("client sees {}\n", t.client_host_ip));

  // The guest reaching its own published port through the host (hairpin).
  auto hairpin = InNetns<std::string>(
      t.guest_ns, [&] { return Exchange(guest.host, host_port, milliseconds(5000)); });
  ASSERT_TRUE(hairpin) << hairpin.error().message;
  EXPECT_EQ(*hairpin, fmt::format("guest sees {}\n", guest.host));

  auto removed = t.net->RemoveRules();
  ASSERT_TRUE(removed) << removed.error().message;
  EXPECT_FALSE(Cmd({"nft", "list", "table", "ip", "hearth"}));
  auto gone = Exchange("127.0.0.1", host_port, milliseconds(2000));
  EXPECT_FALSE(gone) << "still answered after RemoveRules: " << *gone;
}

// docker's 127.0.0.1:8085:80 and /udp: a port published on one host address answers there and
// not on the host's other addresses (here client_host_ip, an address the test gave the host);
// UDP goes through DNAT and comes back through conntrack's reverse NAT like TCP.
TEST_F(NetPublishTest, PortsOnOneHostAddressAndUdpPortsReachTheGuest) {
  Topology t;
  auto built = t.Build();
  ASSERT_TRUE(built) << built.error().message;
  LineServer tcp_server(t.guest_ns, "guest", 80);
  ASSERT_TRUE(tcp_server.status()) << tcp_server.status().error().message;
  UdpServer udp_server(t.guest_ns, "guest", 53);
  ASSERT_TRUE(udp_server.status()) << udp_server.status().error().message;

  const int tcp_local = FreeHostPort(), tcp_outer = FreeHostPort();
  const int udp_all = FreeHostUdpPort(), udp_local = FreeHostUdpPort();
  const std::string& g = t.guest.guest;
  auto applied =
      t.net->ApplyRules(RuleSet{t.pool->cidr(),
                                true,
                                {Publish{g, {tcp_local, 80, Protocol::kTcp, "127.0.0.1"}},
                                 Publish{g, {tcp_outer, 80, Protocol::kTcp, t.client_host_ip}},
                                 Publish{g, {udp_all, 53, Protocol::kUdp}},
                                 Publish{g, {udp_local, 53, Protocol::kUdp, "127.0.0.1"}}}});
  ASSERT_TRUE(applied) << applied.error().message;
  const std::string from_host = fmt::format("guest sees {}\n", t.guest.host);
  const std::string from_client = fmt::format("guest sees {}\n", t.client_ip);
  auto in_client = [&](std::function<Result<std::string>()> fn) {
    return InNetns<std::string>(t.client_ns, std::move(fn));
  };

  // TCP on 127.0.0.1 only: from the host at 127.0.0.1, not at the host's other address.
  auto r = Exchange("127.0.0.1", tcp_local, milliseconds(5000));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, from_host);
  r = Exchange(t.client_host_ip, tcp_local, milliseconds(2000));
  EXPECT_FALSE(r) << "127.0.0.1's port answered at " << t.client_host_ip << ": " << *r;
  r = in_client([&] { return Exchange(t.client_host_ip, tcp_local, milliseconds(2000)); });
  EXPECT_FALSE(r) << "127.0.0.1's port answered the client: " << *r;

  // TCP on client_host_ip only: from the client there, not at 127.0.0.1.
  r = in_client([&] { return Exchange(t.client_host_ip, tcp_outer, milliseconds(5000)); });
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, from_client);
  r = Exchange("127.0.0.1", tcp_outer, milliseconds(2000));
  EXPECT_FALSE(r) << t.client_host_ip << "'s port answered at 127.0.0.1: " << *r;

  // UDP on all addresses: from the host and from the client, answers back through conntrack.
  r = UdpExchange("127.0.0.1", udp_all, milliseconds(5000));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, from_host);
  r = in_client([&] { return UdpExchange(t.client_host_ip, udp_all, milliseconds(5000)); });
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, from_client);

  // UDP on 127.0.0.1 only.
  r = UdpExchange("127.0.0.1", udp_local, milliseconds(5000));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, from_host);
  r = in_client([&] { return UdpExchange(t.client_host_ip, udp_local, milliseconds(1000)); });
  EXPECT_FALSE(r) << "127.0.0.1's UDP port answered the client: " << *r;

  // nft kept what was rendered: the address match is in the live ruleset.
  auto listed = Cmd({"nft", "list", "chain", "ip", "hearth", "publish"});
  ASSERT_TRUE(listed) << listed.error().message;
  EXPECT_NE(listed->find(fmt::format("ip daddr 127.0.0.1 udp dport {} dnat", udp_local)),
            std::string::npos)
      << *listed;
}

// Conntrack decides NAT on a flow's first packet and keeps a UDP flow alive while packets keep
// coming, so a client that sends from one port (a resolver, a game, WireGuard) would keep
// reaching the old guest port after the mapping changed (this test fails so without
// RemoveStaleUdpFlows), and on some kernels the host's closed port after the port was published.
// ApplyRules removes such flows.
TEST_F(NetPublishTest, AUdpClientOnAFixedPortFollowsThePublishedPort) {
  Topology t;
  auto built = t.Build();
  ASSERT_TRUE(built) << built.error().message;
  UdpServer dns(t.guest_ns, "guest53", 53);
  ASSERT_TRUE(dns.status()) << dns.status().error().message;
  UdpServer other(t.guest_ns, "guest54", 54);
  ASSERT_TRUE(other.status()) << other.status().error().message;
  const int host_port = FreeHostUdpPort();
  const int client_port = 40053;
  auto send = [&](milliseconds timeout) {
    return InNetns<std::string>(t.client_ns, [&] {
      return UdpExchange(t.client_host_ip, host_port, timeout, client_port);
    });
  };
  // Nothing published yet: the datagram reaches the host's closed port, conntrack keeps the flow.
  auto r = send(milliseconds(500));
  EXPECT_FALSE(r) << "answered before the port was published: " << *r;

  const std::string& g = t.guest.guest;
  auto applied = t.net->ApplyRules(
      RuleSet{t.pool->cidr(), true, {Publish{g, {host_port, 53, Protocol::kUdp}}}});
  ASSERT_TRUE(applied) << applied.error().message;
  r = send(milliseconds(5000));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, fmt::format("guest53 sees {}\n", t.client_ip));

  // The same host port now goes to guest port 54: the flow follows at once.
  applied = t.net->ApplyRules(
      RuleSet{t.pool->cidr(), true, {Publish{g, {host_port, 54, Protocol::kUdp}}}});
  ASSERT_TRUE(applied) << applied.error().message;
  r = send(milliseconds(5000));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, fmt::format("guest54 sees {}\n", t.client_ip));
}

}  // namespace
}  // namespace hearth::net

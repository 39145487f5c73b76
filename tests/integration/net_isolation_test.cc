// Guest isolation without a VM (root only): network namespaces behind veths stand in for guests,
// with the host ends configured the way EnsureTap configures a tap (route_localnet=1) and listed
// as the guests' taps in hearth's rules, and a third namespace is the outside world. Each test
// first shows the hole on the bare host configuration, then applies hearth's rules and checks it is
// closed while NAT, published ports and the host's own access to guests keep working. Namespaces,
// links, routes, rules and threads are removed by guards, also when a check fails.
#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "net/linux_network.h"
#include "net/proc_sys.h"
#include "net/tun_device.h"
#include "support/netns.h"
#include "support/scope_guard.h"

namespace hearth::net {
namespace {

using std::chrono::milliseconds;
using testing::Cmd;
using testing::Endpoint;
using testing::Exchange;
using testing::Guard;
using testing::InNetns;
using testing::LineServer;
using testing::MakeNamespace;

constexpr milliseconds kReached{3000};  // for what must work
constexpr milliseconds kBlocked{700};   // for what must not: a dropped SYN times out

// One ICMP echo to `ip` (raw socket, in the calling thread's namespace): OK on a reply from it.
Status Ping(const std::string& ip, milliseconds timeout) {
  int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
  if (fd < 0) return Fail(Code::kInternal, fmt::format("raw socket: {}", std::strerror(errno)));
  Guard close_fd([fd] { close(fd); });
  icmphdr echo{};
  echo.type = ICMP_ECHO;
  echo.un.echo.id = htons(static_cast<uint16_t>(getpid()));
  echo.un.echo.sequence = htons(1);
  // The checksum of an 8-byte header with no payload.
  uint32_t sum = 0;
  auto* words = reinterpret_cast<const uint16_t*>(&echo);
  for (size_t i = 0; i < sizeof(echo) / 2; ++i) sum += words[i];
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  echo.checksum = static_cast<uint16_t>(~sum);
  sockaddr_in to = Endpoint(ip, 0);
  if (sendto(fd, &echo, sizeof(echo), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) < 0) {
    return Fail(Code::kUnavailable, fmt::format("ping {}: {}", ip, std::strerror(errno)));
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left =
        std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) != 1) {
      return Fail(Code::kUnavailable, fmt::format("ping {}: no reply", ip));
    }
    std::array<uint8_t, 256> buf{};
    sockaddr_in from{};
    socklen_t len = sizeof(from);
    ssize_t n = recvfrom(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 28 || from.sin_addr.s_addr != to.sin_addr.s_addr) continue;
    size_t ihl = (buf[0] & 0x0f) * 4u;
    if (ihl + 8 <= static_cast<size_t>(n) && buf[ihl] == ICMP_ECHOREPLY) return Ok();
  }
}

// Sends one ARP request "who has `target`? tell `sender_ip` at `mac`" on `dev` with Ethernet
// source `mac` (in the calling thread's namespace).
Status SendArpRequest(const std::string& dev, const std::string& mac, const std::string& sender_ip,
                      const std::string& target) {
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ARP));
  if (fd < 0) return Fail(Code::kInternal, fmt::format("packet socket: {}", std::strerror(errno)));
  Guard close_fd([fd] { close(fd); });
  std::array<uint8_t, 6> hw{};
  if (sscanf(mac.c_str(), "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &hw[0], &hw[1], &hw[2], &hw[3], &hw[4],
             &hw[5]) != 6) {
    return Fail(Code::kInvalidArgument, "bad MAC " + mac);
  }
  std::array<uint8_t, 42> frame{};
  std::memset(frame.data(), 0xff, 6);                                  // broadcast
  std::memcpy(frame.data() + 6, hw.data(), 6);                         // Ethernet source
  const uint8_t arp_head[] = {0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1};  // ARP, request
  std::memcpy(frame.data() + 12, arp_head, sizeof(arp_head));
  std::memcpy(frame.data() + 22, hw.data(), 6);  // sender MAC
  inet_pton(AF_INET, sender_ip.c_str(), frame.data() + 28);
  inet_pton(AF_INET, target.c_str(), frame.data() + 38);
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = static_cast<int>(if_nametoindex(dev.c_str()));
  to.sll_halen = 6;
  std::memset(to.sll_addr, 0xff, 6);
  if (sendto(fd, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) !=
      static_cast<ssize_t>(frame.size())) {
    return Fail(Code::kUnavailable, fmt::format("sending ARP: {}", std::strerror(errno)));
  }
  return Ok();
}

// Whether the host has a neighbour entry for `ip` on `dev` (learnt from ARP).
bool HostKnowsNeighbour(const std::string& dev, const std::string& ip) {
  auto out = Cmd({"ip", "-j", "-4", "neigh", "show", "dev", dev, "to", ip});
  if (!out) return false;
  auto j = nlohmann::json::parse(*out, nullptr, false);
  return j.is_array() && !j.empty();
}

// Two "guests" (a and b, /30s of 172.30.251.0/24 behind veths named like taps) and an "outside"
// namespace (10.254.253.2, reached by the host at 10.254.253.1), with TCP servers in every
// namespace and on the host, and hearth's rules in their own table (applied by ApplyHearthRules).
class NetIsolationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (CAP_NET_ADMIN, network namespaces)";
    lock_fd_ = open("/tmp/hearth-net-integration.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(lock_fd_, 0) << std::strerror(errno);
    ASSERT_EQ(flock(lock_fd_, LOCK_EX), 0) << std::strerror(errno);
    ASSERT_TRUE(net_->Prepare());

    auto pool = AddressPool::Parse(pool_cidr_);
    ASSERT_TRUE(pool) << pool.error().message;
    a_ = *pool->Allocate({});
    b_ = *pool->Allocate({a_.guest});
    for (auto [ns, link, address] :
         {std::tuple{ns_a_, link_a_, a_}, std::tuple{ns_b_, link_b_, b_}}) {
      auto made = MakeNamespace(ns, link, address.guest_cidr(), GuestMac(address), address.host);
      ASSERT_TRUE(made) << made.error().message;
      auto configured = ConfigureHostLink(link, address, GuestMac(address));
      ASSERT_TRUE(configured) << configured.error().message;
      // The guest knows its gateway's MAC, so that its IP checks do not hang on ARP.
      std::string host_mac = *ReadFileLine("/sys/class/net/" + link + "/address");
      ASSERT_TRUE(Cmd({"ip", "-n", ns, "neigh", "replace", address.host, "lladdr", host_mac, "dev",
                       "eth0", "nud", "permanent"}));
    }
    auto made =
        MakeNamespace(ns_out_, link_out_, out_ip_ + "/30", "02:00:0a:fe:fd:02", out_host_ip_);
    ASSERT_TRUE(made) << made.error().message;
    ASSERT_TRUE(Cmd({"ip", "addr", "add", out_host_ip_ + "/30", "dev", link_out_}));
    ASSERT_TRUE(Cmd({"ip", "link", "set", "dev", link_out_, "up"}));
    // What a hostile guest does: drop its own loopback (and with it the local routes of
    // 127.0.0.0/8), route 127.0.0.0/8 to its gateway and let its kernel send there.
    ASSERT_TRUE(Cmd({"ip", "-n", ns_a_, "addr", "del", "127.0.0.1/8", "dev", "lo"}));
    ASSERT_TRUE(Cmd({"ip", "-n", ns_a_, "route", "add", "127.0.0.0/8", "via", a_.host}));
    ASSERT_TRUE(
        Cmd({"ip", "netns", "exec", ns_a_, "sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"}));
    ASSERT_TRUE(Cmd(
        {"ip", "netns", "exec", ns_a_, "sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1"}));

    host_port_ = testing::FreeHostPort();
    publish_port_ = testing::FreeHostPort();
    servers_.push_back(std::make_unique<LineServer>("", "host", host_port_));
    servers_.push_back(std::make_unique<LineServer>(ns_a_, "a", 80));
    servers_.push_back(std::make_unique<LineServer>(ns_b_, "b", 80));
    servers_.push_back(std::make_unique<LineServer>(ns_out_, "outside", 8000));
    for (const auto& s : servers_) ASSERT_TRUE(s->status()) << s->status().error().message;
  }

  void TearDown() override {
    servers_.clear();
    (void)net_->RemoveRules();
    for (const auto& ns : {ns_a_, ns_b_, ns_out_}) (void)Cmd({"ip", "netns", "del", ns});
    for (const auto& link : {link_a_, link_b_, link_out_}) {
      if (InterfaceExists(link)) (void)Cmd({"ip", "link", "del", "dev", link});
    }
    if (lock_fd_ >= 0) close(lock_fd_);
  }

  static Result<std::string> ReadFileLine(const std::string& path) {
    std::ifstream in(path);
    std::string line;
    if (!std::getline(in, line)) return Fail(Code::kNotFound, "cannot read " + path);
    return line;
  }

  void ApplyHearthRules() {
    RuleSet rules{pool_cidr_,
                  true,
                  {Publish{b_.guest, {publish_port_, 80}}},
                  {Guest{link_a_, a_.guest, GuestMac(a_)}, Guest{link_b_, b_.guest, GuestMac(b_)}}};
    auto applied = net_->ApplyRules(rules);
    ASSERT_TRUE(applied) << applied.error().message;
  }

  // A TCP exchange from guest a (from `source` when set).
  Result<std::string> FromA(const std::string& ip, int port, milliseconds timeout,
                            const std::string& source = "") {
    return InNetns<std::string>(ns_a_, [&] { return Exchange(ip, port, timeout, source); });
  }
  Status PingFromA(const std::string& ip, milliseconds timeout) {
    auto r = InNetns<bool>(ns_a_, [&]() -> Result<bool> {
      if (auto s = Ping(ip, timeout); !s) return Fail(s.error());
      return true;
    });
    if (!r) return Fail(r.error());
    return Ok();
  }
  // Whether one UDP datagram from guest a reaches the outside namespace (one way, so that it
  // also tells when the guest could not receive an answer, e.g. with another MAC).
  bool UdpFromAArrives() {
    auto fd = InNetns<int>(ns_out_, []() -> Result<int> {
      int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      sockaddr_in any = Endpoint("0.0.0.0", 9000);
      if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&any), sizeof(any)) != 0) {
        return Fail(Code::kInternal, fmt::format("udp bind: {}", std::strerror(errno)));
      }
      return fd;
    });
    EXPECT_TRUE(fd) << fd.error().message;
    if (!fd) return false;
    Guard close_fd([fd = *fd] { close(fd); });
    auto sent = InNetns<bool>(ns_a_, [&]() -> Result<bool> {
      int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      sockaddr_in to = Endpoint(out_ip_, 9000);
      bool ok = sendto(s, "x", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) == 1;
      close(s);
      return ok;
    });
    EXPECT_TRUE(sent && *sent);
    pollfd p{*fd, POLLIN, 0};
    return poll(&p, 1, static_cast<int>(kBlocked.count())) == 1;
  }
  Status SetMacOfA(const std::string& mac) {
    auto r = Cmd({"ip", "-n", ns_a_, "link", "set", "dev", "eth0", "address", mac});
    if (!r) return Fail(r.error());
    return Ok();
  }

  const int pid_ = getpid();
  const std::string pool_cidr_ = "172.30.251.0/24";
  const std::string ns_a_ = fmt::format("hearth-iso-a-{}", pid_);
  const std::string ns_b_ = fmt::format("hearth-iso-b-{}", pid_);
  const std::string ns_out_ = fmt::format("hearth-iso-out-{}", pid_);
  // Named like taps (kTapPrefix), as ValidateRuleSet wants of a guest's tap.
  const std::string link_a_ = fmt::format("hthia{}", pid_);
  const std::string link_b_ = fmt::format("hthib{}", pid_);
  const std::string link_out_ = fmt::format("hnetio{}", pid_);
  const std::string out_host_ip_ = "10.254.253.1", out_ip_ = "10.254.253.2";
  std::unique_ptr<Network> net_ =
      NewLinuxNetwork(NetworkOptions{fmt::format("hearth_iso{}", pid_), ""});
  VmAddress a_, b_;
  int host_port_ = 0, publish_port_ = 0;
  std::vector<std::unique_ptr<LineServer>> servers_;
  int lock_fd_ = -1;
};

TEST_F(NetIsolationTest, AGuestReachesTheOutsideButNotLoopbackTheHostOrAnotherGuest) {
  // The hole, with taps set up as before: loopback, the host's addresses and the other guest.
  auto loopback = FromA("127.0.0.1", host_port_, kReached);
  ASSERT_TRUE(loopback) << "the repro should reach the host's loopback without hearth's rules: "
                        << loopback.error().message;
  EXPECT_EQ(*loopback, fmt::format("host sees {}\n", a_.guest));
  ASSERT_TRUE(FromA(out_host_ip_, host_port_, kReached));
  ASSERT_TRUE(FromA(b_.guest, 80, kReached));

  ApplyHearthRules();

  // Closed: loopback, every host address (the outer one, its own gateway, another tap's), the
  // other guest, and pings to anything of the host but its own gateway.
  for (const auto& ip : {std::string("127.0.0.1"), out_host_ip_, a_.host, b_.host}) {
    auto r = FromA(ip, host_port_, kBlocked);
    EXPECT_FALSE(r) << "guest a reached the host at " << ip << ":" << host_port_ << ": " << *r;
  }
  auto other = FromA(b_.guest, 80, kBlocked);
  EXPECT_FALSE(other) << "guest a reached guest b: " << *other;
  EXPECT_TRUE(PingFromA(a_.host, kReached)) << "its gateway answers pings";
  EXPECT_FALSE(PingFromA(out_host_ip_, kBlocked));
  EXPECT_FALSE(PingFromA(b_.host, kBlocked));

  // Open: the outside through NAT, and published ports (b's) through any host address.
  auto out = FromA(out_ip_, 8000, kReached);
  ASSERT_TRUE(out) << out.error().message;
  EXPECT_EQ(*out, fmt::format("outside sees {}\n", out_host_ip_));
  auto published = FromA(a_.host, publish_port_, kReached);
  ASSERT_TRUE(published) << published.error().message;
  EXPECT_EQ(*published, fmt::format("b sees {}\n", b_.host));
  auto local = Exchange("127.0.0.1", publish_port_, kReached);
  ASSERT_TRUE(local) << "published port from the host's loopback: " << local.error().message;
  EXPECT_EQ(*local, fmt::format("b sees {}\n", b_.host));
  auto remote = InNetns<std::string>(
      ns_out_, [&] { return Exchange(out_host_ip_, publish_port_, kReached); });
  ASSERT_TRUE(remote) << "published port from elsewhere: " << remote.error().message;
  EXPECT_EQ(*remote, fmt::format("b sees {}\n", out_ip_));
  // The host and routed clients still reach guests (health checks, wake on packet).
  auto from_host = Exchange(a_.guest, 80, kReached);
  ASSERT_TRUE(from_host) << from_host.error().message;
  EXPECT_EQ(*from_host, fmt::format("a sees {}\n", a_.host));
  auto from_outside =
      InNetns<std::string>(ns_out_, [&] { return Exchange(a_.guest, 80, kReached); });
  ASSERT_TRUE(from_outside) << from_outside.error().message;
  EXPECT_EQ(*from_outside, fmt::format("a sees {}\n", out_ip_));
}

TEST_F(NetIsolationTest, AGuestSendsOnlyFromItsOwnAddressAndMac) {
  // A spoofed source: another address of the pool that routes back to guest a.
  const std::string spoofed = "172.30.251.10";
  ASSERT_TRUE(Cmd({"ip", "-n", ns_a_, "addr", "add", spoofed + "/32", "dev", "eth0"}));
  ASSERT_TRUE(Cmd({"ip", "route", "add", spoofed + "/32", "dev", link_a_}));
  Guard remove_route([&] { (void)Cmd({"ip", "route", "del", spoofed + "/32", "dev", link_a_}); });
  auto before = FromA(out_ip_, 8000, kReached, spoofed);
  ASSERT_TRUE(before) << "a spoofed source should get out without hearth's rules: "
                      << before.error().message;
  // ARP that claims guest b's address.
  ASSERT_FALSE(HostKnowsNeighbour(link_a_, b_.guest));
  auto arp = InNetns<bool>(ns_a_, [&]() -> Result<bool> {
    if (auto s = SendArpRequest("eth0", GuestMac(a_), b_.guest, a_.host); !s)
      return Fail(s.error());
    return true;
  });
  ASSERT_TRUE(arp) << arp.error().message;
  bool learnt = false;
  for (int i = 0; i < 50 && !learnt; ++i, usleep(10000))
    learnt = HostKnowsNeighbour(link_a_, b_.guest);
  ASSERT_TRUE(learnt) << "without hearth's rules the host learns a spoofed ARP sender";
  ASSERT_TRUE(Cmd({"ip", "neigh", "del", b_.guest, "dev", link_a_}));
  // Another MAC, with its own address.
  const std::string other_mac = "52:54:00:12:34:56";
  ASSERT_TRUE(SetMacOfA(other_mac));
  ASSERT_TRUE(UdpFromAArrives()) << "another MAC should get out without hearth's rules";
  ASSERT_TRUE(SetMacOfA(GuestMac(a_)));

  ApplyHearthRules();

  auto after = FromA(out_ip_, 8000, kBlocked, spoofed);
  EXPECT_FALSE(after) << "a spoofed source got out: " << *after;
  auto own = FromA(out_ip_, 8000, kReached);
  EXPECT_TRUE(own) << "its own address still works: " << own.error().message;

  arp = InNetns<bool>(ns_a_, [&]() -> Result<bool> {
    if (auto s = SendArpRequest("eth0", GuestMac(a_), b_.guest, a_.host); !s)
      return Fail(s.error());
    return true;
  });
  ASSERT_TRUE(arp) << arp.error().message;
  usleep(300000);
  EXPECT_FALSE(HostKnowsNeighbour(link_a_, b_.guest)) << "a spoofed ARP sender was learnt";

  EXPECT_TRUE(UdpFromAArrives()) << "with its own MAC";
  ASSERT_TRUE(SetMacOfA(other_mac));
  EXPECT_FALSE(UdpFromAArrives()) << "another MAC got out";
}

}  // namespace
}  // namespace hearth::net

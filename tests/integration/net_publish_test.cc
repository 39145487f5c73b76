// Published ports end to end without a VM (root only): a network namespace behind a veth stands in
// for the guest behind its tap, with the host end configured the way EnsureTap configures a tap;
// a second namespace is a client elsewhere on the network. Checks DNAT from the host itself
// (127.0.0.1) and from the client, egress masquerade, and that RemoveRules takes it all away.
// Namespaces, links, rules and threads are removed by guards, also when a check fails.
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
using testing::Guard;
using testing::InNetns;
using testing::LineServer;
using testing::MakeNamespace;

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

TEST_F(NetPublishTest, PublishedPortsReachTheGuestFromTheHostAndFromElsewhere) {
  const int pid = getpid();
  const std::string guest_ns = fmt::format("hearth-test-guest-{}", pid);
  const std::string client_ns = fmt::format("hearth-test-client-{}", pid);
  const std::string guest_link = fmt::format("hnetg{}", pid);
  const std::string client_link = fmt::format("hnetc{}", pid);
  const std::string client_host_ip = "10.254.254.1";
  const std::string client_ip = "10.254.254.2";
  std::unique_ptr<Network> net = NewLinuxNetwork();

  // Undone in reverse order: rules, then namespaces (their veths go with them), then any link
  // left on the host by a half-made namespace.
  Guard remove_links([&] {
    for (const auto& link : {guest_link, client_link}) {
      if (InterfaceExists(link)) (void)Cmd({"ip", "link", "del", "dev", link});
    }
  });
  Guard remove_namespaces([&] {
    for (const auto& ns : {guest_ns, client_ns}) (void)Cmd({"ip", "netns", "del", ns});
  });
  Guard remove_rules([&] { (void)net->RemoveRules(); });

  auto prepared = net->Prepare();
  ASSERT_TRUE(prepared) << prepared.error().message;
  EXPECT_EQ(*ReadProcSys("net/ipv4/ip_forward"), "1");

  auto pool = AddressPool::Parse("172.30.254.0/24");
  ASSERT_TRUE(pool) << pool.error().message;
  VmAddress guest = *pool->Allocate({});
  std::string mac = GuestMac(guest);

  auto made = MakeNamespace(guest_ns, guest_link, guest.guest_cidr(), mac, guest.host);
  ASSERT_TRUE(made) << made.error().message;
  auto configured = ConfigureHostLink(guest_link, guest, mac);
  ASSERT_TRUE(configured) << configured.error().message;
  made =
      MakeNamespace(client_ns, client_link, client_ip + "/30", "02:00:0a:fe:fe:02", client_host_ip);
  ASSERT_TRUE(made) << made.error().message;
  ASSERT_TRUE(Cmd({"ip", "addr", "add", client_host_ip + "/30", "dev", client_link}));
  ASSERT_TRUE(Cmd({"ip", "link", "set", "dev", client_link, "up"}));

  LineServer guest_server(guest_ns, "guest", 80);
  ASSERT_TRUE(guest_server.status()) << guest_server.status().error().message;
  LineServer client_server(client_ns, "client", 8000);
  ASSERT_TRUE(client_server.status()) << client_server.status().error().message;

  const int host_port = FreeHostPort();
  auto applied =
      net->ApplyRules(RuleSet{pool->cidr(), true, {Publish{guest.guest, {host_port, 80}}}});
  ASSERT_TRUE(applied) << applied.error().message;

  // From the host itself: DNAT in output, then masquerade from 127.0.0.1 to the tap's address.
  auto local = Exchange("127.0.0.1", host_port, milliseconds(5000));
  ASSERT_TRUE(local) << local.error().message;
  EXPECT_EQ(*local, fmt::format("guest sees {}\n", guest.host));

  // From another namespace to the host's address on its link: DNAT in prerouting, the guest
  // sees the client's own address.
  auto remote = InNetns<std::string>(
      client_ns, [&] { return Exchange(client_host_ip, host_port, milliseconds(5000)); });
  ASSERT_TRUE(remote) << remote.error().message;
  EXPECT_EQ(*remote, fmt::format("guest sees {}\n", client_ip));

  // The guest reaching out: masqueraded to the host's address on the way out.
  auto egress =
      InNetns<std::string>(guest_ns, [&] { return Exchange(client_ip, 8000, milliseconds(5000)); });
  ASSERT_TRUE(egress) << egress.error().message;
  EXPECT_EQ(*egress, fmt::format("client sees {}\n", client_host_ip));

  // The guest reaching its own published port through the host (hairpin).
  auto hairpin = InNetns<std::string>(
      guest_ns, [&] { return Exchange(guest.host, host_port, milliseconds(5000)); });
  ASSERT_TRUE(hairpin) << hairpin.error().message;
  EXPECT_EQ(*hairpin, fmt::format("guest sees {}\n", guest.host));

  auto removed = net->RemoveRules();
  ASSERT_TRUE(removed) << removed.error().message;
  EXPECT_FALSE(Cmd({"nft", "list", "table", "ip", "hearth"}));
  auto gone = Exchange("127.0.0.1", host_port, milliseconds(2000));
  EXPECT_FALSE(gone) << "still answered after RemoveRules: " << *gone;
}

}  // namespace
}  // namespace hearth::net

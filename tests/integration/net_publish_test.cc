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
#include "support/scope_guard.h"

namespace hearth::net {
namespace {

using std::chrono::milliseconds;

Result<std::string> Cmd(const std::vector<std::string>& argv) {
  auto r = image::RunCommand(argv);
  if (!r) return Fail(r.error());
  return r->out;
}

using testing::Guard;

Status EnterNetns(const std::string& ns) {
  std::string path = "/run/netns/" + ns;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Fail(Code::kInternal, fmt::format("open {}: {}", path, std::strerror(errno)));
  int rc = setns(fd, CLONE_NEWNET);
  int e = errno;
  close(fd);
  if (rc != 0) return Fail(Code::kInternal, fmt::format("setns {}: {}", ns, std::strerror(e)));
  return Ok();
}

// Runs `fn` on a thread inside network namespace `ns` ("" for the host's).
template <class T>
Result<T> InNetns(const std::string& ns, std::function<Result<T>()> fn) {
  Result<T> result = Fail(Code::kInternal, "not run");
  std::thread t([&] {
    if (auto s = ns.empty() ? Ok() : EnterNetns(ns); !s) {
      result = Fail(s.error());
      return;
    }
    result = fn();
  });
  t.join();
  return result;
}

sockaddr_in Endpoint(const std::string& ip, int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  return a;
}

// Connects to ip:port, sends a line and returns everything the peer sends back before closing.
Result<std::string> Exchange(const std::string& ip, int port, milliseconds timeout) {
  std::string where = fmt::format("{}:{}", ip, port);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Fail(Code::kInternal, std::strerror(errno));
  Guard close_fd([fd] { close(fd); });
  sockaddr_in to = Endpoint(ip, port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0 && errno != EINPROGRESS) {
    return Fail(Code::kUnavailable, fmt::format("connect {}: {}", where, std::strerror(errno)));
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto wait = [&](short events) -> Status {
    auto left =
        std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd, events, 0};
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) != 1) {
      return Fail(Code::kUnavailable, fmt::format("{}: timed out", where));
    }
    return Ok();
  };
  if (auto s = wait(POLLOUT); !s) return Fail(s.error());
  int err = 0;
  socklen_t len = sizeof(err);
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0)
    return Fail(Code::kUnavailable, fmt::format("connect {}: {}", where, strerror(err)));
  if (send(fd, "ping\n", 5, MSG_NOSIGNAL) != 5) {
    return Fail(Code::kUnavailable, fmt::format("send {}: {}", where, std::strerror(errno)));
  }
  std::string answer;
  for (;;) {
    if (auto s = wait(POLLIN); !s) return Fail(s.error());
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n == 0) return answer;
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      return Fail(Code::kUnavailable, fmt::format("recv {}: {}", where, std::strerror(errno)));
    }
    if (n > 0) answer.append(buf, static_cast<size_t>(n));
  }
}

// A TCP server in a network namespace that answers each connection, after its first line, with
// "<name> sees <peer address>\n" and closes it.
class LineServer {
 public:
  LineServer(std::string ns, std::string name, int port) : name_(std::move(name)) {
    thread_ = std::thread([this, ns, port] { Serve(ns, port); });
    status_ = ready_.get_future().get();
  }
  ~LineServer() {
    stop_ = true;
    thread_.join();
  }
  const Status& status() const { return status_; }

 private:
  void Serve(const std::string& ns, int port) {
    if (auto s = EnterNetns(ns); !s) return ready_.set_value(s);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in any = Endpoint("0.0.0.0", port);
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&any), sizeof(any)) != 0 ||
        listen(fd, 16) != 0) {
      ready_.set_value(Fail(Code::kInternal, fmt::format("listen on port {} in {}: {}", port, ns,
                                                         std::strerror(errno))));
      if (fd >= 0) close(fd);
      return;
    }
    ready_.set_value(Ok());
    while (!stop_) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 50) != 1) continue;
      sockaddr_in peer{};
      socklen_t len = sizeof(peer);
      int c = accept4(fd, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
      if (c < 0) continue;
      char line[64];
      pollfd in{c, POLLIN, 0};
      if (poll(&in, 1, 2000) == 1 && recv(c, line, sizeof(line), 0) > 0) {
        char ip[INET_ADDRSTRLEN] = {};
        inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof(ip));
        std::string answer = fmt::format("{} sees {}\n", name_, ip);
        (void)send(c, answer.data(), answer.size(), MSG_NOSIGNAL);
      }
      close(c);
    }
    close(fd);
  }

  std::string name_;
  std::promise<Status> ready_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  Status status_;
};

// A TCP port on the host nobody listens on right now.
int FreeHostPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = Endpoint("127.0.0.1", 0);
  socklen_t len = sizeof(a);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// A namespace whose eth0 is a veth to the host: host end `host_link` with `host_ip`, namespace
// end with `ns_cidr` and MAC `ns_mac`, default route via `host_ip`.
Status MakeNamespace(const std::string& ns, const std::string& host_link,
                     const std::string& ns_cidr, const std::string& ns_mac,
                     const std::string& host_ip) {
  std::vector<std::vector<std::string>> steps = {
      {"ip", "netns", "add", ns},
      {"ip", "link", "add", host_link, "type", "veth", "peer", "name", "eth0", "netns", ns},
      {"ip", "-n", ns, "link", "set", "dev", "eth0", "address", ns_mac},
      {"ip", "-n", ns, "addr", "add", ns_cidr, "dev", "eth0"},
      {"ip", "-n", ns, "link", "set", "dev", "eth0", "up"},
      {"ip", "-n", ns, "link", "set", "dev", "lo", "up"},
      {"ip", "-n", ns, "route", "add", "default", "via", host_ip},
  };
  for (const auto& argv : steps) {
    if (auto r = Cmd(argv); !r) return Fail(r.error());
  }
  return Ok();
}

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

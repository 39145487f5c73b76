// Limits that hold before a client is authenticated, against the real hearthd: its file
// descriptor limit, connection caps, the pre-first-byte timeout, authentication on headers before
// any body is read, and metrics whose series do not grow with what clients send.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/daemon.h"
#include "support/temp_dir.h"

namespace hearth::testing {
namespace {

using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

// A plain TCP connection to 127.0.0.1:port from `from` (any 127.x.y.z), for sending exactly the
// bytes a test wants.
class Conn {
 public:
  explicit Conn(uint16_t port, const char* from = "127.0.0.1") {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in local{};
    local.sin_family = AF_INET;
    ::inet_pton(AF_INET, from, &local.sin_addr);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof(local)) == 0 &&
                 ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  }
  ~Conn() {
    if (fd_ >= 0) ::close(fd_);
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  bool connected() const { return connected_; }

  bool Send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads until the server closes or the deadline passes; true if it closed (EOF or reset).
  // Looks at least once, even with no time left.
  bool WaitClosed(milliseconds timeout) {
    auto deadline = SteadyClock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - SteadyClock::now());
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(0, left.count()))) > 0) {
        char buf[4096];
        ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
        if (n <= 0) return true;
        received_.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (SteadyClock::now() >= deadline) return false;
    }
  }

  // True if the server has closed the connection by now (without waiting).
  bool ClosedNow() { return WaitClosed(milliseconds(1)); }

  // The status of the first response, once its status line arrived; 0 if none within `timeout`.
  int ReadStatus(milliseconds timeout) {
    auto deadline = SteadyClock::now() + timeout;
    while (received_.find("\r\n") == std::string::npos) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - SteadyClock::now());
      if (left.count() <= 0) return 0;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) return 0;
      received_.append(buf, static_cast<size_t>(n));
    }
    return received_.size() >= 12 ? std::atoi(received_.substr(9, 3).c_str()) : 0;
  }

  const std::string& received() const { return received_; }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string received_;
};

// Sets this process's RLIMIT_NOFILE for the daemon it starts (a child inherits it) and puts the
// soft one back when it goes away (the hard one stays: raising it needs CAP_SYS_RESOURCE).
class NofileLimit {
 public:
  NofileLimit(rlim_t soft, rlim_t hard) {
    ::getrlimit(RLIMIT_NOFILE, &old_);
    rlimit lower{soft, hard};
    ok_ = ::setrlimit(RLIMIT_NOFILE, &lower) == 0;
  }
  ~NofileLimit() {
    rlimit now{};
    ::getrlimit(RLIMIT_NOFILE, &now);
    now.rlim_cur = std::min(old_.rlim_cur, now.rlim_max);
    ::setrlimit(RLIMIT_NOFILE, &now);
  }
  bool ok() const { return ok_; }

 private:
  rlimit old_{};
  bool ok_ = false;
};

// A line of /proc/PID/limits, e.g. "Max open files            1024     4096     files".
std::string LimitsLine(pid_t pid, std::string_view name) {
  std::ifstream in(fmt::format("/proc/{}/limits", pid));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name, 0) == 0) return line;
  }
  return "";
}

TEST(LimitsTest, RaisesTheSoftFileLimitToTheHardOneAtStart) {
  TempDir dir;
  std::unique_ptr<DaemonProcess> d;
  {
    NofileLimit limit(256, 4096);
    ASSERT_TRUE(limit.ok());
    auto started = DaemonProcess::Start(dir.path());
    ASSERT_TRUE(started) << started.error().message;
    d = std::move(*started);
  }
  std::istringstream fields(LimitsLine(d->pid(), "Max open files").substr(26));
  std::string soft, hard;
  fields >> soft >> hard;
  EXPECT_EQ(soft, "4096") << "the soft limit was 256 when hearthd started";
  EXPECT_EQ(hard, "4096");
}

// The repro: idle TCP connections beyond the fd limit made the unix socket time out.
// 400 idle connections from 4 addresses against a daemon limited to 256 descriptors (prlimit):
// each address may hold 64, all together half the limit (128).
TEST(LimitsTest, IdleTcpConnectionsBeyondTheFdLimitLeaveTheUnixSocketAnswering) {
  TempDir dir;
  auto started = DaemonProcess::Start(dir.path());
  ASSERT_TRUE(started) << started.error().message;
  auto& d = *started;
  rlimit low{256, 256};
  ASSERT_EQ(::prlimit(d->pid(), RLIMIT_NOFILE, &low, nullptr), 0) << strerror(errno);
  std::vector<std::unique_ptr<Conn>> idle;
  for (int i = 0; i < 400; ++i) {
    const char* from[] = {"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"};
    idle.push_back(std::make_unique<Conn>(d->port(), from[i % 4]));
    ASSERT_TRUE(idle.back()->connected()) << "connection " << i << ": " << strerror(errno);
  }
  // Give hearthd time to accept (or refuse) every one of them.
  std::this_thread::sleep_for(milliseconds(1000));

  http::ClientOptions unix_options = d->UnixClient();
  unix_options.timeout = milliseconds(5000);
  http::Client over_unix(unix_options);
  for (const char* target : {"/healthz", "/v1/vms", "/v1/node"}) {
    auto r = over_unix.Request("GET", target);
    ASSERT_TRUE(r) << target << ": " << r.error().message;
    EXPECT_EQ(r->status, 200) << target;
  }
  int open = 0;
  for (auto& c : idle) open += c->ClosedNow() ? 0 : 1;
  EXPECT_LE(open, 128) << "the listener's cap (half the file limit) holds";
  EXPECT_GT(open, 0);

  // Slots are given back: once the idle ones are gone, TCP clients are served again.
  idle.clear();
  auto deadline = SteadyClock::now() + std::chrono::seconds(5);
  int status = 0;
  while (status != 200 && SteadyClock::now() < deadline) {
    http::Client over_tcp(d->TcpClient());
    auto r = over_tcp.Request("GET", "/v1/vms");
    status = r ? r->status : 0;
    if (status != 200) std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_EQ(status, 200);
}

TEST(LimitsTest, AConnectionThatSendsNothingIsClosedAfterTheFirstByteTimeout) {
  TempDir dir;
  auto d = DaemonProcess::Start(dir.path(), {"--first-byte-timeout", "300ms"});
  ASSERT_TRUE(d) << d.error().message;
  Conn silent((*d)->port());
  ASSERT_TRUE(silent.connected());
  auto start = SteadyClock::now();
  EXPECT_TRUE(silent.WaitClosed(milliseconds(3000)));
  EXPECT_LT(SteadyClock::now() - start, milliseconds(2000));

  // A client that does send is served as before.
  Conn talking((*d)->port());
  ASSERT_TRUE(talking.Send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(talking.ReadStatus(milliseconds(3000)), 200);
}

// Only the headers are sent: the 401 must come without hearthd waiting for the body.
TEST(LimitsTest, UnauthenticatedRequestIs401BeforeItsBodyIsRead) {
  TempDir dir;
  auto d = DaemonProcess::Start(dir.path());
  ASSERT_TRUE(d) << d.error().message;
  for (const char* length : {"1000000", "104857600"}) {
    Conn c((*d)->port());
    ASSERT_TRUE(
        c.Send(fmt::format("POST /v1/vms HTTP/1.1\r\nHost: x\r\nContent-Type: "
                           "application/json\r\nContent-Length: {}\r\n\r\n",
                           length)));
    EXPECT_EQ(c.ReadStatus(milliseconds(3000)), 401) << "Content-Length " << length;
    EXPECT_TRUE(c.WaitClosed(milliseconds(3000))) << "the unread body is never read";
  }
  // A bad token is refused the same way, Expect: 100-continue gets no 100.
  Conn c((*d)->port());
  ASSERT_TRUE(
      c.Send("PATCH /v1/vms/web HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\n"
             "Expect: 100-continue\r\nContent-Length: 500000\r\n\r\n"));
  EXPECT_EQ(c.ReadStatus(milliseconds(3000)), 401);
  EXPECT_EQ(c.received().find("100 Continue"), std::string::npos);

  // With the token the body is read and the request handled.
  http::Client good((*d)->TcpClient());
  auto r = good.Request("POST", "/v1/vms", std::string(1000, ' ') + "{}");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 400) << r->body;  // read, parsed and found lacking
}

// A field of /proc/PID/status in KiB ("VmRSS", "VmHWM").
long StatusKiB(pid_t pid, std::string_view field) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0 && line.size() > field.size() && line[field.size()] == ':') {
      return std::atol(line.c_str() + field.size() + 1);
    }
  }
  return -1;
}

// The repro: 100 unauthenticated connections sending 1 MiB bodies raised RSS from 31 to
// 129 MB. The bodies are never read now, so the peak RSS barely moves.
TEST(LimitsTest, UnauthenticatedBodiesDoNotGrowMemory) {
  TempDir dir;
  auto d = DaemonProcess::Start(dir.path());
  ASSERT_TRUE(d) << d.error().message;
  const pid_t pid = (*d)->pid();
  const long rss_before = StatusKiB(pid, "VmRSS"), peak_before = StatusKiB(pid, "VmHWM");
  const std::string body(1 << 20, 'x');
  const std::string head = fmt::format(
      "POST /v1/vms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Content-Length: {}\r\n\r\n",
      body.size());
  std::vector<std::unique_ptr<Conn>> conns;
  for (int i = 0; i < 100; ++i) {
    // From 4 addresses: 25 each stays under the per-address cap.
    const char* from[] = {"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"};
    conns.push_back(std::make_unique<Conn>((*d)->port(), from[i % 4]));
    ASSERT_TRUE(conns.back()->connected());
  }
  std::vector<std::thread> senders;
  std::atomic<int> answered{0};
  for (auto& c : conns) {
    senders.emplace_back([&, conn = c.get()] {
      if (conn->Send(head)) conn->Send(body);  // may fail once hearthd closed: that is fine
      if (conn->ReadStatus(milliseconds(10000)) != 0) ++answered;
    });
  }
  for (auto& t : senders) t.join();
  const long rss_after = StatusKiB(pid, "VmRSS"), peak_after = StatusKiB(pid, "VmHWM");
  std::printf("hearthd RSS %ld -> %ld KiB, peak %ld -> %ld KiB (100 x 1 MiB unauthenticated)\n",
              rss_before, rss_after, peak_before, peak_after);
  EXPECT_EQ(answered.load(), 100);
  EXPECT_LT(peak_after - peak_before, 32 * 1024) << "KiB of peak RSS growth";
}

int CountLines(const std::string& text, std::string_view prefix) {
  int n = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) n += line.rfind(prefix, 0) == 0 ? 1 : 0;
  return n;
}

// The repro: 20,000 made-up methods grew /metrics from 83 KB to 32 MB.
TEST(LimitsTest, MadeUpMethodsAndPathsLeaveMetricsSmall) {
  TempDir dir;
  auto d = DaemonProcess::Start(dir.path());
  ASSERT_TRUE(d) << d.error().message;
  http::Client metrics((*d)->TcpClient());
  auto before = metrics.Request("GET", "/metrics");
  ASSERT_TRUE(before);
  for (int i = 0; i < 20000; ++i) {
    Conn c((*d)->port());
    ASSERT_TRUE(c.Send(fmt::format("M{:05}X /v1/vms/x{}/y HTTP/1.1\r\nHost: x\r\n\r\n", i, i)));
    ASSERT_EQ(c.ReadStatus(milliseconds(5000)), 401) << "request " << i;
  }
  auto after = metrics.Request("GET", "/metrics");
  ASSERT_TRUE(after);
  EXPECT_LT(after->body.size(), before->body.size() + 20000)
      << "from " << before->body.size() << " bytes";
  EXPECT_LE(CountLines(after->body, "hearth_api_requests_total{"), 5);
  EXPECT_NE(after->body.find("hearth_api_requests_total{method=\"other\",route=\"other\","
                             "code=\"401\"} 20000"),
            std::string::npos)
      << after->body.substr(0, 4000);
}

}  // namespace
}  // namespace hearth::testing

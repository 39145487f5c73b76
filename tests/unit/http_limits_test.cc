// Tests of http::Server's limits before a request is handled: connection caps, the first-byte
// timeout, and Admit seeing the headers before any body is read. Real loopback sockets; clients
// are plain POSIX sockets so that every byte on the wire is under the test's control.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "http/client.h"
#include "http/server.h"

namespace hearth::http {
namespace {

using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

// Refuses (401) a request without an "x-key: yes" header on its headers alone; "/throw" throws
// from Admit. Counts the calls of each.
class GateHandler final : public api::HttpHandler {
 public:
  std::optional<api::HttpResponse> Admit(const api::HttpRequest& request) override {
    ++admits;
    if (request.target == "/throw") throw std::runtime_error("boom");
    if (!request.body.empty()) ++admits_with_body;  // never: the body is not read yet
    auto it = request.headers.find("x-key");
    if (request.trusted || (it != request.headers.end() && it->second == "yes")) {
      return std::nullopt;
    }
    api::HttpResponse refusal;
    refusal.status = 401;
    refusal.body = R"({"error":{"code":"unauthenticated","message":"no key"}})";
    return refusal;
  }
  api::HttpResponse Handle(const api::HttpRequest& request) override {
    ++handles;
    api::HttpResponse response;
    response.body = std::to_string(request.body.size());
    return response;
  }
  std::atomic<int> admits{0}, admits_with_body{0}, handles{0};
};

// A TCP connection to 127.0.0.1:port from the local address `from` (any 127.x.y.z).
class Conn {
 public:
  Conn(uint16_t port, const char* from = "127.0.0.1") {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in local{};
    local.sin_family = AF_INET;
    ::inet_pton(AF_INET, from, &local.sin_addr);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0 ||
        ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      throw std::runtime_error("connect failed");
    }
  }
  ~Conn() { ::close(fd_); }

  bool Send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads until the server closes (true) or the deadline passes (false).
  bool WaitClosed(milliseconds timeout) {
    auto deadline = SteadyClock::now() + timeout;
    while (Read(deadline)) {
    }
    return closed_;
  }

  // The status of the first response once its status line arrived; 0 if none in time.
  int ReadStatus(milliseconds timeout = milliseconds(3000)) {
    auto deadline = SteadyClock::now() + timeout;
    while (received_.find("\r\n") == std::string::npos) {
      if (!Read(deadline)) return 0;
    }
    return std::atoi(received_.substr(9, 3).c_str());
  }

  const std::string& received() const { return received_; }

 private:
  // One read (looking at least once, even past the deadline); false at the deadline or once
  // closed.
  bool Read(SteadyClock::time_point deadline) {
    if (closed_) return false;
    auto left = std::chrono::duration_cast<milliseconds>(deadline - SteadyClock::now());
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(0, left.count()))) <= 0) {
      return SteadyClock::now() < deadline;
    }
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) {
      closed_ = true;
      return false;
    }
    received_.append(buf, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool closed_ = false;
  std::string received_;
};

class TempSocketDir {
 public:
  TempSocketDir() {
    char name[] = "/tmp/hearth-lim-XXXXXX";
    if (::mkdtemp(name) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = name;
  }
  ~TempSocketDir() { std::filesystem::remove_all(path_); }
  std::filesystem::path socket() const { return path_ / "s.sock"; }

 private:
  std::filesystem::path path_;
};

ServerOptions Options() {
  ServerOptions o;
  o.tcp_host = "127.0.0.1";
  o.tcp_port = 0;
  return o;
}

// How many of `conns` the server closed within `wait`; the others are checked without waiting.
int CountClosed(std::vector<std::unique_ptr<Conn>>& conns, milliseconds wait) {
  int closed = 0;
  for (auto& c : conns) {
    closed += c->WaitClosed(wait) ? 1 : 0;
    wait = milliseconds(1);  // the server closes refused ones at once: one wait covers all
  }
  return closed;
}

TEST(HttpLimitsTest, TcpCapIsAtMostHalfTheFileLimit) {
  EXPECT_EQ(TcpConnectionCap(1024, 1024), 512);
  EXPECT_EQ(TcpConnectionCap(1024, 1 << 20), 1024);
  EXPECT_EQ(TcpConnectionCap(100, 256), 100);
  EXPECT_EQ(TcpConnectionCap(10, 1), 1);
  EXPECT_EQ(TcpConnectionCap(0, 1024), 1);
}

TEST(HttpLimitsTest, ConnectionsOverThePerAddressCapAreClosedOthersAreServed) {
  GateHandler handler;
  ServerOptions o = Options();
  o.max_connections_per_address = 3;
  Server server(handler, o);
  ASSERT_TRUE(server.Start());
  std::vector<std::unique_ptr<Conn>> from_one;
  for (int i = 0; i < 5; ++i) from_one.push_back(std::make_unique<Conn>(server.tcp_port()));
  EXPECT_EQ(CountClosed(from_one, milliseconds(500)), 2);

  // Another address has its own slots.
  Conn other(server.tcp_port(), "127.0.0.2");
  ASSERT_TRUE(other.Send("GET / HTTP/1.1\r\nHost: x\r\nX-Key: yes\r\n\r\n"));
  EXPECT_EQ(other.ReadStatus(), 200);

  // Closed connections give their slots back.
  from_one.clear();
  auto deadline = SteadyClock::now() + milliseconds(3000);
  int status = 0;
  while (status != 200 && SteadyClock::now() < deadline) {
    Conn again(server.tcp_port());
    if (again.Send("GET / HTTP/1.1\r\nHost: x\r\nX-Key: yes\r\n\r\n")) status = again.ReadStatus();
  }
  EXPECT_EQ(status, 200);
}

TEST(HttpLimitsTest, ListenerCapHoldsAcrossAddressesAndTheUnixSocketStillAnswers) {
  GateHandler handler;
  TempSocketDir dir;
  ServerOptions o = Options();
  o.unix_socket = dir.socket();
  o.max_connections = 4;
  Server server(handler, o);
  ASSERT_TRUE(server.Start());
  EXPECT_EQ(server.tcp_connection_cap(), 4);
  std::vector<std::unique_ptr<Conn>> conns;
  for (const char* from :
       {"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"}) {
    conns.push_back(std::make_unique<Conn>(server.tcp_port(), from));
  }
  EXPECT_EQ(CountClosed(conns, milliseconds(500)), 2);

  ClientOptions over_unix;
  over_unix.unix_socket = dir.socket().string();
  over_unix.timeout = milliseconds(3000);
  auto r = Client(over_unix).Request("GET", "/");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 200);
}

TEST(HttpLimitsTest, UnixSocketHasItsOwnCap) {
  GateHandler handler;
  TempSocketDir dir;
  ServerOptions o = Options();
  o.tcp_host.clear();
  o.unix_socket = dir.socket();
  o.max_unix_connections = 2;
  Server server(handler, o);
  ASSERT_TRUE(server.Start());
  ClientOptions over_unix;
  over_unix.unix_socket = dir.socket().string();
  over_unix.timeout = milliseconds(1000);
  Client first(over_unix), second(over_unix), third(over_unix);
  ASSERT_TRUE(first.Request("GET", "/"));   // keeps its connection open
  ASSERT_TRUE(second.Request("GET", "/"));  // so does this one
  EXPECT_FALSE(third.Request("GET", "/")) << "the third is closed on accept";
}

TEST(HttpLimitsTest, ConnectionThatSendsNothingIsClosedAfterTheFirstByteTimeout) {
  GateHandler handler;
  ServerOptions o = Options();
  o.first_byte_timeout = milliseconds(200);
  o.idle_timeout = milliseconds(5000);
  Server server(handler, o);
  ASSERT_TRUE(server.Start());
  Conn silent(server.tcp_port());
  Conn served(server.tcp_port());
  auto start = SteadyClock::now();
  ASSERT_TRUE(served.Send("GET / HTTP/1.1\r\nHost: x\r\nX-Key: yes\r\n\r\n"));
  EXPECT_EQ(served.ReadStatus(), 200);
  EXPECT_TRUE(silent.WaitClosed(milliseconds(3000)));
  EXPECT_LT(SteadyClock::now() - start, milliseconds(2000));
  // Between requests the (longer) idle timeout applies.
  EXPECT_FALSE(served.WaitClosed(milliseconds(600)));
}

TEST(HttpLimitsTest, AdmitRefusesOnTheHeadersWithoutReadingTheBody) {
  GateHandler handler;
  Server server(handler, Options());
  ASSERT_TRUE(server.Start());
  for (const char* length : {"1000", "1000000", "1000000000"}) {
    Conn c(server.tcp_port());
    ASSERT_TRUE(c.Send(std::string("POST /v1/vms HTTP/1.1\r\nHost: x\r\nContent-Length: ") +
                       length + "\r\n\r\n"));
    EXPECT_EQ(c.ReadStatus(), 401) << "Content-Length " << length;
    EXPECT_NE(c.received().find("Connection: close"), std::string::npos) << c.received();
    EXPECT_TRUE(c.WaitClosed(milliseconds(3000)));
  }
  Conn expecting(server.tcp_port());
  ASSERT_TRUE(expecting.Send(
      "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n"));
  EXPECT_EQ(expecting.ReadStatus(), 401) << "no 100 Continue for a refused request";
  EXPECT_EQ(handler.handles.load(), 0);
  EXPECT_EQ(handler.admits_with_body.load(), 0);

  // Admitted: the body is read and handled.
  Conn admitted(server.tcp_port());
  ASSERT_TRUE(
      admitted.Send("POST / HTTP/1.1\r\nHost: x\r\nX-Key: yes\r\nContent-Length: "
                    "5\r\n\r\nhello"));
  EXPECT_EQ(admitted.ReadStatus(), 200);
  EXPECT_EQ(handler.handles.load(), 1);
}

TEST(HttpLimitsTest, AdmittedDeclaredBodyOverTheLimitIs413BeforeItIsRead) {
  GateHandler handler;
  ServerOptions o = Options();
  o.body_limit = 100;
  Server server(handler, o);
  ASSERT_TRUE(server.Start());
  Conn c(server.tcp_port());
  ASSERT_TRUE(c.Send("POST / HTTP/1.1\r\nHost: x\r\nX-Key: yes\r\nContent-Length: 101\r\n\r\n"));
  EXPECT_EQ(c.ReadStatus(), 413);
  EXPECT_EQ(handler.handles.load(), 0);
}

TEST(HttpLimitsTest, AdmitThatThrowsIs500AndTheServerKeepsServing) {
  GateHandler handler;
  Server server(handler, Options());
  ASSERT_TRUE(server.Start());
  Conn c(server.tcp_port());
  ASSERT_TRUE(c.Send("GET /throw HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(c.ReadStatus(), 500);
  Conn next(server.tcp_port());
  ASSERT_TRUE(next.Send("GET / HTTP/1.1\r\nHost: x\r\nX-Key: yes\r\n\r\n"));
  EXPECT_EQ(next.ReadStatus(), 200);
}

}  // namespace
}  // namespace hearth::http

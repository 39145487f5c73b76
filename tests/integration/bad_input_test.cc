// The real hearthd against bad input: malformed and mistyped JSON, oversized bodies and header
// sections, unknown routes and methods, bytes that are not HTTP, and clients that stall or trickle
// half a request. Each is answered with the documented status (or the connection is closed), and
// through all of it other clients are unaffected: two bystanders keep listing and creating VMs
// with low latency, over the unix socket and over TCP. None of the bad requests changes the store:
// the VMs present before are identical after, and the only new VMs are the bystanders'.
//
// What this catches: a parser that crashes, hangs or leaks a connection on bad bytes; limits that
// are missing, off by one or answered with the wrong status; a slow client that blocks an io
// thread (and so every other client), or is never disconnected; a request timeout measured from
// the last byte instead of the first; bad input that reaches the store.
#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "http/client.h"
#include "support/daemon.h"
#include "support/temp_dir.h"

namespace hearth::testing {
namespace {

using nlohmann::json;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* kKernel = "/bin/true";
constexpr milliseconds kMaxGoodLatency{1000};
constexpr size_t kBodyLimit = 1 << 20;  // ServerOptions::body_limit, hearthd's default

int64_t MillisSince(Clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - t).count();
}

// A connection that sends exactly the bytes it is given, for requests the HTTP client would never
// send. Non-blocking; closed when the object goes away.
class RawConnection {
 public:
  static std::unique_ptr<RawConnection> Tcp(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return Finish(fd, connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)));
  }
  static std::unique_ptr<RawConnection> Unix(const std::filesystem::path& path) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    return Finish(fd, connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)));
  }
  ~RawConnection() { close(fd_); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  struct Reply {
    std::string data;     // everything the server sent
    bool closed = false;  // the server closed (or reset) the connection
  };

  // Sends `bytes` while reading what the server answers, until the server closes the connection
  // or `timeout` passes. Reading goes on when the server stops taking bytes.
  Reply Exchange(std::string_view bytes, milliseconds timeout) {
    Reply reply;
    size_t sent = 0;
    bool can_send = true;
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      pollfd p{fd_, static_cast<short>(POLLIN | (can_send && sent < bytes.size() ? POLLOUT : 0)),
               0};
      int left = static_cast<int>(
          std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count());
      if (poll(&p, 1, std::max(left, 1)) <= 0) continue;
      if (p.revents & POLLOUT) {
        ssize_t n = send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
        if (n > 0) {
          sent += static_cast<size_t>(n);
        } else if (errno != EAGAIN && errno != EINTR) {
          can_send = false;  // the server closed its side; its answer may still be readable
        }
      }
      if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
        char buf[16384];
        ssize_t n = recv(fd_, buf, sizeof(buf), 0);
        if (n > 0) {
          reply.data.append(buf, static_cast<size_t>(n));
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
          reply.closed = true;
          return reply;
        }
      }
    }
    return reply;
  }

  // Sends what fits without waiting; true when all of it was taken.
  bool Send(std::string_view bytes) {
    ssize_t n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    return n == static_cast<ssize_t>(bytes.size());
  }

  // True when the server has closed (or reset) the connection. Whatever arrived before is
  // appended to `data`.
  bool ServerClosed(std::string* data = nullptr) {
    char buf[4096];
    for (;;) {
      ssize_t n = recv(fd_, buf, sizeof(buf), MSG_DONTWAIT);
      if (n > 0) {
        if (data) data->append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) return true;
      return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
    }
  }

 private:
  static std::unique_ptr<RawConnection> Finish(int fd, int connect_result) {
    if (fd < 0) return nullptr;
    if (connect_result != 0) {
      close(fd);
      return nullptr;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return std::unique_ptr<RawConnection>(new RawConnection(fd));
  }
  explicit RawConnection(int fd) : fd_(fd) {}
  int fd_;
};

// The status code of the first response in `data`, or 0.
int StatusOf(const std::string& data) {
  if (data.size() < 12 || data.compare(0, 9, "HTTP/1.1 ") != 0) return 0;
  return std::atoi(data.substr(9, 3).c_str());
}

// The JSON body of the first response in `data` (discarded when there is none).
json BodyOf(const std::string& data) {
  auto at = data.find("\r\n\r\n");
  if (at == std::string::npos) return json(json::value_t::discarded);
  return json::parse(data.substr(at + 4), nullptr, /*allow_exceptions=*/false);
}

std::string HeaderOf(const api::HttpResponse& r, std::string_view name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return "";
}

// A well-behaved client that keeps listing and creating VMs on its own thread and records how
// each request went.
class Bystander {
 public:
  Bystander(http::ClientOptions options, std::string prefix)
      : prefix_(std::move(prefix)), client_([&] {
          options.timeout = milliseconds(5000);
          return options;
        }()) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Bystander() { Stop(); }

  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

  int requests() const { return requests_.load(); }
  // After Stop:
  const std::vector<std::string>& problems() const { return problems_; }
  const std::vector<std::string>& created() const { return created_; }
  int64_t max_latency_ms() const { return max_latency_ms_; }

 private:
  void Run() {
    int n = 0;
    while (!stop_) {
      Call("GET", "/v1/vms", "", 200);
      std::string name = fmt::format("{}-{}", prefix_, n++);
      if (Call("POST", "/v1/vms", json{{"name", name}, {"kernel", kKernel}}.dump(), 201)) {
        created_.push_back(name);
      }
      std::this_thread::sleep_for(milliseconds(40));
    }
  }

  bool Call(std::string_view method, const std::string& target, const std::string& body,
            int expected) {
    auto start = Clock::now();
    auto r = client_.Request(method, target, body);
    int64_t ms = MillisSince(start);
    max_latency_ms_ = std::max(max_latency_ms_, ms);
    ++requests_;
    if (!r) {
      problems_.push_back(fmt::format("{} {}: {}", method, target, r.error().message));
      return false;
    }
    if (r->status != expected) {
      problems_.push_back(
          fmt::format("{} {}: {} {}", method, target, r->status, r->body.substr(0, 200)));
      return false;
    }
    if (ms > kMaxGoodLatency.count()) {
      problems_.push_back(fmt::format("{} {}: took {} ms", method, target, ms));
    }
    return true;
  }

  const std::string prefix_;
  http::Client client_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::vector<std::string> problems_;
  std::vector<std::string> created_;
  int64_t max_latency_ms_ = 0;
};

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto daemon = DaemonProcess::Start(dir_.path() / "data");
    ASSERT_TRUE(daemon) << daemon.error().message;
    daemon_ = std::move(*daemon);
    unix_ = std::make_unique<http::Client>(daemon_->UnixClient());
    tcp_ = std::make_unique<http::Client>(daemon_->TcpClient());
    for (const char* name : {"keep-a", "keep-b"}) {
      auto r = unix_->Request("POST", "/v1/vms",
                              json{{"name", name}, {"kernel", kKernel}, {"vcpus", 1}}.dump());
      ASSERT_TRUE(r) << r.error().message;
      ASSERT_EQ(r->status, 201) << r->body;
    }
    before_ = ListVms();
    ASSERT_EQ(before_.size(), 2u);
    bystanders_.push_back(std::make_unique<Bystander>(daemon_->UnixClient(), "unix-bystander"));
    bystanders_.push_back(std::make_unique<Bystander>(daemon_->TcpClient(), "tcp-bystander"));
  }

  void TearDown() override {
    if (daemon_ == nullptr) return;
    std::set<std::string> expected_names;
    for (const auto& [name, _] : before_) expected_names.insert(name);
    for (auto& b : bystanders_) {
      b->Stop();
      SCOPED_TRACE(fmt::format("bystander with {} requests", b->requests()));
      EXPECT_THAT(b->problems(), ::testing::IsEmpty());
      EXPECT_LT(b->max_latency_ms(), kMaxGoodLatency.count());
      expected_names.insert(b->created().begin(), b->created().end());
    }
    // Nothing but the bystanders' creates changed the store.
    std::map<std::string, json> after = ListVms();
    std::set<std::string> names;
    for (const auto& [name, _] : after) names.insert(name);
    EXPECT_EQ(names, expected_names);
    for (const auto& [name, vm] : before_) EXPECT_EQ(after[name], vm) << name << " changed";
  }

  std::map<std::string, json> ListVms() {
    std::map<std::string, json> out;
    auto r = unix_->Request("GET", "/v1/vms");
    EXPECT_TRUE(r) << r.error().message;
    if (!r) return out;
    EXPECT_EQ(r->status, 200) << r->body;
    json list = json::parse(r->body);
    for (const json& vm : list["vms"]) out[vm["name"].get<std::string>()] = vm;
    return out;
  }

  // Runs `bad` at least once, and again until each bystander has made a few requests since it
  // began, so that the bad requests and the good ones overlap.
  void WhileBystandersRun(const std::function<void()>& bad) {
    std::vector<int> start;
    for (auto& b : bystanders_) start.push_back(b->requests());
    auto overlapped = [&] {
      for (size_t i = 0; i < bystanders_.size(); ++i) {
        if (bystanders_[i]->requests() < start[i] + 6) return false;
      }
      return true;
    };
    auto deadline = Clock::now() + std::chrono::seconds(20);
    do {
      bad();
    } while (!HasFailure() && !overlapped() && Clock::now() < deadline);
    if (!HasFailure()) {
      EXPECT_TRUE(overlapped()) << "the bystanders made no progress while the bad clients ran";
    }
  }

  // A raw connection over each transport.
  std::vector<std::pair<std::string, std::unique_ptr<RawConnection>>> Connections() {
    std::vector<std::pair<std::string, std::unique_ptr<RawConnection>>> out;
    out.emplace_back("tcp", RawConnection::Tcp(daemon_->port()));
    out.emplace_back("unix", RawConnection::Unix(daemon_->socket()));
    for (const auto& [where, c] : out) EXPECT_NE(c, nullptr) << "cannot connect over " << where;
    return out;
  }

  // "Authorization: ..." for TCP requests.
  std::string Auth() const { return "Authorization: Bearer " + daemon_->token() + "\r\n"; }

  // Sends `bytes` over both transports; expects each answer to be `status` with a JSON error and
  // the connection then closed by the server.
  void ExpectAnsweredAndClosed(const std::string& what, const std::string& bytes, int status) {
    for (auto& [where, c] : Connections()) {
      SCOPED_TRACE(fmt::format("{} over {}", what, where));
      if (!c) continue;
      auto start = Clock::now();
      RawConnection::Reply reply = c->Exchange(bytes, milliseconds(5000));
      EXPECT_EQ(StatusOf(reply.data), status) << reply.data.substr(0, 300);
      json body = BodyOf(reply.data);
      EXPECT_TRUE(body.is_object() && body["error"].is_object()) << reply.data.substr(0, 300);
      EXPECT_TRUE(reply.closed) << "the server kept the connection open";
      EXPECT_LT(MillisSince(start), 3000);
    }
  }

  TempDir dir_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<http::Client> unix_, tcp_;
  std::map<std::string, json> before_;
  std::vector<std::unique_ptr<Bystander>> bystanders_;
};

TEST_F(BadInputTest, MalformedJsonAndWrongTypesAre400NamingTheField) {
  struct Case {
    std::string method, target, body, field;
  };
  const std::vector<Case> cases = {
      {"POST", "/v1/vms", R"({"name": "x",)", "body"},
      {"POST", "/v1/vms", R"({"name": "x"} trailing)", "body"},
      {"POST", "/v1/vms", "\xff\xfe{}", "body"},
      {"POST", "/v1/vms", R"({"name": "x\xff", "kernel": "/bin/true"})", "body"},
      {"POST", "/v1/vms", "", "body"},
      {"POST", "/v1/vms", "[]", "body"},
      {"POST", "/v1/vms", "null", "body"},
      {"POST", "/v1/vms", R"("a string")", "body"},
      {"POST", "/v1/vms", std::string(100000, '['), "body"},
      {"POST", "/v1/vms", R"({"name": 5, "kernel": "/bin/true"})", "name"},
      {"POST", "/v1/vms", R"({"name": "x1", "kernel": "/bin/true", "vcpus": "2"})", "vcpus"},
      {"POST", "/v1/vms", R"({"name": "x2", "kernel": "/bin/true", "vcpus": 1.5})", "vcpus"},
      {"POST", "/v1/vms", R"({"name": "x3", "kernel": "/bin/true", "memory_mib": "256M"})",
       "memory_mib"},
      {"POST", "/v1/vms", R"({"name": "x4", "kernel": ["/bin/true"]})", "kernel"},
      {"POST", "/v1/vms", R"({"name": "x5", "kernel": "/bin/true", "publish": {}})", "publish"},
      {"POST", "/v1/vms", R"({"name": "x6", "kernel": "/bin/true", "timers": []})", "timers"},
      {"PATCH", "/v1/vms/keep-a", R"({"vcpus": true})", "vcpus"},
      {"PATCH", "/v1/vms/keep-a", R"({"generation": "1", "vcpus": 2})", "generation"},
      {"PATCH", "/v1/vms/keep-a", R"({"version": 1, "vcpus": 2})", "version"},
      {"PATCH", "/v1/vms/keep-a", R"({"cmdline": 7})", "cmdline"},
      {"PATCH", "/v1/vms/keep-a", R"({"vcpus": 2)", "body"},
      {"PATCH", "/v1/vms/keep-a", "[1]", "body"},
      {"PUT", "/v1/vms/keep-a", R"({"name": "sneaky", "kernel": "/bin/true"})", "name"},
      {"PUT", "/v1/vms/keep-a", R"({"kernel": "/bin/true", "version": 1})", "version"},
      {"PUT", "/v1/vms/keep-a", R"({"kernel": "/bin/true", "vcpus": 0})", "vcpus"},
  };
  WhileBystandersRun([&] {
    for (http::Client* client : {unix_.get(), tcp_.get()}) {
      for (const Case& c : cases) {
        SCOPED_TRACE(fmt::format("{} {} {:?} over {}", c.method, c.target, c.body.substr(0, 60),
                                 client->Describe()));
        auto r = client->Request(c.method, c.target, c.body);
        ASSERT_TRUE(r) << r.error().message;
        EXPECT_EQ(r->status, 400) << r->body;
        json body = json::parse(r->body, nullptr, false);
        ASSERT_TRUE(body.is_object()) << r->body;
        EXPECT_EQ(body["error"]["code"], "invalid_argument") << r->body;
        EXPECT_EQ(body["error"].value("field", ""), c.field) << r->body;
      }
    }
  });
  // The connection survives an error answer that the handler gave.
  auto r = unix_->Request("GET", "/healthz");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->status, 200);
}

TEST_F(BadInputTest, UnknownRoutesAre404AndUnknownMethods405) {
  struct Case {
    const char* method;
    const char* target;
    const char* allow;
  };
  const std::vector<Case> wrong_methods = {
      {"PUT", "/v1/vms", "GET, POST"},
      {"DELETE", "/v1/vms", "GET, POST"},
      {"POST", "/v1/vms/keep-a", "GET, PUT, PATCH, DELETE"},
      {"GET", "/v1/vms/keep-a/start", "POST"},
      {"DELETE", "/v1/vms/keep-a/events", "GET"},
      {"POST", "/healthz", "GET"},
      {"FROB", "/v1/vms", "GET, POST"},
      {"BREW", "/v1/vms/keep-a", "GET, PUT, PATCH, DELETE"},
  };
  WhileBystandersRun([&] {
    for (http::Client* client : {unix_.get(), tcp_.get()}) {
      SCOPED_TRACE(client->Describe());
      for (const char* target : {"/", "/v1", "/v2/vms", "/v1/nope", "/v1/vms/keep-a/reboot",
                                 "/v1/vms/keep-a/start/now", "/v1/vms/nope", "/metricsx"}) {
        auto r = client->Request("GET", target);
        ASSERT_TRUE(r) << r.error().message;
        EXPECT_EQ(r->status, 404) << target << ": " << r->body;
        EXPECT_EQ(json::parse(r->body)["error"]["code"], "not_found") << r->body;
      }
      for (const Case& c : wrong_methods) {
        SCOPED_TRACE(fmt::format("{} {}", c.method, c.target));
        auto r =
            client->Request(c.method, c.target, R"({"name": "sneaky", "kernel": "/bin/true"})");
        ASSERT_TRUE(r) << r.error().message;
        EXPECT_EQ(r->status, 405) << r->body;
        EXPECT_EQ(HeaderOf(*r, "allow"), c.allow);
        EXPECT_TRUE(json::parse(r->body, nullptr, false).is_object()) << r->body;
      }
    }
  });
}

TEST_F(BadInputTest, BodiesOverOneMebibyteAre413) {
  std::string chunked = fmt::format(
      "POST /v1/vms HTTP/1.1\r\nHost: x\r\n{}Transfer-Encoding: chunked\r\n\r\n", Auth());
  std::string chunk(64 * 1024, ' ');
  for (size_t sent = 0; sent <= kBodyLimit; sent += chunk.size()) {
    chunked += fmt::format("{:x}\r\n{}\r\n", chunk.size(), chunk);
  }
  chunked += "0\r\n\r\n";
  // Exactly at the limit is read in full and judged as JSON: the padding is an unknown field.
  std::string prefix = R"({"name": "at-limit", "kernel": "/bin/true", "padding": ")";
  std::string at_limit = prefix + std::string(kBodyLimit - prefix.size() - 2, 'x') + "\"}";
  ASSERT_EQ(at_limit.size(), kBodyLimit);

  WhileBystandersRun([&] {
    // Declared up front: refused from the header alone, before the body is read.
    ExpectAnsweredAndClosed("Content-Length over the limit",
                            fmt::format("POST /v1/vms HTTP/1.1\r\nHost: x\r\n{}Content-Type: "
                                        "application/json\r\nContent-Length: {}\r\n\r\n{}",
                                        Auth(), kBodyLimit + 1, std::string(64 * 1024, ' ')),
                            413);
    ExpectAnsweredAndClosed("huge Content-Length",
                            fmt::format("POST /v1/vms HTTP/1.1\r\nHost: x\r\n{}Content-Length: "
                                        "99999999999\r\n\r\n{{",
                                        Auth()),
                            413);
    // Chunked: only counting reveals it.
    ExpectAnsweredAndClosed("chunked body over the limit", chunked, 413);
    for (http::Client* client : {unix_.get(), tcp_.get()}) {
      SCOPED_TRACE(client->Describe());
      auto r = client->Request("POST", "/v1/vms", at_limit);
      ASSERT_TRUE(r) << r.error().message;
      EXPECT_EQ(r->status, 400) << r->body.substr(0, 300);
      EXPECT_EQ(json::parse(r->body)["error"].value("field", ""), "padding") << r->body;
      // One byte more through the client: the answer is 413, not a broken pipe.
      auto over = client->Request("POST", "/v1/vms", at_limit + " ");
      ASSERT_TRUE(over) << over.error().message;
      EXPECT_EQ(over->status, 413) << over->body.substr(0, 300);
    }
  });
}

TEST_F(BadInputTest, HeaderSectionsOver16KiBAre431) {
  // Small headers adding up to 48 KiB (AHeaderSectionJustOver16KiBIs431 covers the boundary).
  std::string many = fmt::format("GET /v1/vms HTTP/1.1\r\nHost: x\r\n{}", Auth());
  for (int i = 0; many.size() < 48 * 1024; ++i) many += fmt::format("X-Header-{}: value\r\n", i);
  WhileBystandersRun([&] {
    ExpectAnsweredAndClosed("one huge header",
                            fmt::format("GET /v1/vms HTTP/1.1\r\nHost: x\r\n{}X-Big: {}\r\n\r\n",
                                        Auth(), std::string(20 * 1024, 'a')),
                            431);
    ExpectAnsweredAndClosed("many headers", many + "\r\n", 431);
    ExpectAnsweredAndClosed("a huge request line",
                            fmt::format("GET /v1/vms/{} HTTP/1.1\r\nHost: x\r\n{}\r\n",
                                        std::string(20 * 1024, 'a'), Auth()),
                            431);
  });
}

TEST_F(BadInputTest, GarbageInsteadOfHttpIs400AndClosed) {
  std::string binary;
  for (int i = 0; i < 4096; ++i) binary += static_cast<char>((i * 7919) % 256);
  const std::vector<std::pair<std::string, std::string>> garbage = {
      {"NUL bytes", std::string("\0\0\0\0\r\n\r\n", 8)},
      {"binary", binary},
      {"TLS hello",
       std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) + std::string(500, '\x42')},
      {"no version", "GET /v1/vms\r\n\r\n"},
      {"bad version", "GET /v1/vms HTTP/9.9\r\nHost: x\r\n\r\n"},
      {"space in target", "GET /v1/ vms HTTP/1.1\r\nHost: x\r\n\r\n"},
      {"header without colon", "GET /v1/vms HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n"},
      {"bad content length", "POST /v1/vms HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"},
      {"two content lengths",
       "POST /v1/vms HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"},
      // Bad bodies are found only once the token on the headers is accepted (an unauthenticated
      // request is answered 401 before its body is read: LimitsTest).
      {"bad chunk size", "POST /v1/vms HTTP/1.1\r\nHost: x\r\n" + Auth() +
                             "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n"},
      {"newline only", std::string(10000, '\n')},
  };
  WhileBystandersRun([&] {
    for (const auto& [what, bytes] : garbage) ExpectAnsweredAndClosed(what, bytes, 400);
    // A good request, then garbage on the same connection: the first is answered normally.
    for (auto& [where, c] : Connections()) {
      SCOPED_TRACE(where);
      if (!c) continue;
      RawConnection::Reply reply = c->Exchange(
          "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\x01\x02garbage\r\n\r\n", milliseconds(5000));
      EXPECT_THAT(reply.data, StartsWith("HTTP/1.1 200 "));
      EXPECT_TRUE(reply.closed);
    }
  });
}

// Error messages may carry request bytes that are not UTF-8 (a name with 'é' cut to one byte, a
// wrong-typed value cut mid-character, a percent-decoded byte in a path or query): they must
// still be answered with a 4xx JSON error, never a 500 or a dropped connection.
TEST_F(BadInputTest, NonUtf8InErrorDetailsIsAnswered4xxNot500) {
  struct Case {
    std::string method, target, body;
    int status;
  };
  // In the JSON text, \u00e9 is 'e' with an acute accent: two bytes in UTF-8.
  std::string accents;
  for (int i = 0; i < 30; ++i) accents += "\\u00e9";
  const std::vector<Case> cases = {
      {"POST", "/v1/vms", R"({"name": "fr\u00e9sh", "kernel": "/bin/true"})", 400},
      // The 40-byte excerpt of the wrong-typed value in the message ends inside a character.
      {"POST", "/v1/vms",
       R"({"name": "fresh", "kernel": "/bin/true", "vcpus": "a)" + accents + R"("})", 400},
      {"GET", "/v1/vms/%C3", "", 404},
      {"DELETE", "/v1/vms/keep-a?%C3=1", "", 400},
  };
  WhileBystandersRun([&] {
    for (const Case& c : cases) {
      SCOPED_TRACE(fmt::format("{} {} {}", c.method, c.target, c.body));
      auto r = unix_->Request(c.method, c.target, c.body);
      ASSERT_TRUE(r) << r.error().message;
      EXPECT_EQ(r->status, c.status) << r->body;
    }
    for (auto& [where, c] : Connections()) {
      SCOPED_TRACE(where);
      if (!c) continue;
      RawConnection::Reply reply = c->Exchange(
          fmt::format("GET /v1/n\xc3 HTTP/1.1\r\nHost: x\r\n{}\r\n", Auth()), milliseconds(3000));
      EXPECT_EQ(StatusOf(reply.data), 404) << reply.data;
    }
  });
}

// Beast's header_limit bounds only the unparsed part of the header section; hearthd checks the
// total, so a header section just over 16 KiB arriving at once is refused too.
TEST_F(BadInputTest, AHeaderSectionJustOver16KiBIs431) {
  std::string many =
      fmt::format("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{}", Auth());
  for (int i = 0; many.size() < 24 * 1024; ++i) many += fmt::format("X-Header-{}: value\r\n", i);
  WhileBystandersRun([&] { ExpectAnsweredAndClosed("24 KiB of headers", many + "\r\n", 431); });
}

// The one slow test (~10 s, hearthd's request timeout): stalled and trickling clients over both
// transports at the same time are disconnected about 10 s after their first byte, while a
// connection that has sent nothing is kept (the 60 s idle timeout applies to it) and the
// bystanders see no delay.
TEST_F(BadInputTest, StalledAndTricklingClientsAreDisconnectedAfterTheRequestTimeout) {
  constexpr int kStalled = 50;
  constexpr milliseconds kTimeout{10000};
  auto start = Clock::now();
  std::vector<std::unique_ptr<RawConnection>> stalled;
  for (int i = 0; i < kStalled; ++i) {
    auto c = i % 2 ? RawConnection::Tcp(daemon_->port()) : RawConnection::Unix(daemon_->socket());
    ASSERT_NE(c, nullptr);
    // Half a request: the headers in full and part of the body, or part of the headers.
    std::string half = "GET /v1/vms HTTP/1.1\r\nHost: x\r\nX-Partial: abc";
    if (i % 4 < 2) {
      half = fmt::format("POST /v1/vms HTTP/1.1\r\nHost: x\r\n{}Content-Length: 100\r\n\r\n",
                         i % 2 ? Auth() : "");
      half += fmt::format(R"({{"name": "stalled-{}", "kern)", i);
    }
    ASSERT_TRUE(c->Send(half));
    stalled.push_back(std::move(c));
  }
  // Trickles one byte of its headers every 500 ms: it is never idle, yet its request never ends.
  auto trickler = RawConnection::Tcp(daemon_->port());
  ASSERT_NE(trickler, nullptr);
  std::string endless = "GET /v1/vms HTTP/1.1\r\nX-Slow: " + std::string(100, 'z');
  // Has sent nothing: the idle timeout applies, not the request timeout.
  auto idle = RawConnection::Unix(daemon_->socket());
  ASSERT_NE(idle, nullptr);

  std::vector<std::optional<int64_t>> closed_after(kStalled);
  std::optional<int64_t> trickler_closed_after;
  size_t trickled = 0;
  auto next_trickle = start;
  while (MillisSince(start) < kTimeout.count() + 4000) {
    if (!trickler_closed_after && Clock::now() >= next_trickle && trickled < endless.size()) {
      trickler->Send(endless.substr(trickled++, 1));
      next_trickle += milliseconds(500);
    }
    bool all_closed = trickler_closed_after.has_value();
    for (int i = 0; i < kStalled; ++i) {
      std::string data;
      if (!closed_after[i] && stalled[i]->ServerClosed(&data)) closed_after[i] = MillisSince(start);
      EXPECT_EQ(data, "") << "stalled client " << i << " got an answer";
      all_closed = all_closed && closed_after[i].has_value();
    }
    std::string data;
    if (!trickler_closed_after && trickler->ServerClosed(&data)) {
      trickler_closed_after = MillisSince(start);
    }
    if (all_closed) break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  for (int i = 0; i < kStalled; ++i) {
    SCOPED_TRACE(fmt::format("stalled client {}", i));
    ASSERT_TRUE(closed_after[i].has_value()) << "still open after " << MillisSince(start) << " ms";
    EXPECT_GE(*closed_after[i], kTimeout.count() - 1000) << "closed before the request timeout";
    EXPECT_LE(*closed_after[i], kTimeout.count() + 3000);
  }
  ASSERT_TRUE(trickler_closed_after.has_value()) << "the trickling client is still connected";
  EXPECT_GE(*trickler_closed_after, kTimeout.count() - 1000);
  EXPECT_LE(*trickler_closed_after, kTimeout.count() + 3000);

  // The connection that sent nothing is still open and still served.
  EXPECT_FALSE(idle->ServerClosed()) << "an idle connection was closed by the request timeout";
  RawConnection::Reply reply = idle->Exchange(
      "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", milliseconds(3000));
  EXPECT_THAT(reply.data, StartsWith("HTTP/1.1 200 "));
  for (auto& b : bystanders_) {
    EXPECT_GE(b->requests(), 100) << "a bystander was slowed down by the stalled clients";
  }
}

}  // namespace
}  // namespace hearth::testing

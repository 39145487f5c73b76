// Tests of http::Server and http::Client over real loopback sockets. Misbehaving clients are
// played with plain POSIX sockets, so that every byte on the wire is under the test's control.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "http/client.h"
#include "http/server.h"

namespace hearth::http {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

// Echoes the request as JSON; "/throw" throws, "/no-content" answers 204 and "/inject" answers
// with a line break in a header value.
class EchoHandler final : public api::HttpHandler {
 public:
  api::HttpResponse Handle(const api::HttpRequest& request) override {
    ++calls;
    if (request.target == "/throw") throw std::runtime_error("boom");
    if (request.target == "/no-content") {
      api::HttpResponse response;
      response.status = 204;
      return response;
    }
    if (request.target == "/inject") {
      api::HttpResponse response;
      response.headers.emplace_back("X-Name", "web\r\nX-Injected: yes");
      return response;
    }
    json headers = json::object();
    for (const auto& [name, value] : request.headers) headers[name] = value;
    api::HttpResponse response;
    response.body = json{
        {"method", request.method},
        {"target", request.target},
        {"body", request.body},
        {"trusted", request.trusted},
        {"headers",
         headers}}.dump();
    response.headers.emplace_back("ETag", "\"7\"");
    return response;
  }

  std::atomic<int> calls{0};
};

class TempDir {
 public:
  TempDir() {
    // Short, under /tmp: unix socket paths are limited to 107 bytes.
    char name[] = "/tmp/hearth-http-XXXXXX";
    if (::mkdtemp(name) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = name;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A POSIX TCP connection to 127.0.0.1 for sending exactly the bytes a test wants.
class RawConnection {
 public:
  explicit RawConnection(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      throw std::runtime_error("connect failed");
    }
  }
  ~RawConnection() { ::close(fd_); }

  bool Send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  struct Response {
    int status = 0;
    std::string head;  // status line and headers
    std::string body;
  };
  // Reads one response with a Content-Length body; nullopt on timeout or end of stream.
  std::optional<Response> ReadResponse(milliseconds timeout = milliseconds(5000)) {
    auto deadline = SteadyClock::now() + timeout;
    size_t head_end;
    while ((head_end = pending_.find("\r\n\r\n")) == std::string::npos) {
      if (!ReadMore(deadline)) return std::nullopt;
    }
    Response response;
    response.head = pending_.substr(0, head_end);
    response.status = std::stoi(response.head.substr(9, 3));
    size_t length = 0;
    if (auto at = Lower(response.head).find("content-length:"); at != std::string::npos) {
      length = std::stoul(response.head.substr(at + 15));
    }
    while (pending_.size() < head_end + 4 + length) {
      if (!ReadMore(deadline)) return std::nullopt;
    }
    response.body = pending_.substr(head_end + 4, length);
    pending_.erase(0, head_end + 4 + length);
    return response;
  }

  // Waits until the server closes the connection; false if it is still open at the deadline.
  // Bytes that arrive meanwhile are kept in `pending_`.
  bool WaitClosed(milliseconds timeout) {
    auto deadline = SteadyClock::now() + timeout;
    while (ReadMore(deadline)) {
    }
    return closed_;
  }

  const std::string& pending() const { return pending_; }

 private:
  static std::string Lower(std::string text) {
    for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return text;
  }

  // Reads what is available before the deadline; false at end of stream or deadline.
  bool ReadMore(SteadyClock::time_point deadline) {
    if (closed_) return false;
    auto left = std::chrono::duration_cast<milliseconds>(deadline - SteadyClock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char chunk[4096];
    ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (n <= 0) {  // end of stream or reset
      closed_ = true;
      return false;
    }
    pending_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool closed_ = false;
  std::string pending_;
};

// A scripted HTTP server on a POSIX socket, for testing how the client uses connections. It
// answers every request with 200 "ok" and counts the connections it accepted.
class FakeHttpServer {
 public:
  // answers_per_connection: how many requests a connection gets answered before the server
  // closes it (0: close each connection after reading its first request, without answering).
  explicit FakeHttpServer(int answers_per_connection) : answers_(answers_per_connection) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof(address);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), size) != 0 ||
        ::listen(listen_fd_, 8) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
      throw std::runtime_error("fake server: cannot listen");
    }
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { Run(); });
  }
  ~FakeHttpServer() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
  }

  uint16_t port() const { return port_; }
  int accepted() const { return accepted_; }

 private:
  void Run() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) continue;
      ++accepted_;
      Serve(fd);
      ::close(fd);
    }
  }

  // Requests have no body in these tests, so a request ends at the blank line.
  void Serve(int fd) {
    std::string pending;
    for (int answered = 0;; ++answered) {
      size_t end;
      while ((end = pending.find("\r\n\r\n")) == std::string::npos) {
        pollfd p{fd, POLLIN, 0};
        if (stop_ || ::poll(&p, 1, 20) < 0) return;
        if (p.revents == 0) continue;
        char chunk[4096];
        ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
        if (n <= 0) return;
        pending.append(chunk, static_cast<size_t>(n));
      }
      pending.erase(0, end + 4);
      if (answered == answers_) return;
      std::string_view answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
      if (::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL) < 0) return;
      if (answered + 1 == answers_) return;
    }
  }

  const int answers_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

ServerOptions TcpOptions() {
  ServerOptions options;
  options.tcp_port = 0;
  return options;
}

Client TcpClient(const Server& server, std::string token = {}) {
  ClientOptions options;
  options.port = server.tcp_port();
  options.token = std::move(token);
  options.timeout = milliseconds(5000);
  return Client(std::move(options));
}

Client UnixClient(const std::filesystem::path& socket) {
  ClientOptions options;
  options.unix_socket = socket.string();
  options.timeout = milliseconds(5000);
  return Client(std::move(options));
}

Client TcpClientTo(uint16_t port, milliseconds timeout = milliseconds(5000)) {
  ClientOptions options;
  options.port = port;
  options.timeout = timeout;
  return Client(std::move(options));
}

std::string HeaderValue(const api::HttpResponse& response, std::string_view name) {
  for (const auto& [key, value] : response.headers) {
    if (key == name) return value;
  }
  return {};
}

TEST(HttpServerTest, RoundTripOverTcpIsUntrusted) {
  EchoHandler handler;
  Server server(handler, TcpOptions());
  ASSERT_TRUE(server.Start()) << server.Start().error().message;
  ASSERT_NE(server.tcp_port(), 0);
  Client client = TcpClient(server, "secret");
  EXPECT_EQ(client.Describe(), "http://127.0.0.1:" + std::to_string(server.tcp_port()));

  auto response = client.Request("POST", "/v1/vms?limit=2", R"({"name":"web"})",
                                 {{"If-Match", "\"3\""}, {"Accept", "application/json"}});

  ASSERT_TRUE(response) << response.error().message;
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->content_type, "application/json");
  EXPECT_EQ(HeaderValue(*response, "server"), "hearthd");
  EXPECT_EQ(HeaderValue(*response, "etag"), "\"7\"");
  EXPECT_EQ(HeaderValue(*response, "content-length"), std::to_string(response->body.size()));
  json echo = json::parse(response->body);
  EXPECT_EQ(echo["method"], "POST");
  EXPECT_EQ(echo["target"], "/v1/vms?limit=2");
  EXPECT_EQ(echo["body"], R"({"name":"web"})");
  EXPECT_EQ(echo["trusted"], false);
  EXPECT_EQ(echo["headers"]["authorization"], "Bearer secret");
  EXPECT_EQ(echo["headers"]["content-type"], "application/json");
  EXPECT_EQ(echo["headers"]["if-match"], "\"3\"");
  EXPECT_EQ(echo["headers"]["accept"], "application/json");
}

TEST(HttpServerTest, RoundTripOverUnixSocketIsTrustedAndRootOnly) {
  TempDir dir;
  EchoHandler handler;
  ServerOptions options;
  options.tcp_host = "";
  options.unix_socket = dir.path() / "hearthd.sock";
  Server server(handler, options);
  ASSERT_TRUE(server.Start());
  EXPECT_EQ(server.tcp_port(), 0);

  struct stat st {};
  ASSERT_EQ(::lstat(options.unix_socket.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);

  Client client = UnixClient(options.unix_socket);
  EXPECT_EQ(client.Describe(), "unix:" + options.unix_socket.string());
  auto response = client.Request("GET", "/v1/vms");
  ASSERT_TRUE(response) << response.error().message;
  EXPECT_EQ(response->status, 200);
  json echo = json::parse(response->body);
  EXPECT_EQ(echo["trusted"], true);
  EXPECT_EQ(echo["method"], "GET");
  EXPECT_EQ(echo["body"], "");

  server.Stop();
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::symlink_status(options.unix_socket)));
}

TEST(HttpServerTest, ReplacesStaleSocketButNotOtherFiles) {
  TempDir dir;
  EchoHandler handler;
  ServerOptions options;
  options.tcp_host = "";
  options.unix_socket = dir.path() / "hearthd.sock";

  // What a killed hearthd leaves behind: a socket file nobody listens on.
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, options.unix_socket.c_str(), sizeof(address.sun_path) - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ::close(fd);
  {
    Server server(handler, options);
    ASSERT_TRUE(server.Start());
    auto response = UnixClient(options.unix_socket).Request("GET", "/");
    ASSERT_TRUE(response) << response.error().message;
  }

  std::filesystem::path file = dir.path() / "notes.txt";
  { std::ofstream(file) << "keep me"; }
  options.unix_socket = file;
  Server server(handler, options);
  auto started = server.Start();
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().code, Code::kFailedPrecondition);
  EXPECT_NE(started.error().message.find("not a socket"), std::string::npos);
  EXPECT_TRUE(std::filesystem::is_regular_file(file));
}

TEST(HttpServerTest, ClientToMissingSocketIsUnavailable) {
  TempDir dir;
  std::string path = (dir.path() / "hearthd.sock").string();
  Client client = UnixClient(path);

  auto response = client.Request("GET", "/v1/vms");

  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, Code::kUnavailable);
  EXPECT_EQ(response.error().message, "cannot reach hearthd at unix:" + path +
                                          ": No such file or directory; is hearthd running?");
}

TEST(HttpServerTest, BindConflictIsAnErrorNamingTheAddress) {
  EchoHandler handler;
  Server first(handler, TcpOptions());
  ASSERT_TRUE(first.Start());
  ServerOptions options;
  options.tcp_port = first.tcp_port();
  Server second(handler, options);

  auto started = second.Start();

  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().message,
            "listening on 127.0.0.1:" + std::to_string(first.tcp_port()) +
                ": Address already in use; is another hearthd running? use --listen to pick "
                "another address");
}

TEST(HttpServerTest, KeepsConnectionsAliveAndAnswersPipelinedRequests) {
  EchoHandler handler;
  Server server(handler, TcpOptions());
  ASSERT_TRUE(server.Start());
  RawConnection connection(server.tcp_port());
  const std::string request = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";

  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(connection.Send(request));
    auto response = connection.ReadResponse();
    ASSERT_TRUE(response) << "request " << i;
    EXPECT_EQ(response->status, 200);
  }
  ASSERT_TRUE(connection.Send(request + request));
  EXPECT_TRUE(connection.ReadResponse());
  EXPECT_TRUE(connection.ReadResponse());
  EXPECT_EQ(handler.calls, 5);
}

TEST(HttpServerTest, ClosesAfterAnsweringConnectionClose) {
  EchoHandler handler;
  Server server(handler, TcpOptions());
  ASSERT_TRUE(server.Start());
  RawConnection connection(server.tcp_port());

  ASSERT_TRUE(connection.Send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));

  auto response = connection.ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 200);
  EXPECT_TRUE(connection.WaitClosed(milliseconds(5000)));
}

TEST(HttpServerTest, BodyOverLimitIs413AndOthersAreStillServed) {
  EchoHandler handler;
  ServerOptions options = TcpOptions();
  options.body_limit = 1024;
  Server server(handler, options);
  ASSERT_TRUE(server.Start());
  Client client = TcpClient(server);

  auto response = client.Request("POST", "/v1/vms", std::string(4096, 'x'));

  ASSERT_TRUE(response) << response.error().message;
  EXPECT_EQ(response->status, 413);
  json body = json::parse(response->body);
  EXPECT_EQ(body["error"]["code"], "invalid_argument");
  EXPECT_EQ(body["error"]["message"], "body: larger than the 1024-byte limit");
  EXPECT_EQ(handler.calls, 0);

  // The same client (on a new connection) and another one are served.
  auto again = client.Request("POST", "/v1/vms", std::string(1024, 'x'));
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->status, 200);
  auto other = TcpClient(server).Request("GET", "/");
  ASSERT_TRUE(other) << other.error().message;
  EXPECT_EQ(other->status, 200);
}

TEST(HttpServerTest, ClientReadsThe413EvenWhenSendingTheBodyFails) {
  EchoHandler handler;
  Server server(handler, TcpOptions());  // the default 1 MiB limit
  ASSERT_TRUE(server.Start());

  // More than the socket buffers and the server's drain take: the server closes while the client
  // is still sending, and the client must still read the answer.
  auto response = TcpClient(server).Request("PUT", "/", std::string(32 << 20, 'x'));

  ASSERT_TRUE(response) << response.error().message;
  EXPECT_EQ(response->status, 413);
  EXPECT_EQ(json::parse(response->body)["error"]["message"],
            "body: larger than the 1048576-byte limit");
}

TEST(HttpServerTest, ChunkedBodyOverLimitIs413ThenClose) {
  EchoHandler handler;
  ServerOptions options = TcpOptions();
  options.body_limit = 10;
  Server server(handler, options);
  ASSERT_TRUE(server.Start());
  RawConnection connection(server.tcp_port());

  ASSERT_TRUE(connection.Send(
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n"
      "8\r\n12345678\r\n0\r\n\r\n"));

  auto response = connection.ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 413);
  EXPECT_TRUE(connection.WaitClosed(milliseconds(5000)));
  EXPECT_EQ(handler.calls, 0);
}

TEST(HttpServerTest, MalformedRequestIs400ThenClose) {
  EchoHandler handler;
  Server server(handler, TcpOptions());
  ASSERT_TRUE(server.Start());
  RawConnection connection(server.tcp_port());

  ASSERT_TRUE(connection.Send("GET / HTTP/9.9 please\r\n\r\n"));

  auto response = connection.ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 400);
  EXPECT_NE(response->head.find("application/json"), std::string::npos);
  json body = json::parse(response->body);
  EXPECT_EQ(body["error"]["code"], "invalid_argument");
  EXPECT_TRUE(body["error"]["message"].get<std::string>().starts_with("malformed HTTP request"));
  EXPECT_TRUE(connection.WaitClosed(milliseconds(5000)));
  EXPECT_EQ(handler.calls, 0);
}

TEST(HttpServerTest, OversizedHeadersAre431) {
  EchoHandler handler;
  Server server(handler, TcpOptions());
  ASSERT_TRUE(server.Start());
  RawConnection connection(server.tcp_port());

  ASSERT_TRUE(connection.Send("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') +
                              "\r\n\r\n"));

  auto response = connection.ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 431);
  EXPECT_TRUE(connection.WaitClosed(milliseconds(5000)));
}

TEST(HttpServerTest, HandlerExceptionIs500AndServerKeepsServing) {
  EchoHandler handler;
  Server server(handler, TcpOptions());
  ASSERT_TRUE(server.Start());
  Client client = TcpClient(server);

  auto response = client.Request("GET", "/throw");

  ASSERT_TRUE(response) << response.error().message;
  EXPECT_EQ(response->status, 500);
  EXPECT_EQ(json::parse(response->body)["error"]["code"], "internal");
  auto next = client.Request("GET", "/");
  ASSERT_TRUE(next) << next.error().message;
  EXPECT_EQ(next->status, 200);
}

TEST(HttpServerTest, HeaderWithLineBreakIs500NotInjected) {
  EchoHandler handler;
  Server server(handler, TcpOptions());
  ASSERT_TRUE(server.Start());
  RawConnection connection(server.tcp_port());

  ASSERT_TRUE(connection.Send("GET /inject HTTP/1.1\r\nHost: x\r\n\r\n"));

  auto response = connection.ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 500);
  EXPECT_EQ(response->head.find("X-Injected"), std::string::npos) << response->head;
}

TEST(HttpServerTest, NoContentHasNoContentLength) {
  EchoHandler handler;
  Server server(handler, TcpOptions());
  ASSERT_TRUE(server.Start());
  RawConnection connection(server.tcp_port());

  ASSERT_TRUE(connection.Send("GET /no-content HTTP/1.1\r\nHost: x\r\n\r\n"));

  auto response = connection.ReadResponse();
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 204);
  EXPECT_EQ(response->head.find("Content-Length"), std::string::npos) << response->head;
  EXPECT_EQ(response->head.find("Content-Type"), std::string::npos) << response->head;
}

TEST(HttpServerTest, SlowClientIsDroppedAfterRequestTimeoutWhileOthersAreServed) {
  EchoHandler handler;
  ServerOptions options = TcpOptions();
  options.request_timeout = milliseconds(300);
  Server server(handler, options);
  ASSERT_TRUE(server.Start());
  RawConnection slow(server.tcp_port());
  Client client = TcpClient(server);

  auto start = SteadyClock::now();
  ASSERT_TRUE(slow.Send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf"));
  for (int i = 0; i < 3; ++i) {
    auto response = client.Request("GET", "/");
    ASSERT_TRUE(response) << response.error().message;
    EXPECT_EQ(response->status, 200);
  }

  ASSERT_TRUE(slow.WaitClosed(milliseconds(5000)));
  EXPECT_GE(SteadyClock::now() - start, milliseconds(300));
  EXPECT_EQ(slow.pending(), "");  // dropped without an answer
  EXPECT_EQ(handler.calls, 3);
}

TEST(HttpServerTest, TricklingBytesDoesNotExtendTheRequestTimeout) {
  EchoHandler handler;
  ServerOptions options = TcpOptions();
  options.request_timeout = milliseconds(300);
  Server server(handler, options);
  ASSERT_TRUE(server.Start());
  RawConnection slow(server.tcp_port());

  auto start = SteadyClock::now();
  std::string request = "GET / HTTP/1.1\r\nHost: x\r\nX-Filler: " + std::string(1000, 'a');
  const auto deadline = start + milliseconds(3000);
  bool closed = false;
  for (size_t i = 0; i < request.size() && !closed && SteadyClock::now() < deadline; ++i) {
    closed = !slow.Send(request.substr(i, 1)) || slow.WaitClosed(milliseconds(20));
  }

  EXPECT_TRUE(closed) << "still open after 3 s of trickling";
}

TEST(HttpServerTest, IdleTimeoutAppliesBetweenRequestsNotRequestTimeout) {
  EchoHandler handler;
  ServerOptions options = TcpOptions();
  options.request_timeout = milliseconds(100);
  options.idle_timeout = milliseconds(400);
  Server server(handler, options);
  ASSERT_TRUE(server.Start());
  RawConnection connection(server.tcp_port());
  const std::string request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

  ASSERT_TRUE(connection.Send(request));
  ASSERT_TRUE(connection.ReadResponse());
  // Idle for longer than the request timeout: the connection stays usable.
  EXPECT_FALSE(connection.WaitClosed(milliseconds(200)));
  ASSERT_TRUE(connection.Send(request));
  auto start = SteadyClock::now();
  ASSERT_TRUE(connection.ReadResponse());

  EXPECT_TRUE(connection.WaitClosed(milliseconds(5000)));
  EXPECT_GE(SteadyClock::now() - start, milliseconds(400));
}

TEST(HttpServerTest, ConcurrentClientsAreAllServed) {
  EchoHandler handler;
  Server server(handler, TcpOptions());
  ASSERT_TRUE(server.Start());
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      Client client = TcpClient(server);
      for (int i = 0; i < 25; ++i) {
        auto response = client.Request("POST", "/", "{}");
        if (response && response->status == 200) ++ok;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(ok, 100);
}

TEST(HttpServerTest, StopClosesConnectionsAndIsIdempotent) {
  EchoHandler handler;
  Server server(handler, TcpOptions());
  ASSERT_TRUE(server.Start());
  Client client = TcpClient(server);
  ASSERT_TRUE(client.Request("GET", "/"));
  RawConnection idle(server.tcp_port());

  server.Stop();
  server.Stop();

  EXPECT_TRUE(idle.WaitClosed(milliseconds(5000)));
  auto response = client.Request("GET", "/");
  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, Code::kUnavailable);
  EXPECT_NE(response.error().message.find("Connection refused; is hearthd running?"),
            std::string::npos)
      << response.error().message;
}

TEST(HttpClientTest, ReusesKeepAliveConnection) {
  FakeHttpServer fake(/*answers_per_connection=*/100);
  Client client = TcpClientTo(fake.port());

  for (int i = 0; i < 3; ++i) {
    auto response = client.Request("GET", "/");
    ASSERT_TRUE(response) << response.error().message;
    EXPECT_EQ(response->body, "ok");
    EXPECT_EQ(response->content_type, "");
  }
  EXPECT_EQ(fake.accepted(), 1);
}

TEST(HttpClientTest, ReconnectsOnceWhenServerClosedKeepAliveConnection) {
  FakeHttpServer fake(/*answers_per_connection=*/1);
  Client client = TcpClientTo(fake.port());

  for (int i = 0; i < 3; ++i) {
    auto response = client.Request("GET", "/");
    ASSERT_TRUE(response) << response.error().message;
    EXPECT_EQ(response->body, "ok");
  }
  EXPECT_EQ(fake.accepted(), 3);
}

TEST(HttpClientTest, DoesNotResendOnFreshConnection) {
  FakeHttpServer fake(/*answers_per_connection=*/0);
  Client client = TcpClientTo(fake.port());

  auto response = client.Request("GET", "/");

  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, Code::kUnavailable);
  EXPECT_EQ(fake.accepted(), 1);
}

TEST(HttpClientTest, TimesOutWhenServerDoesNotAnswer) {
  // A listening socket that never accepts: the connection completes in the kernel's backlog, and
  // the request is never answered.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t size = sizeof(address);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), size), 0);
  ASSERT_EQ(::listen(fd, 8), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size), 0);
  Client client = TcpClientTo(ntohs(address.sin_port), milliseconds(200));

  auto start = SteadyClock::now();
  auto response = client.Request("GET", "/");

  ASSERT_FALSE(response);
  EXPECT_EQ(response.error().code, Code::kUnavailable);
  EXPECT_NE(response.error().message.find("did not answer within 200 ms"), std::string::npos)
      << response.error().message;
  EXPECT_GE(SteadyClock::now() - start, milliseconds(200));
  ::close(fd);
}

}  // namespace
}  // namespace hearth::http

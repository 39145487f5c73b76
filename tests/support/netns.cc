#include "support/netns.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "image/command.h"
#include "support/scope_guard.h"

namespace hearth::testing {

using std::chrono::milliseconds;

Result<std::string> Cmd(const std::vector<std::string>& argv) {
  auto r = image::RunCommand(argv);
  if (!r) return Fail(r.error());
  return r->out;
}

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

sockaddr_in Endpoint(const std::string& ip, int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  return a;
}

// Connects to ip:port, sends a line and returns everything the peer sends back before closing.
Result<std::string> Exchange(const std::string& ip, int port, milliseconds timeout,
                             const std::string& source) {
  std::string where = fmt::format("{}:{}", ip, port);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Fail(Code::kInternal, std::strerror(errno));
  Guard close_fd([fd] { close(fd); });
  if (!source.empty()) {
    sockaddr_in from = Endpoint(source, 0);
    if (bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof(from)) != 0) {
      return Fail(Code::kInternal, fmt::format("bind {}: {}", source, std::strerror(errno)));
    }
  }
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

LineServer::LineServer(std::string ns, std::string name, int port) : name_(std::move(name)) {
  thread_ = std::thread([this, ns, port] { Serve(ns, port); });
  status_ = ready_.get_future().get();
}

LineServer::~LineServer() {
  stop_ = true;
  thread_.join();
}

void LineServer::Serve(const std::string& ns, int port) {
  if (auto s = ns.empty() ? Ok() : EnterNetns(ns); !s) return ready_.set_value(s);
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

Result<std::string> UdpExchange(const std::string& ip, int port, milliseconds timeout,
                                int source_port) {
  std::string where = fmt::format("udp {}:{}", ip, port);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Fail(Code::kInternal, std::strerror(errno));
  Guard close_fd([fd] { close(fd); });
  if (source_port != 0) {
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in from = Endpoint("0.0.0.0", source_port);
    if (bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof(from)) != 0) {
      return Fail(Code::kInternal,
                  fmt::format("bind udp port {}: {}", source_port, std::strerror(errno)));
    }
  }
  sockaddr_in to = Endpoint(ip, port);
  if (connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) != 0 ||
      send(fd, "ping\n", 5, 0) != 5) {
    return Fail(Code::kUnavailable, fmt::format("send {}: {}", where, std::strerror(errno)));
  }
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(timeout.count())) != 1) {
    return Fail(Code::kUnavailable,
                fmt::format("{}: no answer within {} ms", where, timeout.count()));
  }
  char buf[512];
  ssize_t n = recv(fd, buf, sizeof(buf), 0);
  if (n < 0) {
    return Fail(Code::kUnavailable, fmt::format("recv {}: {}", where, std::strerror(errno)));
  }
  return std::string(buf, static_cast<size_t>(n));
}

UdpServer::UdpServer(std::string ns, std::string name, int port) : name_(std::move(name)) {
  thread_ = std::thread([this, ns, port] { Serve(ns, port); });
  status_ = ready_.get_future().get();
}

UdpServer::~UdpServer() {
  stop_ = true;
  thread_.join();
}

void UdpServer::Serve(const std::string& ns, int port) {
  if (auto s = ns.empty() ? Ok() : EnterNetns(ns); !s) return ready_.set_value(s);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in any = Endpoint("0.0.0.0", port);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&any), sizeof(any)) != 0) {
    ready_.set_value(Fail(Code::kInternal, fmt::format("bind udp port {} in {}: {}", port, ns,
                                                       std::strerror(errno))));
    if (fd >= 0) close(fd);
    return;
  }
  ready_.set_value(Ok());
  while (!stop_) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) != 1) continue;
    char buf[64];
    sockaddr_in peer{};
    socklen_t len = sizeof(peer);
    if (recvfrom(fd, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&peer), &len) < 0) continue;
    char ip[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof(ip));
    std::string answer = fmt::format("{} sees {}\n", name_, ip);
    (void)sendto(fd, answer.data(), answer.size(), 0, reinterpret_cast<sockaddr*>(&peer), len);
  }
  close(fd);
}

int FreeHostUdpPort() {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = Endpoint("0.0.0.0", 0);
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

}  // namespace hearth::testing

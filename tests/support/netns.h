// Network namespaces for tests that stand a namespace behind a veth in for a guest behind its
// tap (root only): making one, running code inside one, and a TCP client and server that say
// who they see. Everything here is synchronous and bounded by timeouts.
#pragma once

#include <netinet/in.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"

namespace hearth::testing {

// Runs argv; its stdout, or the error (with stderr) when it fails.
Result<std::string> Cmd(const std::vector<std::string>& argv);

// Moves the calling thread into network namespace `ns` (/run/netns/<ns>).
Status EnterNetns(const std::string& ns);

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

sockaddr_in Endpoint(const std::string& ip, int port);

// Connects to ip:port (from address `source` when not empty), sends a line and returns everything
// the peer sends back before closing. unavailable when the connection is refused or nothing comes
// back within `timeout`.
Result<std::string> Exchange(const std::string& ip, int port, std::chrono::milliseconds timeout,
                             const std::string& source = "");

// A TCP server on 0.0.0.0:port in a network namespace ("" for the host's) that answers each
// connection, after its first line, with "<name> sees <peer address>\n" and closes it.
class LineServer {
 public:
  LineServer(std::string ns, std::string name, int port);
  ~LineServer();
  const Status& status() const { return status_; }

 private:
  void Serve(const std::string& ns, int port);

  std::string name_;
  std::promise<Status> ready_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  Status status_;
};

// A TCP port on the host nobody listens on right now.
int FreeHostPort();

// Sends one UDP datagram to ip:port (from `source_port` when not 0) and returns the first
// datagram that comes back. unavailable when nothing comes back within `timeout` (or the port is
// unreachable).
Result<std::string> UdpExchange(const std::string& ip, int port, std::chrono::milliseconds timeout,
                                int source_port = 0);

// A UDP server on 0.0.0.0:port in a network namespace ("" for the host's) that answers each
// datagram with "<name> sees <peer address>\n".
class UdpServer {
 public:
  UdpServer(std::string ns, std::string name, int port);
  ~UdpServer();
  const Status& status() const { return status_; }

 private:
  void Serve(const std::string& ns, int port);

  std::string name_;
  std::promise<Status> ready_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  Status status_;
};

// A UDP port on the host nobody has bound right now.
int FreeHostUdpPort();

// A namespace whose eth0 is a veth to the host: host end `host_link` with `host_ip`, namespace
// end with `ns_cidr` and MAC `ns_mac`, default route via `host_ip`.
Status MakeNamespace(const std::string& ns, const std::string& host_link,
                     const std::string& ns_cidr, const std::string& ns_mac,
                     const std::string& host_ip);

}  // namespace hearth::testing

// The HTTP/1.1 server of hearthd: accepts connections on a TCP address and on a unix socket, turns
// each request into a plain api::HttpRequest and answers with the handler's api::HttpResponse.
// Boost.Beast stays behind the pimpl so that including this header costs nothing.
//
// Connections are event-driven (one coroutine each, never a thread per connection) and served
// with keep-alive. The protections every connection gets:
//   - a TCP connection that sends nothing is closed `first_byte_timeout` after it was accepted;
//   - connection caps (see ServerOptions): a connection over a cap is accepted and closed at once,
//     so TCP clients can never take the file descriptors the unix socket needs;
//   - the handler's Admit sees every request's headers before its body is read (authentication),
//     and its refusal is sent without reading the body; a declared body over `body_limit` is
//     answered 413, also before reading it;
//   - the whole request (headers and body) must arrive within `request_timeout` of its first byte,
//     so a client that trickles a request (slowloris) is disconnected without affecting others;
//   - a keep-alive connection idle for `idle_timeout` between requests is closed;
//   - a body over `body_limit` is answered 413, a header section over 16 KiB 431 and a malformed
//     request 400, each with a JSON error body, and the connection is then closed;
//   - a handler that throws is answered 500 with code "internal"; the server keeps running.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "api/http_types.h"
#include "common/result.h"

namespace hearth::http {

struct ServerOptions {
  // TCP listener; requests over it are untrusted (the handler checks the bearer token).
  std::string tcp_host = "127.0.0.1";  // an IP address or host name; empty: no TCP listener
  uint16_t tcp_port = 7777;            // 0: pick an ephemeral port (see Server::tcp_port)
  // Unix socket listener; requests over it are trusted. Created with mode 0600, replacing a stale
  // socket file left by a previous hearthd (the caller holds the data dir lock). Empty: none.
  std::filesystem::path unix_socket;
  size_t body_limit = 1 << 20;  // larger bodies get 413 and the connection is closed
  // A request (headers and body) must fully arrive within this from its first byte, and a response
  // must be taken by the client within this; otherwise the connection is closed.
  std::chrono::milliseconds request_timeout{10000};
  std::chrono::milliseconds idle_timeout{60000};  // keep-alive idle limit between requests
  // From accepting a TCP connection to its first byte (or idle_timeout, if shorter). Short: a
  // client that connects and waits holds a file descriptor for nothing. The unix socket's clients
  // are root's and get idle_timeout.
  std::chrono::milliseconds first_byte_timeout{5000};
  // TCP connections at once, further capped by TcpConnectionCap to half the file limit.
  int max_connections = 1024;
  int max_connections_per_address = 64;  // TCP connections from one client IP address at once
  int max_unix_connections = 64;         // unix socket connections at once
  // The io threads. The handler runs on them, so this also bounds concurrent handler calls.
  int threads = 2;
};

// The TCP connection cap for `max_connections` under a soft RLIMIT_NOFILE of `file_limit`: at
// most half the file limit, so that the other half stays for the unix socket, the store, taps,
// VMM sockets and logs however many TCP clients connect. At least 1.
int TcpConnectionCap(int max_connections, uint64_t file_limit);

// Thread-safety: Start, Stop and tcp_port may be called from any thread but not concurrently with
// each other, and never from inside the handler (Stop joins the io threads).
class Server {
 public:
  // `handler` must outlive the server.
  Server(api::HttpHandler& handler, ServerOptions options);
  ~Server();  // Stops.

  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens on the configured listeners, then starts the io threads. Errors name the
  // address, e.g. "listening on 127.0.0.1:7777: Address already in use; is another hearthd
  // running? use --listen to pick another address". Nothing is left listening on error. Calling
  // Start twice is failed_precondition.
  Status Start();

  // The bound TCP port once Start succeeded (useful with tcp_port 0); 0 without a TCP listener.
  uint16_t tcp_port() const;
  // The TCP connection cap under the file limit at Start (see TcpConnectionCap; each accept
  // applies the limit of its moment).
  int tcp_connection_cap() const;

  // Stops accepting, closes every connection (a request being handled is not answered), joins the
  // io threads and removes the unix socket file. Idempotent; a stopped server cannot be restarted.
  void Stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hearth::http

// The HTTP/1.1 server of hearthd: accepts connections on a TCP address and on a unix socket, turns
// each request into a plain api::HttpRequest and answers with the handler's api::HttpResponse.
// Boost.Beast stays behind the pimpl so that including this header costs nothing.
//
// Connections are event-driven (one coroutine each, never a thread per connection) and served
// with keep-alive. The protections every connection gets:
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
  // The io threads. The handler runs on them, so this also bounds concurrent handler calls.
  int threads = 2;
};

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

  // Stops accepting, closes every connection (a request being handled is not answered), joins the
  // io threads and removes the unix socket file. Idempotent; a stopped server cannot be restarted.
  void Stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hearth::http

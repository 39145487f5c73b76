// A small synchronous HTTP/1.1 client for hearthd's API, used by the CLI, the tests and the
// benchmarks. Boost.Beast stays behind the pimpl.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/http_types.h"
#include "common/result.h"

namespace hearth::http {

struct ClientOptions {
  std::string unix_socket;         // used when non-empty
  std::string host = "127.0.0.1";  // TCP otherwise: an IP address or host name
  uint16_t port = 7777;
  std::string token;  // sent as "Authorization: Bearer <token>" when non-empty
  // Limit for one Request: connecting, sending and receiving the whole response.
  std::chrono::milliseconds timeout{30000};
};

// Not thread-safe: use one Client per thread.
class Client {
 public:
  explicit Client(ClientOptions options);
  ~Client();

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends one request and returns the response, whatever its status. A body is sent as
  // application/json. The connection is kept alive and reused; when a reused connection turns out
  // to have been closed by the server before it answered, the request is sent once more on a new
  // connection. The response's `headers` hold every response header with a lower-case name, and
  // `content_type` the Content-Type ("" when absent).
  //
  // Errors (the connection is dropped after each):
  //   unavailable: cannot connect ("cannot reach hearthd at unix:/x/hearthd.sock: No such file or
  //                directory; is hearthd running?"), the connection broke, or no full response
  //                within the timeout;
  //   internal:    the server's answer is not valid HTTP.
  Result<api::HttpResponse> Request(
      std::string_view method, std::string_view target, std::string_view body = {},
      const std::vector<std::pair<std::string, std::string>>& headers = {});

  // Where requests go: "unix:/var/lib/hearth/hearthd.sock" or "http://127.0.0.1:7777".
  std::string Describe() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hearth::http

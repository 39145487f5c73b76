// How the Firecracker driver talks to one Firecracker process: HTTP/1.1 requests over its API unix
// socket, one request per connection, each with a deadline. Hand-written (request line, headers,
// Content-Length body; status line, headers, Content-Length body) so that hearth_core stays free
// of Boost.Beast; Firecracker's API server speaks exactly this subset. The transport is an
// interface so that request sequences are unit-tested against a fake.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace hearth::hv::firecracker {

struct ApiRequest {
  std::string method;  // GET, PUT, PATCH
  std::string path;    // e.g. /boot-source
  std::string body;    // JSON; empty: no body
  bool operator==(const ApiRequest&) const = default;
};

struct ApiResponse {
  int status = 0;
  std::string body;
};

class ApiTransport {
 public:
  virtual ~ApiTransport() = default;
  // Sends `request` and returns Firecracker's answer, whatever its status. unavailable when the
  // socket cannot be reached, the connection breaks or no whole answer came within `timeout`.
  virtual Result<ApiResponse> Send(const ApiRequest& request,
                                   std::chrono::milliseconds timeout) = 0;
};

// The real transport: a new connection to `socket` for each request.
class UnixSocketTransport final : public ApiTransport {
 public:
  explicit UnixSocketTransport(std::filesystem::path socket) : socket_(std::move(socket)) {}
  Result<ApiResponse> Send(const ApiRequest& request, std::chrono::milliseconds timeout) override;
  const std::filesystem::path& socket() const { return socket_; }

 private:
  std::filesystem::path socket_;
};

// The bytes of `request` on the wire (Host, Accept, and for a body Content-Type and
// Content-Length headers).
std::string FormatRequest(const ApiRequest& request);

// An answer read so far: nullopt while incomplete; invalid_argument when it is not HTTP/1.x.
// `closed`: the peer closed the connection, so a body without Content-Length ends here.
Result<std::optional<ApiResponse>> ParseResponse(std::string_view raw, bool closed);

}  // namespace hearth::hv::firecracker

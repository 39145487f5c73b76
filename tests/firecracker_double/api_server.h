// The Firecracker double's HTTP/1.1 server on a unix socket, shaped like Firecracker's API server:
// it only parses; the handler decides. Requests are handled one at a time in arrival order (the
// handler is called under one lock), each connection by its own thread; keep-alive is the default
// and "Connection: close" (or HTTP/1.0) closes the connection after the answer. Every response
// carries Content-Length. A body over the payload limit, a malformed request line, a chunked body
// or a missing Content-Length on a request with a body is answered 400 with a fault_message, as
// Firecracker's micro_http does, and the connection is closed.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "common/result.h"

namespace hearth::fcdouble {

struct ApiRequest {
  std::string method;  // "PUT"
  std::string path;    // "/drives/rootfs", query removed
  std::string body;
};

struct ApiResponse {
  int status = 204;
  std::string body;  // JSON, empty for 204
  // When >= 0 the process exits with this code right after the answer is written (a failed
  // snapshot load ends Firecracker).
  int exit_after = -1;
};

// Answers {"fault_message": message} with status 400.
ApiResponse Fault(std::string message, int status = 400);

class ApiServer {
 public:
  // Binds and listens on `socket_path`. Like Firecracker it does not remove an existing file:
  // an existing path is an error ("... Address in use").
  static Result<ApiServer> Bind(const std::string& socket_path, size_t payload_limit);

  // Accepts connections forever, calling `handler` for each complete request.
  [[noreturn]] void Serve(std::function<ApiResponse(const ApiRequest&)> handler);

 private:
  ApiServer(int fd, size_t limit) : fd_(fd), limit_(limit) {}
  int fd_;
  size_t limit_;
};

}  // namespace hearth::fcdouble

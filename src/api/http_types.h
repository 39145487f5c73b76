// Plain HTTP request/response values exchanged between the network layer (http/, Boost.Beast)
// and the API logic (api/), so that the API is tested without sockets.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace hearth::api {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query, e.g. "/v1/vms?limit=10"
  // Header names in lower case; repeated headers joined with ", ".
  std::map<std::string, std::string> headers;
  std::string body;
  // True when the request came over the root-only unix socket: no token is required.
  bool trusted = false;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers, e.g. ETag
};

// The network layer calls Admit for every request once its headers have arrived, and then Handle
// once the whole request has. Implementations are thread-safe.
class HttpHandler {
 public:
  virtual ~HttpHandler() = default;
  // `request` has its method, target, headers and `trusted`, and no body yet. A response refuses
  // the request: it is sent instead of reading the body and calling Handle, and the connection is
  // then closed. nullopt admits it. The default admits every request.
  virtual std::optional<HttpResponse> Admit(const HttpRequest& request) { return std::nullopt; }
  virtual HttpResponse Handle(const HttpRequest& request) = 0;
};

}  // namespace hearth::api

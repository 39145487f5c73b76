// ApiHandler: the REST API of PRODUCT.md. It only parses: a request becomes a call on the Node,
// whose result becomes a response. Authentication: requests over the unix socket are trusted;
// every TCP request except GET /healthz needs a valid bearer token, and without one nothing
// else happens (401). Thread-safe.
#pragma once

#include <string>
#include <vector>

#include "api/auth.h"
#include "api/http_types.h"
#include "node/node.h"

namespace hearth::api {

struct Route {
  std::string method;
  std::string path;  // OpenAPI form, e.g. "/v1/vms/{name}"
};

class ApiHandler final : public HttpHandler {
 public:
  ApiHandler(node::Node& node, const TokenAuthenticator& auth) : node_(node), auth_(auth) {}

  HttpResponse Handle(const HttpRequest& request) override;

  // Every route served, for checking against api/openapi.yaml.
  static const std::vector<Route>& Routes();

 private:
  HttpResponse Dispatch(const HttpRequest& request);

  node::Node& node_;
  const TokenAuthenticator& auth_;
};

}  // namespace hearth::api

// ApiHandler: the REST API of PRODUCT.md. It only parses: a request becomes a call on the Node,
// whose result becomes a response. Authentication: requests over the unix socket are trusted;
// every TCP request except GET /healthz needs a valid bearer token, and without one nothing
// else happens (401): Admit refuses it on its headers, before its body is read. Request metrics
// are labelled from fixed sets (the served routes' methods and OpenAPI paths, else "other"), so
// what clients send cannot grow them. Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "api/auth.h"
#include "api/http_types.h"
#include "api/request_target.h"
#include "metering/metrics.h"
#include "metering/report.h"
#include "node/node.h"
#include "store/disk_reserve.h"

namespace hearth::api {

struct Route {
  std::string method;
  std::string path;  // OpenAPI form, e.g. "/v1/vms/{name}"
};

// What the API serves of metering (all optional): GET /metrics, GET /v1/usage from the local
// store or ClickHouse, and the API's own request metrics.
struct MeteringApi {
  metering::Metrics* metrics = nullptr;         // null: /metrics is unavailable (503)
  metering::UsageSource* local = nullptr;       // null: /v1/usage is unavailable (503)
  metering::UsageSource* clickhouse = nullptr;  // null: source=clickhouse is failed_precondition
  const Clock* clock = nullptr;                 // "now" of usage ranges; null: the system clock
};

class ApiHandler final : public HttpHandler {
 public:
  // `max_waits`: how many lifecycle requests may wait for their VM to settle (`wait=`) at once.
  // Each holds an HTTP thread meanwhile; beyond that number the answer is immediate, as without
  // `wait`, and the client polls.
  ApiHandler(node::Node& node, const TokenAuthenticator& auth, MeteringApi metering = {},
             int max_waits = 1)
      : node_(node), auth_(auth), metering_(metering), max_waits_(max_waits) {}

  std::optional<HttpResponse> Admit(const HttpRequest& request) override;
  HttpResponse Handle(const HttpRequest& request) override;

  // The node's read-only mode (store/disk_reserve.h): while in it, GET /v1/node and /healthz say
  // why in `read_only`, and creates, edits, starts, resumes and suspends are answered 507
  // resource_exhausted; reads, stops and deletes go on. Without one the node is never read-only.
  // Set before serving.
  void SetDiskReserve(store::DiskReserve* reserve) { reserve_ = reserve; }

  // Every route served, for checking against api/openapi.yaml.
  static const std::vector<Route>& Routes();
  // The route `method` `target` is served by, as its OpenAPI path ("/v1/vms/{name}"), or
  // "other" (the label of request metrics).
  static std::string RouteOf(std::string_view method, std::string_view target);

 private:
  // The 401 for a request without a valid token, or nullopt when it needs none or has one.
  std::optional<HttpResponse> Unauthenticated(const HttpRequest& request) const;
  void Observe(const HttpRequest& request, int status, std::chrono::steady_clock::time_point start);
  // Answers `request` by the route table (RouteTable), or 404/405.
  HttpResponse Dispatch(const HttpRequest& request);

  // A route's answer to a request whose target matched its path.
  using Handler = HttpResponse (ApiHandler::*)(const HttpRequest&, const RequestTarget&);
  struct RouteEntry {
    std::string_view method;
    std::string_view path;  // OpenAPI form
    Handler handler;
  };
  static std::span<const RouteEntry> RouteTable();

  HttpResponse GetHealth(const HttpRequest& request, const RequestTarget& target);
  HttpResponse GetMetrics(const HttpRequest& request, const RequestTarget& target);
  HttpResponse GetUsage(const HttpRequest& request, const RequestTarget& target);
  HttpResponse GetNode(const HttpRequest& request, const RequestTarget& target);
  HttpResponse ListVms(const HttpRequest& request, const RequestTarget& target);
  HttpResponse CreateVm(const HttpRequest& request, const RequestTarget& target);
  HttpResponse GetVm(const HttpRequest& request, const RequestTarget& target);
  HttpResponse EditVm(const HttpRequest& request, const RequestTarget& target);
  HttpResponse PutVm(const HttpRequest& request, const RequestTarget& target);
  // Creates the VM of a POST /v1/vms body (or of a PUT of a VM that does not exist).
  HttpResponse Create(const nlohmann::json& body);
  // The edit of a PATCH or PUT: its body and If-Match, which must agree on the generation.
  Result<EditRequest> ParseEdit(const HttpRequest& request, nlohmann::json body);
  HttpResponse DeleteVm(const HttpRequest& request, const RequestTarget& target);
  HttpResponse GetEvents(const HttpRequest& request, const RequestTarget& target);
  HttpResponse GetLogs(const HttpRequest& request, const RequestTarget& target);
  HttpResponse StartVm(const HttpRequest& request, const RequestTarget& target);
  HttpResponse StopVm(const HttpRequest& request, const RequestTarget& target);
  HttpResponse SuspendVm(const HttpRequest& request, const RequestTarget& target);
  HttpResponse ResumeVm(const HttpRequest& request, const RequestTarget& target);
  // The wait= of a lifecycle request after the checks every one of them makes first: a valid
  // wait=, and unless `verb` is stop, a writable node (else 404 for a VM that does not exist).
  Result<std::optional<std::chrono::milliseconds>> LifecycleWait(const RequestTarget& target,
                                                                 std::string_view verb);
  HttpResponse Usage(const std::map<std::string, std::string>& query);
  // Ok unless the node is read-only (then 507 naming `action`).
  Status Writable(std::string_view action);
  // Why the node is read-only, or null.
  nlohmann::json ReadOnlyJson();
  // Runs lifecycle request `request` (`event` for VM `name`) and answers with its VM, or with
  // `wait`, the VM once it settled. A request that changed nothing because its goal already held
  // (model/lifecycle.h, Idempotent) is answered 200 with "Hearth-Unchanged: already <state>".
  HttpResponse Lifecycle(const std::string& name, VmEvent event,
                         const std::function<Result<VmRecord>()>& request,
                         std::optional<std::chrono::milliseconds> wait);
  // The answer to a lifecycle request: `r`, or with `wait`, the VM once it settled.
  HttpResponse Settled(const std::string& name, Result<VmRecord> r,
                       std::optional<std::chrono::milliseconds> wait);

  node::Node& node_;
  const TokenAuthenticator& auth_;
  MeteringApi metering_;
  const int max_waits_;
  std::atomic<int> waiting_{0};
  store::DiskReserve* reserve_ = nullptr;
};

}  // namespace hearth::api

#include "api/api_handler.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>

#include "api/request_target.h"
#include "common/clock.h"
#include "common/disk_space.h"
#include "model/vm_filter.h"
#include "model/vm_json.h"

namespace hearth::api {
namespace {

using nlohmann::json;

HttpResponse JsonResponse(int status, const json& body) {
  HttpResponse r;
  r.status = status;
  // Request bytes echoed in messages need not be UTF-8: replace, never throw.
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

HttpResponse ErrorResponse(const Error& e) { return JsonResponse(HttpStatusOf(e), ErrorToJson(e)); }

HttpResponse ErrorResponse(Code code, std::string message, std::string field = {}) {
  return ErrorResponse(Error{code, std::move(message), std::move(field)});
}

HttpResponse VmResponse(const node::Node& node, int status, const VmRecord& vm) {
  HttpResponse r = JsonResponse(status, VmToJson(vm, node.NextTimer(vm)));
  r.headers.emplace_back("ETag", fmt::format("\"{}\"", vm.generation));
  return r;
}

template <class T>
HttpResponse VmResult(const node::Node& node, const Result<T>& r, int status = 200) {
  if (!r) return ErrorResponse(r.error());
  return VmResponse(node, status, *r);
}

json NodeInfoJson(const node::NodeInfo& info) {
  return {
      {"hostname", info.hostname},
      {"version", HEARTH_VERSION},
      {"cpus", info.host.cpus},
      {"memory_mib", info.host.memory.value},
      {"memory_running_mib", info.memory_running.value},
      {"memory_admission_mib", info.memory_admission.value},
      {"memory_ratio", info.memory_ratio},
      {"backends", info.backends},
      {"backend_note", info.backend_note},
      {"vms", {{"total", info.vms_total}, {"by_state", info.vms_by_state}}},
  };
}

HttpResponse MethodNotAllowed(const HttpRequest& req, std::string_view path,
                              std::string_view allowed) {
  HttpResponse r =
      JsonResponse(405, ErrorToJson(Error{Code::kInvalidArgument,
                                          fmt::format("method {} is not allowed on {}; allowed: {}",
                                                      req.method, path, allowed)}));
  r.headers.emplace_back("Allow", std::string(allowed));
  return r;
}

// The {name} of a /v1/vms/{name}... route.
const std::string& VmName(const RequestTarget& t) { return t.segments[2]; }

// The non-empty segments of a path, as they are (not decoded).
std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    if (end > pos) out.push_back(path.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

// Whether `path` (segments, empty ones skipped) is the OpenAPI path `pattern`, in which "{name}"
// stands for any one segment.
template <class Segment>
bool PathMatches(std::string_view pattern, const std::vector<Segment>& path) {
  std::vector<std::string_view> want = SplitPath(pattern);
  if (want.size() != path.size()) return false;
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i] != "{name}" && want[i] != path[i]) return false;
  }
  return true;
}

}  // namespace

// The API: each route and the member that answers it. A path with no route for the request's
// method is answered 405 naming the methods it has, in this order.
std::span<const ApiHandler::RouteEntry> ApiHandler::RouteTable() {
  static const RouteEntry kTable[] = {
      {"GET", "/healthz", &ApiHandler::GetHealth},
      {"GET", "/v1/node", &ApiHandler::GetNode},
      {"GET", "/v1/vms", &ApiHandler::ListVms},
      {"POST", "/v1/vms", &ApiHandler::CreateVm},
      {"GET", "/v1/vms/{name}", &ApiHandler::GetVm},
      {"PUT", "/v1/vms/{name}", &ApiHandler::PutVm},
      {"PATCH", "/v1/vms/{name}", &ApiHandler::EditVm},
      {"DELETE", "/v1/vms/{name}", &ApiHandler::DeleteVm},
      {"POST", "/v1/vms/{name}/start", &ApiHandler::StartVm},
      {"POST", "/v1/vms/{name}/stop", &ApiHandler::StopVm},
      {"POST", "/v1/vms/{name}/suspend", &ApiHandler::SuspendVm},
      {"POST", "/v1/vms/{name}/resume", &ApiHandler::ResumeVm},
      {"GET", "/v1/vms/{name}/events", &ApiHandler::GetEvents},
      {"GET", "/v1/vms/{name}/logs", &ApiHandler::GetLogs},
      {"GET", "/v1/usage", &ApiHandler::GetUsage},
      {"GET", "/metrics", &ApiHandler::GetMetrics},
  };
  return kTable;
}

const std::vector<Route>& ApiHandler::Routes() {
  static const std::vector<Route> routes = [] {
    std::vector<Route> out;
    for (const RouteEntry& r : RouteTable())
      out.push_back({std::string(r.method), std::string(r.path)});
    return out;
  }();
  return routes;
}

std::string ApiHandler::RouteOf(std::string_view method, std::string_view target) {
  std::vector<std::string_view> segs = SplitPath(target.substr(0, target.find('?')));
  for (const RouteEntry& r : RouteTable()) {
    if (r.method == method && PathMatches(r.path, segs)) return std::string(r.path);
  }
  return "other";
}

std::optional<HttpResponse> ApiHandler::Unauthenticated(const HttpRequest& request) const {
  std::string_view path = std::string_view(request.target).substr(0, request.target.find('?'));
  bool is_health = request.method == "GET" && path == "/healthz";
  if (request.trusted || is_health) return std::nullopt;
  auto it = request.headers.find("authorization");
  if (it != request.headers.end() && auth_.Check(it->second)) return std::nullopt;
  HttpResponse response = ErrorResponse(Code::kUnauthenticated,
                                        it == request.headers.end()
                                            ? "missing bearer token; send Authorization: Bearer "
                                              "<token> (the admin token is in "
                                              "<data-dir>/admin.token)"
                                            : "invalid bearer token");
  response.headers.emplace_back("WWW-Authenticate", "Bearer");
  return response;
}

void ApiHandler::Observe(const HttpRequest& request, int status,
                         std::chrono::steady_clock::time_point start) {
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::steady_clock::now() - start)
                    .count();
  spdlog::debug("{:.16} {:.200} -> {} ({} us)", request.method, request.target, status, micros);
  if (metering_.metrics) {
    metering_.metrics->ObserveRequest(request.method, RouteOf(request.method, request.target),
                                      status, static_cast<double>(micros) / 1e6);
  }
}

std::optional<HttpResponse> ApiHandler::Admit(const HttpRequest& request) {
  auto start = std::chrono::steady_clock::now();
  auto refusal = Unauthenticated(request);
  if (refusal) Observe(request, refusal->status, start);
  return refusal;
}

HttpResponse ApiHandler::Handle(const HttpRequest& request) {
  auto start = std::chrono::steady_clock::now();
  // Checked again: Handle is also called without Admit (tests, other transports).
  auto refusal = Unauthenticated(request);
  HttpResponse response = refusal ? std::move(*refusal) : Dispatch(request);
  Observe(request, response.status, start);
  return response;
}

HttpResponse ApiHandler::Dispatch(const HttpRequest& req) {
  auto target = ParseTarget(req.target);
  if (!target) return ErrorResponse(target.error());
  std::string_view path;
  std::string allowed;  // the methods `path` has
  for (const RouteEntry& r : RouteTable()) {
    if (!PathMatches(r.path, target->segments)) continue;
    if (r.method == req.method) return (this->*r.handler)(req, *target);
    path = r.path;
    allowed += (allowed.empty() ? "" : ", ") + std::string(r.method);
  }
  if (!allowed.empty()) return MethodNotAllowed(req, path, allowed);
  return ErrorResponse(Code::kNotFound, fmt::format("no route {} {}; see api/openapi.yaml",
                                                    req.method, req.target.substr(0, 200)));
}

HttpResponse ApiHandler::GetHealth(const HttpRequest&, const RequestTarget& t) {
  if (auto s = CheckQuery(t, {}); !s) return ErrorResponse(s.error());
  return JsonResponse(200, {{"status", "ok"}, {"read_only", ReadOnlyJson()}});
}

HttpResponse ApiHandler::GetMetrics(const HttpRequest&, const RequestTarget& t) {
  if (auto s = CheckQuery(t, {}); !s) return ErrorResponse(s.error());
  if (!metering_.metrics) {
    return ErrorResponse(Code::kUnavailable, "metering is not running on this node");
  }
  HttpResponse r;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.body = metering_.metrics->Render();
  return r;
}

HttpResponse ApiHandler::GetUsage(const HttpRequest&, const RequestTarget& t) {
  return Usage(t.query);
}

HttpResponse ApiHandler::GetNode(const HttpRequest&, const RequestTarget& t) {
  if (auto s = CheckQuery(t, {}); !s) return ErrorResponse(s.error());
  json info = NodeInfoJson(node_.Info());
  info["read_only"] = ReadOnlyJson();
  return JsonResponse(200, info);
}

HttpResponse ApiHandler::ListVms(const HttpRequest&, const RequestTarget& t) {
  if (auto s = CheckQuery(t, {"state", "label"}); !s) return ErrorResponse(s.error());
  auto it = t.query.find("state");
  auto filter = ParseVmFilter(it == t.query.end() ? "" : it->second, QueryAll(t, "label"));
  if (!filter) return ErrorResponse(filter.error());
  // Encoded one VM at a time: a DOM of every VM would cost several times the answer's size.
  HttpResponse r;
  r.body = "{\"vms\":[";
  bool first = true;
  for (const auto& vm : node_.List()) {
    if (!filter->Matches(vm)) continue;
    if (!first) r.body += ',';
    first = false;
    r.body +=
        VmToJson(vm, node_.NextTimer(vm)).dump(-1, ' ', false, json::error_handler_t::replace);
  }
  r.body += "]}";
  return r;
}

HttpResponse ApiHandler::CreateVm(const HttpRequest& req, const RequestTarget&) {
  auto body = ParseJsonObject(req.body);
  if (!body) return ErrorResponse(body.error());
  return Create(*body);
}

HttpResponse ApiHandler::Create(const json& body) {
  auto create = ParseCreateRequest(body);
  if (!create) return ErrorResponse(create.error());
  if (auto s = Writable(fmt::format("creating vm '{}'", create->name)); !s) {
    return ErrorResponse(s.error());
  }
  auto vm = node_.Create(*create);
  if (!vm) return ErrorResponse(vm.error());
  HttpResponse r = VmResponse(node_, 201, *vm);
  r.headers.emplace_back("Location", "/v1/vms/" + vm->name);
  return r;
}

HttpResponse ApiHandler::GetVm(const HttpRequest&, const RequestTarget& t) {
  if (auto s = CheckQuery(t, {}); !s) return ErrorResponse(s.error());
  return VmResult(node_, node_.Get(VmName(t)));
}

Result<EditRequest> ApiHandler::ParseEdit(const HttpRequest& req, json body) {
  auto if_match = IfMatchGeneration(req);
  if (!if_match) return Fail(if_match.error());
  auto edit = ParseEditRequest(body);
  if (!edit) return Fail(edit.error());
  if (*if_match) {
    if (edit->generation && *edit->generation != **if_match) {
      return Fail(Code::kInvalidArgument,
                  fmt::format("generation: body says {} but If-Match says {}", *edit->generation,
                              **if_match),
                  "generation");
    }
    edit->generation = **if_match;
  }
  return edit;
}

HttpResponse ApiHandler::PutVm(const HttpRequest& req, const RequestTarget& t) {
  if (auto s = CheckQuery(t, {}); !s) return ErrorResponse(s.error());
  const std::string& name = VmName(t);
  auto body = ParseJsonObject(req.body);
  if (!body) return ErrorResponse(body.error());
  if (body->contains("name")) {  // the path names the VM; a body may repeat it
    if ((*body)["name"] != name) {
      return ErrorResponse(Code::kInvalidArgument,
                           fmt::format("name: the body says {} but the path says '{}'",
                                       (*body)["name"].dump(), name),
                           "name");
    }
    body->erase("name");
  }
  auto edit = ParseEdit(req, *body);
  if (!edit) return ErrorResponse(edit.error());
  edit->replace = true;
  if (auto s = Writable(fmt::format("writing vm '{}'", name)); !s) return ErrorResponse(s.error());
  auto before = node_.Get(name);
  if (!before && before.error().code == Code::kNotFound && !edit->generation) {
    json create = edit->fields;
    create["name"] = name;
    return Create(create);
  }
  if (!before) return ErrorResponse(before.error());
  auto after = node_.Edit(name, *edit);
  HttpResponse r = VmResult(node_, after);
  if (after && after->version == before->version)
    r.headers.emplace_back("Hearth-Unchanged", "spec");
  return r;
}

HttpResponse ApiHandler::EditVm(const HttpRequest& req, const RequestTarget& t) {
  if (auto s = CheckQuery(t, {}); !s) return ErrorResponse(s.error());
  const std::string& name = VmName(t);
  auto body = ParseJsonObject(req.body);
  if (!body) return ErrorResponse(body.error());
  auto edit = ParseEdit(req, *body);
  if (!edit) return ErrorResponse(edit.error());
  if (auto s = Writable(fmt::format("editing vm '{}'", name)); !s) {
    if (auto vm = node_.Get(name); !vm) return ErrorResponse(vm.error());  // 404 first
    return ErrorResponse(s.error());
  }
  return VmResult(node_, node_.Edit(name, *edit));
}

HttpResponse ApiHandler::DeleteVm(const HttpRequest&, const RequestTarget& t) {
  if (auto s = CheckQuery(t, {"force"}); !s) return ErrorResponse(s.error());
  auto force = QueryFlag(t, "force");
  if (!force) return ErrorResponse(force.error());
  if (auto s = node_.Delete(VmName(t), *force); !s) return ErrorResponse(s.error());
  HttpResponse r;
  r.status = 204;
  r.content_type.clear();
  return r;
}

HttpResponse ApiHandler::GetEvents(const HttpRequest&, const RequestTarget& t) {
  if (auto s = CheckQuery(t, {"limit"}); !s) return ErrorResponse(s.error());
  auto limit = QueryInt(t, "limit", 100, 1, 10000);
  if (!limit) return ErrorResponse(limit.error());
  auto events = node_.Events(VmName(t), *limit);
  if (!events) return ErrorResponse(events.error());
  json out = json::array();
  for (const auto& e : *events) out.push_back(EventToJson(e));
  return JsonResponse(200, {{"events", std::move(out)}});
}

HttpResponse ApiHandler::GetLogs(const HttpRequest&, const RequestTarget& t) {
  if (auto s = CheckQuery(t, {"tail_bytes", "tail_lines", "timestamps"}); !s) {
    return ErrorResponse(s.error());
  }
  // With tail_lines alone, the lines are looked for in all the log keeps (1 MiB).
  bool lines_only = t.query.count("tail_lines") && !t.query.count("tail_bytes");
  auto tail = QueryInt(t, "tail_bytes", lines_only ? 1 << 20 : 64 * 1024, 1, 1 << 20);
  if (!tail) return ErrorResponse(tail.error());
  auto lines = QueryInt(t, "tail_lines", 0, 1, 100000);
  if (!lines) return ErrorResponse(lines.error());
  auto timestamps = QueryFlag(t, "timestamps");
  if (!timestamps) return ErrorResponse(timestamps.error());
  auto logs = node_.Logs(VmName(t), node::Node::LogQuery{*tail, *lines, *timestamps});
  if (!logs) return ErrorResponse(logs.error());
  HttpResponse r;
  r.content_type = "text/plain; charset=utf-8";
  r.body = std::move(*logs);
  return r;
}

Result<std::optional<std::chrono::milliseconds>> ApiHandler::LifecycleWait(const RequestTarget& t,
                                                                           std::string_view verb) {
  auto wait = QueryWait(t);
  if (!wait) return Fail(wait.error());
  // Stopping takes no space; starting, resuming and suspending (a snapshot) do.
  if (verb != "stop") {
    if (auto s = Writable(fmt::format("{} vm '{}'", verb, VmName(t))); !s) {
      if (auto vm = node_.Get(VmName(t)); !vm) return Fail(vm.error());  // 404 first
      return Fail(s.error());
    }
  }
  return wait;
}

HttpResponse ApiHandler::StartVm(const HttpRequest&, const RequestTarget& t) {
  auto wait = LifecycleWait(t, "start");
  if (!wait) return ErrorResponse(wait.error());
  if (auto s = CheckQuery(t, {"fresh", "wait"}); !s) return ErrorResponse(s.error());
  auto fresh = QueryFlag(t, "fresh");
  if (!fresh) return ErrorResponse(fresh.error());
  VmEvent event = *fresh ? VmEvent::kStartFresh : VmEvent::kStart;
  return Lifecycle(
      VmName(t), event, [&] { return node_.Start(VmName(t), *fresh); }, *wait);
}

HttpResponse ApiHandler::StopVm(const HttpRequest&, const RequestTarget& t) {
  auto wait = LifecycleWait(t, "stop");
  if (!wait) return ErrorResponse(wait.error());
  if (auto s = CheckQuery(t, {"kill", "wait"}); !s) return ErrorResponse(s.error());
  auto kill = QueryFlag(t, "kill");
  if (!kill) return ErrorResponse(kill.error());
  VmEvent event = *kill ? VmEvent::kKill : VmEvent::kStop;
  return Lifecycle(
      VmName(t), event, [&] { return node_.Stop(VmName(t), *kill); }, *wait);
}

HttpResponse ApiHandler::SuspendVm(const HttpRequest&, const RequestTarget& t) {
  auto wait = LifecycleWait(t, "suspend");
  if (!wait) return ErrorResponse(wait.error());
  if (auto s = CheckQuery(t, {"wait"}); !s) return ErrorResponse(s.error());
  return Lifecycle(
      VmName(t), VmEvent::kSuspend, [&] { return node_.Suspend(VmName(t)); }, *wait);
}

HttpResponse ApiHandler::ResumeVm(const HttpRequest&, const RequestTarget& t) {
  auto wait = LifecycleWait(t, "resume");
  if (!wait) return ErrorResponse(wait.error());
  if (auto s = CheckQuery(t, {"wait"}); !s) return ErrorResponse(s.error());
  return Lifecycle(
      VmName(t), VmEvent::kResume, [&] { return node_.Resume(VmName(t)); }, *wait);
}

Status ApiHandler::Writable(std::string_view action) {
  return reserve_ ? reserve_->CheckWritable(action) : Ok();
}

json ApiHandler::ReadOnlyJson() {
  if (!reserve_) return nullptr;
  auto why = reserve_->ReadOnlyReason();
  return why ? json(*why) : json(nullptr);
}

HttpResponse ApiHandler::Lifecycle(const std::string& name, VmEvent event,
                                   const std::function<Result<VmRecord>()>& request,
                                   std::optional<std::chrono::milliseconds> wait) {
  auto before = node_.Get(name);
  auto r = request();
  if (r && before && r->version == before->version &&
      Idempotent(before->state, event) == NoChange::kAlready) {
    HttpResponse unchanged = VmResult(node_, r);
    unchanged.headers.emplace_back("Hearth-Unchanged",
                                   fmt::format("already {}", ToString(r->state)));
    return unchanged;
  }
  return Settled(name, std::move(r), wait);
}

HttpResponse ApiHandler::Settled(const std::string& name, Result<VmRecord> r,
                                 std::optional<std::chrono::milliseconds> wait) {
  if (!r || !wait || !IsTransitional(r->state)) return VmResult(node_, r);
  struct Waiting {
    std::atomic<int>& count;
    ~Waiting() { --count; }
  } waiting{waiting_};
  if (waiting_.fetch_add(1) >= max_waits_) {
    return VmResult(node_, r);  // as many wait as may: this one is answered at once
  }
  auto settled = node_.WaitSettled(name, *wait);
  // Deleted meanwhile: what the request itself did is still the answer.
  return VmResult(node_, settled ? settled : r);
}

HttpResponse ApiHandler::Usage(const std::map<std::string, std::string>& query) {
  SystemClock system;
  const Clock& clock = metering_.clock ? *metering_.clock : system;
  auto q = metering::ParseReportQuery(query, clock.Now());
  if (!q) return ErrorResponse(q.error());
  std::string source = query.count("source") ? query.at("source") : "local";
  metering::UsageSource* from = nullptr;
  if (source == "local") {
    from = metering_.local;
    if (!from) return ErrorResponse(Code::kUnavailable, "metering is not running on this node");
  } else if (source == "clickhouse") {
    from = metering_.clickhouse;
    if (!from) {
      return ErrorResponse(Code::kFailedPrecondition,
                           "source: this node sends no usage to ClickHouse; start hearthd with "
                           "--clickhouse URL, or use source=local",
                           "source");
    }
  } else {
    return ErrorResponse(Code::kInvalidArgument,
                         fmt::format("source: '{}' is not local or clickhouse", source), "source");
  }
  auto data = from->Fetch(*q);
  if (!data) return ErrorResponse(data.error());
  return JsonResponse(200, metering::ReportToJson(metering::BuildReport(*q, *data, source)));
}

}  // namespace hearth::api

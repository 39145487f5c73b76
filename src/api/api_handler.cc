#include "api/api_handler.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/disk_space.h"
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
  r.headers.emplace_back("ETag", fmt::format("\"{}\"", vm.version));
  return r;
}

template <class T>
HttpResponse VmResult(const node::Node& node, const Result<T>& r, int status = 200) {
  if (!r) return ErrorResponse(r.error());
  return VmResponse(node, status, *r);
}

struct Target {
  std::vector<std::string> segments;
  std::map<std::string, std::string> query;
};

int FromHex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// `plus_is_space`: form encoding, which applies to the query only.
Result<std::string> PercentDecode(std::string_view s, bool plus_is_space) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      if (i + 2 >= s.size()) return Fail(Code::kInvalidArgument, "bad percent-encoding in URL");
      int hi = FromHex(s[i + 1]), lo = FromHex(s[i + 2]);
      if (hi < 0 || lo < 0) return Fail(Code::kInvalidArgument, "bad percent-encoding in URL");
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += plus_is_space && s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

Result<Target> ParseTarget(std::string_view target) {
  Target t;
  std::string_view path = target, query;
  if (auto q = target.find('?'); q != std::string_view::npos) {
    path = target.substr(0, q);
    query = target.substr(q + 1);
  }
  size_t pos = 0;
  while (pos < path.size()) {
    if (path[pos] == '/') {
      ++pos;
      continue;
    }
    size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    auto seg = PercentDecode(path.substr(pos, end - pos), false);
    if (!seg) return Fail(seg.error());
    t.segments.push_back(*seg);
    pos = end;
  }
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    auto key = PercentDecode(pair.substr(0, eq), true);
    auto value = PercentDecode(eq == std::string_view::npos ? "" : pair.substr(eq + 1), true);
    if (!key || !value) return Fail(Code::kInvalidArgument, "bad percent-encoding in URL query");
    t.query[*key] = *value;
  }
  return t;
}

// Checks that only `allowed` query parameters are present.
Status CheckQuery(const Target& t, std::initializer_list<std::string_view> allowed) {
  for (const auto& [key, _] : t.query) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      return Fail(Code::kInvalidArgument,
                  fmt::format("query parameter '{}' is not known here", key), key);
    }
  }
  return Ok();
}

Result<bool> QueryFlag(const Target& t, const std::string& key) {
  auto it = t.query.find(key);
  if (it == t.query.end()) return false;
  if (it->second.empty() || it->second == "true" || it->second == "1") return true;
  if (it->second == "false" || it->second == "0") return false;
  return Fail(Code::kInvalidArgument,
              fmt::format("{}: '{}' is not a boolean; use true or false", key, it->second), key);
}

// `wait=DURATION` of a lifecycle request ("30s", "500ms"; at most 10m); none without it.
Result<std::optional<std::chrono::milliseconds>> QueryWait(const Target& t) {
  auto it = t.query.find("wait");
  if (it == t.query.end()) return std::optional<std::chrono::milliseconds>();
  auto d = ParseDuration(it->second);
  if (!d || *d <= Duration::zero() || *d > std::chrono::minutes(10)) {
    return Fail(
        Code::kInvalidArgument,
        fmt::format("wait: '{}' is not a duration from 1ms to 10m, like 30s or 500ms", it->second),
        "wait");
  }
  return std::optional(std::chrono::duration_cast<std::chrono::milliseconds>(*d));
}

Result<int> QueryInt(const Target& t, const std::string& key, int def, int lo, int hi) {
  auto it = t.query.find(key);
  if (it == t.query.end()) return def;
  int v = 0;
  const std::string& s = it->second;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || end != s.data() + s.size() || v < lo || v > hi) {
    return Fail(Code::kInvalidArgument,
                fmt::format("{}: '{}' is not a whole number from {} to {}", key, s, lo, hi), key);
  }
  return v;
}

// Reads the version an edit is based on from If-Match ("5" or "\"5\"").
Result<std::optional<int64_t>> IfMatchVersion(const HttpRequest& req) {
  auto it = req.headers.find("if-match");
  if (it == req.headers.end()) return std::optional<int64_t>();
  std::string_view v = it->second;
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  int64_t n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || end != v.data() + v.size()) {
    return Fail(Code::kInvalidArgument,
                fmt::format("If-Match: '{}' is not a VM version such as \"3\"", it->second),
                "If-Match");
  }
  return std::optional<int64_t>(n);
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

}  // namespace

const std::vector<Route>& ApiHandler::Routes() {
  static const std::vector<Route> routes = {
      {"GET", "/healthz"},
      {"GET", "/v1/node"},
      {"GET", "/v1/vms"},
      {"POST", "/v1/vms"},
      {"GET", "/v1/vms/{name}"},
      {"PATCH", "/v1/vms/{name}"},
      {"DELETE", "/v1/vms/{name}"},
      {"POST", "/v1/vms/{name}/start"},
      {"POST", "/v1/vms/{name}/stop"},
      {"POST", "/v1/vms/{name}/suspend"},
      {"POST", "/v1/vms/{name}/resume"},
      {"GET", "/v1/vms/{name}/events"},
      {"GET", "/v1/vms/{name}/logs"},
      {"GET", "/v1/usage"},
      {"GET", "/metrics"},
  };
  return routes;
}

std::string ApiHandler::RouteOf(std::string_view method, std::string_view target) {
  std::string_view path = target.substr(0, target.find('?'));
  auto split = [](std::string_view p) {
    std::vector<std::string_view> out;
    size_t pos = 0;
    while (pos < p.size()) {
      size_t end = p.find('/', pos);
      if (end == std::string_view::npos) end = p.size();
      if (end > pos) out.push_back(p.substr(pos, end - pos));
      pos = end + 1;
    }
    return out;
  };
  std::vector<std::string_view> segs = split(path);
  for (const Route& r : Routes()) {
    if (r.method != method) continue;
    std::vector<std::string_view> want = split(r.path);
    if (want.size() != segs.size()) continue;
    bool match = true;
    for (size_t i = 0; i < want.size() && match; ++i) {
      match = want[i] == "{name}" || want[i] == segs[i];
    }
    if (match) return r.path;
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
  const auto& seg = target->segments;
  const std::string& m = req.method;
  auto no_route = [&] {
    return ErrorResponse(Code::kNotFound, fmt::format("no route {} {}; see api/openapi.yaml", m,
                                                      req.target.substr(0, 200)));
  };

  if (seg.size() == 1 && seg[0] == "healthz") {
    if (m != "GET") return MethodNotAllowed(req, "/healthz", "GET");
    if (auto s = CheckQuery(*target, {}); !s) return ErrorResponse(s.error());
    return JsonResponse(200, {{"status", "ok"}, {"read_only", ReadOnlyJson()}});
  }
  if (seg.size() == 1 && seg[0] == "metrics") {
    if (m != "GET") return MethodNotAllowed(req, "/metrics", "GET");
    if (auto s = CheckQuery(*target, {}); !s) return ErrorResponse(s.error());
    if (!metering_.metrics) {
      return ErrorResponse(Code::kUnavailable, "metering is not running on this node");
    }
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metering_.metrics->Render();
    return r;
  }
  if (seg.empty() || seg[0] != "v1") return no_route();
  if (seg.size() == 2 && seg[1] == "usage") {
    if (m != "GET") return MethodNotAllowed(req, "/v1/usage", "GET");
    return Usage(target->query);
  }

  if (seg.size() == 2 && seg[1] == "node") {
    if (m != "GET") return MethodNotAllowed(req, "/v1/node", "GET");
    if (auto s = CheckQuery(*target, {}); !s) return ErrorResponse(s.error());
    json info = NodeInfoJson(node_.Info());
    info["read_only"] = ReadOnlyJson();
    return JsonResponse(200, info);
  }
  if (seg.size() < 2 || seg[1] != "vms") return no_route();

  if (seg.size() == 2) {
    if (m == "GET") {
      if (auto s = CheckQuery(*target, {}); !s) return ErrorResponse(s.error());
      // Encoded one VM at a time: a DOM of every VM would cost several times the answer's size.
      HttpResponse r;
      r.body = "{\"vms\":[";
      bool first = true;
      for (const auto& vm : node_.List()) {
        if (!first) r.body += ',';
        first = false;
        r.body +=
            VmToJson(vm, node_.NextTimer(vm)).dump(-1, ' ', false, json::error_handler_t::replace);
      }
      r.body += "]}";
      return r;
    }
    if (m == "POST") {
      auto body = ParseJsonObject(req.body);
      if (!body) return ErrorResponse(body.error());
      auto create = ParseCreateRequest(*body);
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
    return MethodNotAllowed(req, "/v1/vms", "GET, POST");
  }

  const std::string& name = seg[2];
  if (seg.size() == 3) {
    if ((m == "GET" || m == "PATCH") && !target->query.empty()) {
      return ErrorResponse(CheckQuery(*target, {}).error());
    }
    if (m == "GET") return VmResult(node_, node_.Get(name));
    if (m == "PATCH") {
      auto if_match = IfMatchVersion(req);
      if (!if_match) return ErrorResponse(if_match.error());
      auto body = ParseJsonObject(req.body);
      if (!body) return ErrorResponse(body.error());
      auto edit = ParseEditRequest(*body);
      if (!edit) return ErrorResponse(edit.error());
      if (*if_match) {
        if (edit->version && *edit->version != **if_match) {
          return ErrorResponse(
              Code::kInvalidArgument,
              fmt::format("version: body says {} but If-Match says {}", *edit->version, **if_match),
              "version");
        }
        edit->version = **if_match;
      }
      if (auto s = Writable(fmt::format("editing vm '{}'", name)); !s) {
        if (auto vm = node_.Get(name); !vm) return ErrorResponse(vm.error());  // 404 first
        return ErrorResponse(s.error());
      }
      return VmResult(node_, node_.Edit(name, *edit));
    }
    if (m == "DELETE") {
      if (auto s = CheckQuery(*target, {"force"}); !s) return ErrorResponse(s.error());
      auto force = QueryFlag(*target, "force");
      if (!force) return ErrorResponse(force.error());
      if (auto s = node_.Delete(name, *force); !s) return ErrorResponse(s.error());
      HttpResponse r;
      r.status = 204;
      r.content_type.clear();
      return r;
    }
    return MethodNotAllowed(req, "/v1/vms/{name}", "GET, PATCH, DELETE");
  }
  if (seg.size() != 4) return no_route();
  const std::string& verb = seg[3];

  if (verb == "events" || verb == "logs") {
    if (m != "GET") return MethodNotAllowed(req, "/v1/vms/{name}/" + verb, "GET");
    if (verb == "events") {
      if (auto s = CheckQuery(*target, {"limit"}); !s) return ErrorResponse(s.error());
      auto limit = QueryInt(*target, "limit", 100, 1, 10000);
      if (!limit) return ErrorResponse(limit.error());
      auto events = node_.Events(name, *limit);
      if (!events) return ErrorResponse(events.error());
      json out = json::array();
      for (const auto& e : *events) out.push_back(EventToJson(e));
      return JsonResponse(200, {{"events", std::move(out)}});
    }
    if (auto s = CheckQuery(*target, {"tail_bytes"}); !s) return ErrorResponse(s.error());
    auto tail = QueryInt(*target, "tail_bytes", 64 * 1024, 1, 1 << 20);
    if (!tail) return ErrorResponse(tail.error());
    auto logs = node_.Logs(name, *tail);
    if (!logs) return ErrorResponse(logs.error());
    HttpResponse r;
    r.content_type = "text/plain; charset=utf-8";
    r.body = std::move(*logs);
    return r;
  }

  if (verb != "start" && verb != "stop" && verb != "suspend" && verb != "resume") return no_route();
  if (m != "POST") return MethodNotAllowed(req, "/v1/vms/{name}/" + verb, "POST");
  auto wait = QueryWait(*target);
  if (!wait) return ErrorResponse(wait.error());
  // Stopping takes no space; starting, resuming and suspending (a snapshot) do.
  if (verb != "stop") {
    if (auto s = Writable(fmt::format("{} vm '{}'", verb, name)); !s) {
      if (auto vm = node_.Get(name); !vm) return ErrorResponse(vm.error());  // 404 first
      return ErrorResponse(s.error());
    }
  }
  if (verb == "start") {
    if (auto s = CheckQuery(*target, {"fresh", "wait"}); !s) return ErrorResponse(s.error());
    auto fresh = QueryFlag(*target, "fresh");
    if (!fresh) return ErrorResponse(fresh.error());
    return Settled(name, node_.Start(name, *fresh), *wait);
  }
  if (verb == "stop") {
    if (auto s = CheckQuery(*target, {"kill", "wait"}); !s) return ErrorResponse(s.error());
    auto kill = QueryFlag(*target, "kill");
    if (!kill) return ErrorResponse(kill.error());
    return Settled(name, node_.Stop(name, *kill), *wait);
  }
  if (auto s = CheckQuery(*target, {"wait"}); !s) return ErrorResponse(s.error());
  return Settled(name, verb == "suspend" ? node_.Suspend(name) : node_.Resume(name), *wait);
}

Status ApiHandler::Writable(std::string_view action) {
  return reserve_ ? reserve_->CheckWritable(action) : Ok();
}

json ApiHandler::ReadOnlyJson() {
  if (!reserve_) return nullptr;
  auto why = reserve_->ReadOnlyReason();
  return why ? json(*why) : json(nullptr);
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

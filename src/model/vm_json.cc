#include "model/vm_json.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "common/text.h"

namespace hearth {
namespace {

using nlohmann::json;

std::string TypeName(const json& v) {
  if (v.is_number_integer()) return "integer";
  if (v.is_number_float()) return "number";
  return v.type_name();
}

std::string Short(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 40) {
    size_t cut = 37;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;  // UTF-8
    s = s.substr(0, cut) + "...";
  }
  return s;
}

tl::unexpected<Error> WrongType(std::string_view field, std::string_view expected, const json& v) {
  return Fail(Code::kInvalidArgument,
              fmt::format("{}: expected {}, got {} {}", field, expected, TypeName(v), Short(v)),
              std::string(field));
}

Result<int64_t> GetInt(const json& v, std::string_view field) {
  if (!v.is_number_integer()) return WrongType(field, "an integer", v);
  if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())) {
    return Fail(Code::kInvalidArgument, fmt::format("{}: {} is out of range", field, v.dump()),
                std::string(field));
  }
  return v.get<int64_t>();
}

Result<int> GetSmallInt(const json& v, std::string_view field) {
  auto n = GetInt(v, field);
  if (!n) return Fail(n.error());
  if (*n < std::numeric_limits<int>::min() || *n > std::numeric_limits<int>::max()) {
    return Fail(Code::kInvalidArgument, fmt::format("{}: {} is out of range", field, *n),
                std::string(field));
  }
  return static_cast<int>(*n);
}

Result<std::string> GetString(const json& v, std::string_view field, bool nullable) {
  if (nullable && v.is_null()) return std::string();
  if (!v.is_string()) return WrongType(field, nullable ? "a string or null" : "a string", v);
  return v.get<std::string>();
}

// Parses an enum-valued string field with `parse`, attaching the field name to errors.
template <class Parse>
auto GetEnum(const json& v, std::string_view field, Parse parse)
    -> decltype(parse(std::string_view{})) {
  if (!v.is_string()) return WrongType(field, "a string", v);
  auto r = parse(v.get_ref<const std::string&>());
  if (!r)
    return Fail(Code::kInvalidArgument, fmt::format("{}: {}", field, r.error().message),
                std::string(field));
  return r;
}

Status CheckKeys(const json& obj, std::string_view where,
                 std::initializer_list<std::string_view> known) {
  for (const auto& [key, _] : obj.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      std::string field = where.empty() ? key : fmt::format("{}.{}", where, key);
      std::string allowed;
      for (auto k : known) allowed += allowed.empty() ? std::string(k) : ", " + std::string(k);
      return Fail(Code::kInvalidArgument,
                  fmt::format("{}: unknown field; allowed here: {}", field, allowed), field);
    }
  }
  return Ok();
}

// One publish entry in object form: {"host_port", "guest_port", "protocol"?, "host_ip"?}.
Result<PortMapping> PublishFromObject(const json& item, const std::string& where) {
  if (auto s = CheckKeys(item, where, {"host_port", "guest_port", "protocol", "host_ip"}); !s) {
    return Fail(s.error());
  }
  PortMapping p;
  for (auto key : {"host_port", "guest_port"}) {
    if (!item.contains(key)) {
      return Fail(Code::kInvalidArgument, fmt::format("{}.{}: required", where, key),
                  fmt::format("{}.{}", where, key));
    }
    auto n = GetSmallInt(item[key], fmt::format("{}.{}", where, key));
    if (!n) return Fail(n.error());
    (std::string_view(key) == "host_port" ? p.host_port : p.guest_port) = *n;
  }
  if (item.contains("protocol")) {
    auto proto = GetEnum(item["protocol"], where + ".protocol", ParseProtocol);
    if (!proto) return Fail(proto.error());
    p.protocol = *proto;
  }
  if (item.contains("host_ip")) {  // absent or null: all addresses (as stored before it existed)
    std::string field = where + ".host_ip";
    auto text = GetString(item["host_ip"], field, true);
    if (!text) return Fail(text.error());
    if (!text->empty()) {
      auto ip = ParsePublishHostIp(*text);
      if (!ip) return Fail(Code::kInvalidArgument, field + ": " + ip.error().message, field);
      p.host_ip = *ip;
    }
  }
  return p;
}

Status ApplyPublish(const json& v, VmSpec& spec) {
  if (!v.is_array()) return WrongType("publish", "an array", v);
  std::vector<PortMapping> out;
  for (size_t i = 0; i < v.size(); ++i) {
    std::string where = fmt::format("publish[{}]", i);
    const json& item = v[i];
    if (item.is_string()) {
      auto p = ParsePortMapping(item.get_ref<const std::string&>());
      if (!p) return Fail(Code::kInvalidArgument, where + ": " + p.error().message, where);
      out.push_back(*p);
      continue;
    }
    if (!item.is_object()) {
      return WrongType(where, "an object or \"[HOSTIP:]HOSTPORT:GUESTPORT[/proto]\"", item);
    }
    auto p = PublishFromObject(item, where);
    if (!p) return Fail(p.error());
    out.push_back(*p);
  }
  spec.publish = std::move(out);
  return Ok();
}

Status ApplyWakePorts(const json& v, VmSpec& spec) {
  if (!v.is_array()) return WrongType("wake_ports", "an array", v);
  std::vector<WakePort> out;
  for (size_t i = 0; i < v.size(); ++i) {
    std::string where = fmt::format("wake_ports[{}]", i);
    if (!v[i].is_string()) return WrongType(where, "a string like \"tcp:80\"", v[i]);
    auto p = ParseWakePort(v[i].get_ref<const std::string&>());
    if (!p) return Fail(Code::kInvalidArgument, where + ": " + p.error().message, where);
    out.push_back(*p);
  }
  spec.wake_ports = std::move(out);
  return Ok();
}

Result<std::optional<Duration>> GetDuration(const json& v, std::string_view field) {
  if (v.is_null()) return std::optional<Duration>();
  if (!v.is_string()) return WrongType(field, "a duration string like \"30s\" or null", v);
  auto d = ParseDuration(v.get_ref<const std::string&>());
  if (!d)
    return Fail(Code::kInvalidArgument, fmt::format("{}: {}", field, d.error().message),
                std::string(field));
  return std::optional<Duration>(*d);
}

Status ApplyTimers(const json& v, VmSpec& spec) {
  if (!v.is_object()) return WrongType("timers", "an object", v);
  if (auto s = CheckKeys(v, "timers", {"stop_at", "stop_after", "idle_timeout", "on_timer"}); !s) {
    return s;
  }
  Timers t = spec.timers;
  if (v.contains("stop_at")) {
    const json& s = v["stop_at"];
    if (s.is_null()) {
      t.stop_at.reset();
    } else if (!s.is_string()) {
      return WrongType("timers.stop_at", "an RFC 3339 time string or null", s);
    } else {
      auto ts = ParseTime(s.get_ref<const std::string&>());
      if (!ts)
        return Fail(Code::kInvalidArgument, "timers.stop_at: " + ts.error().message,
                    "timers.stop_at");
      t.stop_at = *ts;
    }
  }
  for (auto [key, slot] :
       {std::pair{"stop_after", &t.stop_after}, std::pair{"idle_timeout", &t.idle_timeout}}) {
    if (!v.contains(key)) continue;
    auto d = GetDuration(v[key], fmt::format("timers.{}", key));
    if (!d) return Fail(d.error());
    *slot = *d;
  }
  if (v.contains("on_timer")) {
    auto a = GetEnum(v["on_timer"], "timers.on_timer", ParseTimerAction);
    if (!a) return Fail(a.error());
    t.on_timer = *a;
  }
  spec.timers = t;
  return Ok();
}

// Labels merge as in a JSON merge patch (RFC 7396): a key with a string sets that label, a key
// with null removes it, labels not named stay; `"labels": null` removes them all.
Status ApplyLabels(const json& v, VmSpec& spec) {
  if (v.is_null()) {
    spec.labels.clear();
    return Ok();
  }
  if (!v.is_object()) return WrongType("labels", "an object of strings", v);
  for (const auto& [key, value] : v.items()) {
    std::string field = fmt::format("labels.{}", Printable(key));
    if (value.is_null()) {
      spec.labels.erase(key);
    } else if (!value.is_string()) {
      return WrongType(field, "a string (or null to remove the label)", value);
    } else {
      spec.labels[key] = value.get<std::string>();
    }
  }
  return Ok();
}

json OptionalString(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

}  // namespace

Status ApplySpecJson(const json& body, VmSpec& spec,
                     std::initializer_list<std::string_view> ignored) {
  if (!body.is_object()) return WrongType("body", "a JSON object", body);
  for (const auto& [key, v] : body.items()) {
    if (std::find(ignored.begin(), ignored.end(), key) != ignored.end()) continue;
    Status s = Ok();
    if (key == "vcpus") {
      auto n = GetSmallInt(v, key);
      if (!n) return Fail(n.error());
      spec.vcpus = *n;
    } else if (key == "memory_mib") {
      auto n = GetInt(v, key);
      if (!n) return Fail(n.error());
      spec.memory = MiB{*n};
    } else if (key == "kernel" || key == "initrd" || key == "rootfs" || key == "image" ||
               key == "cmdline") {
      auto str = GetString(v, key, /*nullable=*/true);
      if (!str) return Fail(str.error());
      std::string* slot = key == "kernel"   ? &spec.kernel
                          : key == "initrd" ? &spec.initrd
                          : key == "rootfs" ? &spec.rootfs
                          : key == "image"  ? &spec.image
                                            : &spec.cmdline;
      *slot = std::move(*str);
    } else if (key == "rootfs_readonly") {
      if (!v.is_boolean()) return WrongType(key, "a boolean", v);
      spec.rootfs_readonly = v.get<bool>();
    } else if (key == "labels") {
      s = ApplyLabels(v, spec);
    } else if (key == "publish") {
      s = ApplyPublish(v, spec);
    } else if (key == "timers") {
      s = ApplyTimers(v, spec);
    } else if (key == "wake") {
      if (v.is_null()) {
        spec.wake.reset();
      } else {
        auto w = GetEnum(v, key, ParseWakeMode);
        if (!w) return Fail(w.error());
        spec.wake = *w;
      }
    } else if (key == "wake_ports") {
      s = ApplyWakePorts(v, spec);
    } else if (key == "restart") {
      auto r = GetEnum(v, key, ParseRestartPolicy);
      if (!r) return Fail(r.error());
      spec.restart = *r;
    } else {
      return Fail(
          Code::kInvalidArgument,
          fmt::format("{}: unknown field; see api/openapi.yaml for the VM spec fields", key), key);
    }
    if (!s) return s;
  }
  return Ok();
}

Result<CreateRequest> ParseCreateRequest(const json& body) {
  if (!body.is_object()) return WrongType("body", "a JSON object", body);
  CreateRequest req;
  if (!body.contains("name")) {
    return Fail(Code::kInvalidArgument, "name: required", "name");
  }
  auto name = GetString(body["name"], "name", false);
  if (!name) return Fail(name.error());
  req.name = *name;
  if (auto s = ApplySpecJson(body, req.spec, {"name"}); !s) return Fail(s.error());
  return req;
}

Result<EditRequest> ParseEditRequest(const json& body) {
  if (!body.is_object()) return WrongType("body", "a JSON object", body);
  EditRequest req;
  req.fields = json::object();
  for (const auto& [key, v] : body.items()) {
    if (key == "generation") {
      auto n = GetInt(v, key);
      if (!n) return Fail(n.error());
      req.generation = *n;
    } else if (key == "version") {
      return Fail(Code::kInvalidArgument,
                  "version: the record's version changes with every state change; base an edit "
                  "on the spec's `generation` instead (in the body or as If-Match)",
                  "version");
    } else if (key == "discard_state") {
      if (!v.is_boolean()) return WrongType(key, "a boolean", v);
      req.discard_state = v.get<bool>();
    } else if (key == "name") {
      return Fail(Code::kInvalidArgument,
                  "name: a VM cannot be renamed; create a new VM and delete this one", "name");
    } else {
      req.fields[key] = v;
    }
  }
  // Type-check the fields now so a bad body is refused before any state is consulted.
  VmSpec scratch;
  if (auto s = ApplySpecJson(req.fields, scratch); !s) return Fail(s.error());
  return req;
}

// Nesting deeper than this is refused before parsing: printing such a value in an error
// message would recurse once per level.
constexpr int kMaxJsonDepth = 32;

int JsonDepth(std::string_view text) {
  int depth = 0, max_depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      max_depth = std::max(max_depth, ++depth);
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return max_depth;
}

// Watches a parse for keys given twice in one object. nlohmann keeps the last of them, so a
// body could say one thing to a reader who sees the first and another to hearth.
class DuplicateKeyFinder {
 public:
  bool operator()(int /*depth*/, json::parse_event_t event, json& parsed) {
    using E = json::parse_event_t;
    switch (event) {
      case E::object_start:
      case E::array_start:
        CountElement();
        stack_.push_back(Frame{event == E::object_start});
        break;
      case E::object_end:
      case E::array_end:
        if (!stack_.empty()) stack_.pop_back();
        break;
      case E::key:
        if (!stack_.empty() && parsed.is_string()) {
          Frame& f = stack_.back();
          f.key = parsed.get<std::string>();
          if (!f.keys.insert(f.key).second && !first_) first_ = Path();
        }
        break;
      case E::value:
        CountElement();
        break;
    }
    return true;
  }
  // The first duplicate, as a field path ("timers.stop_after", "publish[0].host_port").
  const std::optional<std::string>& first() const { return first_; }

 private:
  struct Frame {
    bool object = false;
    std::set<std::string> keys;
    std::string key;
    int index = -1;
  };
  void CountElement() {
    if (!stack_.empty() && !stack_.back().object) ++stack_.back().index;
  }
  std::string Path() const {
    std::string out;
    for (const Frame& f : stack_) {
      out += f.object ? (out.empty() ? "" : ".") + f.key : fmt::format("[{}]", f.index);
    }
    return out;
  }
  std::vector<Frame> stack_;
  std::optional<std::string> first_;
};

Result<json> ParseJsonObject(std::string_view text) {
  if (JsonDepth(text) > kMaxJsonDepth) {
    return Fail(Code::kInvalidArgument,
                fmt::format("body: JSON nested deeper than {} levels", kMaxJsonDepth), "body");
  }
  auto duplicates = std::make_shared<DuplicateKeyFinder>();
  json body = json::parse(
      text, [duplicates](int d, json::parse_event_t e, json& j) { return (*duplicates)(d, e, j); },
      /*allow_exceptions=*/false);
  if (body.is_discarded()) {
    return Fail(Code::kInvalidArgument, "body: not valid JSON", "body");
  }
  if (const auto& dup = duplicates->first()) {
    std::string field = Printable(*dup);
    return Fail(Code::kInvalidArgument,
                fmt::format("{}: the key is given twice; give each key once", field), field);
  }
  if (!body.is_object()) return WrongType("body", "a JSON object", body);
  return body;
}

json SpecToJson(const VmSpec& spec, bool resolve_wake) {
  json publish = json::array();
  for (const auto& p : spec.publish) {
    publish.push_back({{"host_port", p.host_port},
                       {"guest_port", p.guest_port},
                       {"protocol", ToString(p.protocol)},
                       {"host_ip", p.host_ip.empty() ? "0.0.0.0" : p.host_ip}});
  }
  json wake_ports = json::array();
  for (const auto& p : spec.wake_ports) wake_ports.push_back(FormatWakePort(p));
  const Timers& t = spec.timers;
  json timers = {
      {"stop_at", t.stop_at ? json(FormatTime(*t.stop_at)) : json(nullptr)},
      {"stop_after", t.stop_after ? json(FormatDuration(*t.stop_after)) : json(nullptr)},
      {"idle_timeout", t.idle_timeout ? json(FormatDuration(*t.idle_timeout)) : json(nullptr)},
      {"on_timer", ToString(t.on_timer)},
  };
  return {
      {"vcpus", spec.vcpus},
      {"memory_mib", spec.memory.value},
      {"kernel", OptionalString(spec.kernel)},
      {"initrd", OptionalString(spec.initrd)},
      {"rootfs", OptionalString(spec.rootfs)},
      {"rootfs_readonly", spec.rootfs_readonly},
      {"image", OptionalString(spec.image)},
      {"cmdline", spec.cmdline},
      {"labels", spec.labels},
      {"publish", std::move(publish)},
      {"timers", std::move(timers)},
      {"wake", resolve_wake ? json(ToString(spec.effective_wake()))
               : spec.wake  ? json(ToString(*spec.wake))
                            : json(nullptr)},
      {"wake_ports", std::move(wake_ports)},
      {"restart", ToString(spec.restart)},
  };
}

json VmToJson(const VmRecord& vm, const std::optional<DueTimer>& next_timer) {
  json out = SpecToJson(vm.spec);
  out["name"] = vm.name;
  out["id"] = vm.id;
  out["state"] = ToString(vm.state);
  out["state_reason"] = OptionalString(vm.state_reason);
  out["version"] = vm.version;
  out["generation"] = vm.generation;
  out["created_at"] = FormatTime(vm.created_at);
  out["updated_at"] = FormatTime(vm.updated_at);
  out["running_since"] = vm.running_since ? json(FormatTime(*vm.running_since)) : json(nullptr);
  out["next_timer"] = next_timer ? json{{"kind", ToString(next_timer->kind)},
                                        {"action", ToString(next_timer->action)},
                                        {"at", FormatTime(next_timer->at)}}
                                 : json(nullptr);
  out["pid"] = vm.pid ? json(*vm.pid) : json(nullptr);
  out["ip"] = OptionalString(vm.ip);
  out["backend"] = OptionalString(vm.backend);
  out["snapshot"] = vm.snapshot ? json{{"taken_at", FormatTime(vm.snapshot->taken_at)},
                                       {"bytes", vm.snapshot->bytes}}
                                : json(nullptr);
  return out;
}

json EventToJson(const Event& e) {
  json out = {{"seq", e.seq},    {"vm_id", e.vm_id},
              {"vm", e.vm_name}, {"time", FormatTime(e.time)},
              {"type", e.type},  {"message", e.message}};
  if (!e.measures.empty()) out["measures"] = e.measures;
  return out;
}

json ErrorToJson(const Error& error) {
  json err = {{"code", CodeName(error.code)}, {"message", error.message}};
  if (!error.field.empty()) err["field"] = error.field;
  return {{"error", std::move(err)}};
}

}  // namespace hearth

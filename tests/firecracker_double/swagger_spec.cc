#include "firecracker_double/swagger_spec.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "support/openapi_validator.h"

namespace hearth::fcdouble {
namespace {

using nlohmann::json;

constexpr int kMaxDepth = 32;

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::vector<std::string_view> Segments(std::string_view path) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    out.push_back(path.substr(i, j - i));
    i = j;
  }
  return out;
}

bool IsParam(std::string_view seg) {
  return seg.size() > 2 && seg.front() == '{' && seg.back() == '}';
}

// How serde names an unexpected JSON value: `string "x"`, `integer `3``, `map`, ...
std::string Unexpected(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return fmt::format("boolean `{}`", v.get<bool>());
    case json::value_t::string:
      return fmt::format("string {}", v.dump());
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return fmt::format("integer `{}`", v.dump());
    case json::value_t::number_float:
      return fmt::format("floating point `{}`", v.dump());
    case json::value_t::array:
      return "sequence";
    default:
      return "map";
  }
}

bool HasType(const json& v, std::string_view type) {
  if (type == "object") return v.is_object();
  if (type == "array") return v.is_array();
  if (type == "string") return v.is_string();
  if (type == "integer") return v.is_number_integer();
  if (type == "number") return v.is_number();
  if (type == "boolean") return v.is_boolean();
  return true;
}

std::string Quoted(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "`" : ", `") + n + "`";
  return out;
}

std::string Prefixed(const std::string& where, const std::string& message) {
  return where.empty() ? message : where + ": " + message;
}

std::string Child(const std::string& where, const std::string& key) {
  return where.empty() ? key : where + "." + key;
}

}  // namespace

Result<SwaggerSpec> SwaggerSpec::Parse(std::string_view yaml) {
  auto doc = testing::YamlToJson(yaml);
  if (!doc) return Fail(doc.error());
  if (!doc->is_object() || doc->value("swagger", "") != "2.0" || !doc->contains("paths")) {
    return Fail(Code::kInvalidArgument, "not a Swagger 2.0 document with paths");
  }
  return SwaggerSpec(std::move(*doc));
}

std::vector<std::pair<std::string, std::string>> SwaggerSpec::Operations() const {
  return testing::PathOperations(doc_["paths"]);
}

Result<Route> SwaggerSpec::Match(std::string_view method, std::string_view path) const {
  const auto want = Segments(path);
  const json* best = nullptr;
  std::string best_template;
  int best_literals = -1;
  std::map<std::string, std::string> best_params;
  for (const auto& [tmpl, item] : doc_["paths"].items()) {
    const auto have = Segments(tmpl);
    if (have.size() != want.size()) continue;
    std::map<std::string, std::string> params;
    int literals = 0;
    bool ok = true;
    for (size_t i = 0; i < have.size() && ok; ++i) {
      if (IsParam(have[i])) {
        params[std::string(have[i].substr(1, have[i].size() - 2))] = std::string(want[i]);
      } else if (have[i] == want[i]) {
        ++literals;
      } else {
        ok = false;
      }
    }
    if (ok && literals > best_literals) {
      best = &item;
      best_template = tmpl;
      best_literals = literals;
      best_params = std::move(params);
    }
  }
  if (best == nullptr) return Fail(Code::kNotFound, fmt::format("no path matches {}", path));
  std::string lower(method);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!best->contains(lower)) {
    return Fail(Code::kFailedPrecondition,
                fmt::format("{} has no {} operation", best_template, Upper(method)));
  }
  Route route{Upper(method), best_template, std::move(best_params)};
  const json& op = (*best)[lower];
  if (!op.contains("parameters")) return route;
  for (const auto& p : op["parameters"]) {  // by reference: body_schema points into doc_
    if (p.value("in", "") == "body") {
      route.body_schema = p.contains("schema") ? &p["schema"] : nullptr;
      route.body_required = p.value("required", false);
    }
  }
  return route;
}

const json* SwaggerSpec::Deref(const json& node) const {
  const json* cur = &node;
  for (int i = 0; i < kMaxDepth && cur->is_object() && cur->contains("$ref"); ++i) {
    std::string ref = (*cur)["$ref"].get<std::string>();
    if (!ref.starts_with("#/")) return nullptr;
    try {
      cur = &doc_.at(json::json_pointer(ref.substr(1)));
    } catch (const json::exception&) {
      return nullptr;
    }
  }
  return cur;
}

std::optional<std::string> SwaggerSpec::Validate(const json& value, const json& schema,
                                                 bool partial) const {
  return Check(value, schema, "", 0, partial);
}

std::optional<std::string> SwaggerSpec::Check(const json& value, const json& schema_node,
                                              const std::string& where, int depth,
                                              bool partial) const {
  if (depth > kMaxDepth) return Prefixed(where, "schema nests too deeply");
  const json* schema = Deref(schema_node);
  if (schema == nullptr) return Prefixed(where, "the spec has a broken $ref");
  const std::string type = schema->value("type", "");
  if (!type.empty() && !HasType(value, type)) {
    return Prefixed(where, fmt::format("invalid type: {}, expected {}", Unexpected(value),
                                       type == "object" ? "a map" : type));
  }
  if (schema->contains("enum")) {
    const json& options = (*schema)["enum"];
    if (std::find(options.begin(), options.end(), value) == options.end()) {
      std::vector<std::string> names;
      for (const auto& o : options)
        names.push_back(o.is_string() ? o.get<std::string>() : o.dump());
      std::string got = value.is_string() ? value.get<std::string>() : value.dump();
      return Prefixed(where,
                      fmt::format("unknown variant `{}`, expected one of {}", got, Quoted(names)));
    }
  }
  if (value.is_number_integer()) {
    const auto n = value.get<int64_t>();
    if (value.is_number_integer() && !value.is_number_unsigned() && n < 0) {
      return Prefixed(where, fmt::format("invalid value: integer `{}`, expected an unsigned "
                                         "integer",
                                         n));
    }
    if (schema->contains("minimum") && n < (*schema)["minimum"].get<int64_t>()) {
      return Prefixed(where, fmt::format("invalid value: integer `{}`, expected at least {}", n,
                                         (*schema)["minimum"].get<int64_t>()));
    }
    if (schema->contains("maximum") && n > (*schema)["maximum"].get<int64_t>()) {
      return Prefixed(where, fmt::format("invalid value: integer `{}`, expected at most {}", n,
                                         (*schema)["maximum"].get<int64_t>()));
    }
  }
  if (value.is_array() && schema->contains("items")) {
    for (size_t i = 0; i < value.size(); ++i) {
      if (auto e = Check(value[i], (*schema)["items"], fmt::format("{}[{}]", where, i), depth + 1,
                         false))
        return e;
    }
  }
  if (value.is_object()) {
    const json props = schema->value("properties", json::object());
    for (const auto& r : partial ? json::array() : schema->value("required", json::array())) {
      const std::string name = r.get<std::string>();
      if (!value.contains(name)) return Prefixed(where, fmt::format("missing field `{}`", name));
    }
    const bool open = schema->value("additionalProperties", json(false)) == json(true);
    const json required = schema->value("required", json::array());
    for (const auto& [key, child] : value.items()) {
      if (!props.contains(key)) {
        if (open) continue;
        std::vector<std::string> names;
        for (const auto& [k, unused] : props.items()) names.push_back(k);
        return Prefixed(where,
                        fmt::format("unknown field `{}`, expected one of {}", key, Quoted(names)));
      }
      const bool is_required =
          std::find(required.begin(), required.end(), json(key)) != required.end();
      if (child.is_null() && !is_required) continue;
      if (auto e = Check(child, props[key], Child(where, key), depth + 1, false)) return e;
    }
  }
  return std::nullopt;
}

}  // namespace hearth::fcdouble

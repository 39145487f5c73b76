#include "support/openapi_validator.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <fstream>
#include <functional>
#include <regex>
#include <set>
#include <sstream>

namespace hearth::testing {
namespace {

using nlohmann::json;

constexpr int kMaxDepth = 64;
constexpr const char* kMethods[] = {"get",     "put",  "post",  "delete",
                                    "options", "head", "patch", "trace"};

// The schema keywords the validator implements (or that carry no constraint).
bool KnownKeyword(std::string_view key) {
  static const std::set<std::string, std::less<>> known = [] {
    std::set<std::string, std::less<>> out;
    std::istringstream words(
        "$ref type nullable enum properties required additionalProperties items minItems "
        "maxItems minLength maxLength pattern format minimum maximum exclusiveMinimum "
        "exclusiveMaximum allOf anyOf oneOf description title default example readOnly "
        "writeOnly deprecated");
    for (std::string w; words >> w;) out.insert(w);
    return out;
  }();
  return known.contains(key) || key.starts_with("x-");
}

bool KnownFormat(std::string_view f) {
  return f == "date-time" || f == "int32" || f == "int64" || f == "float" || f == "double";
}

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string Upper(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return out;
}

std::string Short(const json& v) {
  std::string s = v.dump();
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

std::string JsonType(const json& v) {
  if (v.is_number_integer()) return "integer";
  if (v.is_number_float()) return "number";
  return v.type_name();
}

std::string Join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (const auto& i : items) {
    if (!out.empty()) out += sep;
    out += i;
  }
  return out;
}

// "$.vms[0].state" for identifier-like keys, "$[\"a b\"]" otherwise.
std::string ChildPath(const std::string& parent, const std::string& key) {
  bool plain = !key.empty() && std::all_of(key.begin(), key.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '-';
  });
  return plain ? parent + "." + key : parent + "[" + json(key).dump() + "]";
}

// Path segments as the server sees them: split on '/', empty segments skipped, query dropped.
std::vector<std::string> Segments(std::string_view target) {
  if (auto q = target.find_first_of("?#"); q != std::string_view::npos) {
    target = target.substr(0, q);
  }
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= target.size()) {
    size_t end = target.find('/', pos);
    if (end == std::string_view::npos) end = target.size();
    if (end > pos) out.emplace_back(target.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

bool IsTemplateSegment(std::string_view s) {
  return s.size() >= 3 && s.front() == '{' && s.back() == '}';
}

size_t Utf8Length(const std::string& s) {
  return static_cast<size_t>(
      std::count_if(s.begin(), s.end(), [](unsigned char c) { return (c & 0xC0) != 0x80; }));
}

// YAML 1.2 core schema resolution of a plain (unquoted) scalar.
json PlainScalar(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  static const std::regex kInt("[-+]?[0-9]+");
  static const std::regex kFloat("[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?");
  if (std::regex_match(s, kInt)) {
    int64_t v = 0;
    const char* begin = s.data() + (s[0] == '+' ? 1 : 0);
    auto [end, ec] = std::from_chars(begin, s.data() + s.size(), v);
    if (ec == std::errc{} && end == s.data() + s.size()) return v;
  }
  if (std::regex_match(s, kFloat)) {
    try {
      return std::stod(s);
    } catch (const std::exception&) {
    }
  }
  return s;
}

struct YamlError {
  std::string message;
};

json ConvertYaml(const YAML::Node& node, const std::string& where) {
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return nullptr;
    case YAML::NodeType::Scalar: {
      const std::string& tag = node.Tag();
      if (tag == "!" || tag == "tag:yaml.org,2002:str") return node.Scalar();
      return PlainScalar(node.Scalar());
    }
    case YAML::NodeType::Sequence: {
      json out = json::array();
      size_t i = 0;
      for (const auto& item : node) {
        out.push_back(ConvertYaml(item, fmt::format("{}[{}]", where, i++)));
      }
      return out;
    }
    case YAML::NodeType::Map: {
      json out = json::object();
      for (const auto& kv : node) {
        if (!kv.first.IsScalar()) throw YamlError{where + ": a map key is not a scalar"};
        const std::string& key = kv.first.Scalar();
        if (out.contains(key)) {
          throw YamlError{fmt::format("{}: duplicate key '{}' (line {})", where, key,
                                      kv.first.Mark().line + 1)};
        }
        out[key] = ConvertYaml(kv.second, ChildPath(where, key));
      }
      return out;
    }
  }
  return nullptr;
}

// Days in a month of the proleptic Gregorian calendar.
int DaysIn(int year, int month) {
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return month == 2 && leap ? 29 : kDays[month - 1];
}

}  // namespace

Result<json> YamlToJson(std::string_view yaml) {
  try {
    YAML::Node root = YAML::Load(std::string(yaml));
    return ConvertYaml(root, "$");
  } catch (const YAML::Exception& e) {
    return Fail(Code::kInvalidArgument, fmt::format("YAML: {}", e.what()));
  } catch (const YamlError& e) {
    return Fail(Code::kInvalidArgument, fmt::format("YAML: {}", e.message));
  }
}

bool IsRfc3339DateTime(std::string_view text) {
  static const std::regex kDateTime(
      "([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\\.[0-9]+)?"
      "([Zz]|[+-]([0-9]{2}):([0-9]{2}))");
  std::match_results<std::string_view::const_iterator> m;
  if (!std::regex_match(text.begin(), text.end(), m, kDateTime)) return false;
  auto num = [&](int i) { return std::stoi(m[i].str()); };
  int year = num(1), month = num(2), day = num(3);
  if (month < 1 || month > 12 || day < 1 || day > DaysIn(year, month)) return false;
  if (num(4) > 23 || num(5) > 59 || num(6) > 60) return false;
  if (m[9].matched && (num(9) > 23 || num(10) > 59)) return false;
  return true;
}

Result<OpenApiSpec> OpenApiSpec::Load(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return Fail(Code::kNotFound, fmt::format("cannot read {}", file.string()));
  std::stringstream text;
  text << in.rdbuf();
  auto spec = Parse(text.str());
  if (!spec) return Fail(spec.error().Wrap(file.string()));
  return spec;
}

Result<OpenApiSpec> OpenApiSpec::Parse(std::string_view yaml) {
  auto doc = YamlToJson(yaml);
  if (!doc) return Fail(doc.error());
  if (!doc->is_object() || !doc->contains("openapi") || !(*doc)["openapi"].is_string() ||
      !(*doc)["openapi"].get<std::string>().starts_with("3.0.")) {
    return Fail(Code::kInvalidArgument, "not an OpenAPI 3.0 document (openapi: 3.0.x)");
  }
  if (!doc->contains("paths") || !(*doc)["paths"].is_object()) {
    return Fail(Code::kInvalidArgument, "the document has no paths object");
  }
  return OpenApiSpec(std::move(*doc));
}

std::vector<std::pair<std::string, std::string>> PathOperations(const json& paths) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [path, item] : paths.items()) {
    for (const char* m : kMethods) {
      if (item.contains(m)) out.emplace_back(Upper(m), path);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::pair<std::string, std::string>> OpenApiSpec::Operations() const {
  return PathOperations(doc_["paths"]);
}

std::vector<std::string> OpenApiSpec::Methods(std::string_view path_template) const {
  std::vector<std::string> out;
  const json& paths = doc_["paths"];
  auto it = paths.find(std::string(path_template));
  if (it == paths.end()) return out;
  for (const char* m : kMethods) {
    if (it->contains(m)) out.push_back(Upper(m));
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::string> OpenApiSpec::MatchPath(std::string_view target) const {
  std::vector<std::string> segs = Segments(target);
  std::string best;
  int best_literals = -1;
  for (const auto& [tmpl, _] : doc_["paths"].items()) {
    std::vector<std::string> t = Segments(tmpl);
    if (t.size() != segs.size()) continue;
    int literals = 0;
    bool ok = true;
    for (size_t i = 0; i < t.size() && ok; ++i) {
      if (IsTemplateSegment(t[i])) continue;
      ok = t[i] == segs[i];
      ++literals;
    }
    if (ok && literals > best_literals) {
      best = tmpl;
      best_literals = literals;
    }
  }
  if (best_literals < 0) {
    return Fail(Code::kNotFound, fmt::format("no path of the spec matches '{}'", target));
  }
  return best;
}

Result<OperationMatch> OpenApiSpec::FindOperation(std::string_view method,
                                                  std::string_view target) const {
  auto tmpl = MatchPath(target);
  if (!tmpl) return Fail(tmpl.error());
  const json& item = doc_["paths"][*tmpl];
  std::string m = Lower(method);
  if (!item.contains(m)) {
    return Fail(Code::kFailedPrecondition,
                fmt::format("path {} has no {} operation (it has: {})", *tmpl, Upper(method),
                            Join(Methods(*tmpl), ", ")));
  }
  OperationMatch out;
  out.method = Upper(method);
  out.path_template = *tmpl;
  out.operation = &item[m];
  std::vector<std::string> t = Segments(*tmpl), segs = Segments(target);
  for (size_t i = 0; i < t.size(); ++i) {
    if (IsTemplateSegment(t[i])) out.path_params[t[i].substr(1, t[i].size() - 2)] = segs[i];
  }
  return out;
}

Result<ResponseMatch> OpenApiSpec::FindResponse(const OperationMatch& op, int status) const {
  const json* responses =
      op.operation->contains("responses") ? Deref((*op.operation)["responses"]) : nullptr;
  std::vector<std::string> declared;
  if (responses && responses->is_object()) {
    std::string exact = std::to_string(status);
    std::string range = fmt::format("{}XX", status / 100);
    for (const std::string& key : {exact, range, Lower(range), std::string("default")}) {
      auto it = responses->find(key);
      if (it == responses->end()) continue;
      const json* r = Deref(*it);
      if (!r) return Fail(Code::kInvalidArgument, fmt::format("response {}: broken $ref", key));
      return ResponseMatch{key, key == "default", r};
    }
    for (const auto& [key, _] : responses->items()) declared.push_back(key);
  }
  return Fail(Code::kNotFound,
              fmt::format("{} {} declares no response for status {} (declared: {})", op.method,
                          op.path_template, status, Join(declared, ", ")));
}

std::vector<std::string> OpenApiSpec::ContentTypes(const ResponseMatch& response) const {
  std::vector<std::string> out;
  if (!response.response || !response.response->contains("content")) return out;
  for (const auto& [type, _] : (*response.response)["content"].items()) out.push_back(type);
  return out;
}

const json* OpenApiSpec::ResponseSchema(const ResponseMatch& response,
                                        std::string_view content_type) const {
  if (!response.response || !response.response->contains("content")) return nullptr;
  const json& content = (*response.response)["content"];
  auto it = content.find(std::string(content_type));
  if (it == content.end() || !it->contains("schema")) return nullptr;
  return Deref((*it)["schema"]);
}

const json* OpenApiSpec::RequestSchema(const OperationMatch& op) const {
  if (!op.operation->contains("requestBody")) return nullptr;
  const json* body = Deref((*op.operation)["requestBody"]);
  if (!body || !body->contains("content")) return nullptr;
  const json& content = (*body)["content"];
  auto it = content.find("application/json");
  if (it == content.end() || !it->contains("schema")) return nullptr;
  return Deref((*it)["schema"]);
}

bool OpenApiSpec::RequiresAuth(const OperationMatch& op) const {
  const json& security = op.operation->contains("security") ? (*op.operation)["security"]
                                                            : doc_.value("security", json());
  return security.is_array() && !security.empty();
}

std::vector<std::string> OpenApiSpec::CheckResponse(const OperationMatch& op,
                                                    const api::HttpResponse& response,
                                                    bool allow_default) const {
  std::string what = fmt::format("{} {} -> {}", op.method, op.path_template, response.status);
  auto match = FindResponse(op, response.status);
  if (!match) return {fmt::format("{}: {}", what, match.error().message)};
  if (match->from_default && !allow_default) {
    return {fmt::format("{}: the status is covered only by 'default'; declare it", what)};
  }
  return CheckAgainst(*match, response, what);
}

std::vector<std::string> OpenApiSpec::CheckResponseObject(std::string_view ref,
                                                          const api::HttpResponse& response) const {
  std::string what = fmt::format("{} -> {}", ref, response.status);
  const json* r = Resolve(ref);
  if (r) r = Deref(*r);
  if (!r) return {fmt::format("{}: the reference does not resolve", what)};
  return CheckAgainst(ResponseMatch{std::string(ref), false, r}, response, what);
}

std::vector<std::string> OpenApiSpec::CheckAgainst(const ResponseMatch& match,
                                                   const api::HttpResponse& response,
                                                   const std::string& what) const {
  std::vector<std::string> out;
  std::vector<std::string> types = ContentTypes(match);
  std::string media = Lower(response.content_type.substr(0, response.content_type.find(';')));
  media.erase(media.find_last_not_of(" \t") + 1);
  if (types.empty()) {
    if (!response.body.empty() || !media.empty()) {
      out.push_back(fmt::format("{}: declares no body, got {} bytes of '{}'", what,
                                response.body.size(), response.content_type));
    }
  } else {
    auto declared = std::find_if(types.begin(), types.end(), [&](const std::string& t) {
      return Lower(t.substr(0, t.find(';'))) == media;
    });
    if (declared == types.end()) {
      out.push_back(fmt::format("{}: content type '{}' is not declared (declared: {})", what,
                                response.content_type, Join(types, ", ")));
    } else if (const json* schema = ResponseSchema(match, *declared)) {
      json body;
      bool is_json = media == "application/json" || media.ends_with("+json");
      if (is_json) {
        body = json::parse(response.body, nullptr, /*allow_exceptions=*/false);
        if (body.is_discarded()) {
          out.push_back(
              fmt::format("{}: the body is not JSON: {}", what, response.body.substr(0, 200)));
        }
      } else {
        body = response.body;
      }
      if (!body.is_discarded()) {
        for (auto& v : Validate(body, *schema)) out.push_back(fmt::format("{}: {}", what, v));
      }
    }
  }
  if (match.response->contains("headers")) {
    for (const auto& [name, header_ref] : (*match.response)["headers"].items()) {
      const json* header = Deref(header_ref);
      if (!header) {
        out.push_back(fmt::format("{}: header {}: broken $ref", what, name));
        continue;
      }
      auto it = std::find_if(response.headers.begin(), response.headers.end(),
                             [&](const auto& h) { return Lower(h.first) == Lower(name); });
      if (it == response.headers.end()) {
        if (header->value("required", false)) {
          out.push_back(fmt::format("{}: required header '{}' is missing", what, name));
        }
        continue;
      }
      if (header->contains("schema")) {
        for (auto& v : Validate(json(it->second), (*header)["schema"], "header " + name)) {
          out.push_back(fmt::format("{}: {}", what, v));
        }
      }
    }
  }
  return out;
}

std::vector<std::string> OpenApiSpec::Validate(const json& value, const json& schema,
                                               const std::string& path) const {
  std::vector<std::string> out;
  ValidateInto(value, schema, path, out, 0);
  return out;
}

std::vector<std::string> OpenApiSpec::ValidateSchema(const json& value,
                                                     std::string_view name) const {
  std::string ref = fmt::format("#/components/schemas/{}", name);
  const json* schema = Resolve(ref);
  if (!schema) return {fmt::format("{} does not exist", ref)};
  return Validate(value, *schema);
}

const json* OpenApiSpec::Resolve(std::string_view ref) const {
  if (!ref.starts_with("#")) return nullptr;
  std::string_view pointer = ref.substr(1);
  if (pointer.empty()) return &doc_;
  if (pointer.front() != '/') return nullptr;
  const json* node = &doc_;
  size_t pos = 1;
  while (pos <= pointer.size()) {
    size_t end = pointer.find('/', pos);
    if (end == std::string_view::npos) end = pointer.size();
    std::string token;
    std::string_view raw = pointer.substr(pos, end - pos);
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '~' && i + 1 < raw.size() && (raw[i + 1] == '0' || raw[i + 1] == '1')) {
        token += raw[i + 1] == '0' ? '~' : '/';
        ++i;
      } else {
        token += raw[i];
      }
    }
    if (node->is_object()) {
      auto it = node->find(token);
      if (it == node->end()) return nullptr;
      node = &*it;
    } else if (node->is_array()) {
      size_t index = 0;
      auto [p, ec] = std::from_chars(token.data(), token.data() + token.size(), index);
      if (ec != std::errc{} || p != token.data() + token.size() || index >= node->size()) {
        return nullptr;
      }
      node = &(*node)[index];
    } else {
      return nullptr;
    }
    pos = end + 1;
  }
  return node;
}

const json* OpenApiSpec::Deref(const json& node) const {
  const json* current = &node;
  for (int hops = 0; hops < kMaxDepth; ++hops) {
    if (!current->is_object()) return current;
    auto it = current->find("$ref");
    if (it == current->end()) return current;
    if (!it->is_string()) return nullptr;
    current = Resolve(it->get_ref<const std::string&>());
    if (!current) return nullptr;
  }
  return nullptr;  // a $ref cycle
}

void OpenApiSpec::ValidateInto(const json& value, const json& schema_node, const std::string& path,
                               std::vector<std::string>& out, int depth) const {
  if (depth > kMaxDepth) {
    out.push_back(path + ": schemas nest too deep (a $ref cycle?)");
    return;
  }
  const json* found = Deref(schema_node);
  if (!found) {
    out.push_back(
        fmt::format("{}: the schema's $ref does not resolve: {}", path, Short(schema_node)));
    return;
  }
  const json& s = *found;
  if (s.is_boolean()) {
    if (!s.get<bool>()) out.push_back(path + ": no value is allowed here");
    return;
  }
  if (!s.is_object()) {
    out.push_back(fmt::format("{}: the schema is not an object: {}", path, Short(s)));
    return;
  }
  for (const auto& [key, _] : s.items()) {
    if (!KnownKeyword(key)) {
      out.push_back(
          fmt::format("{}: schema keyword '{}' is not supported by the validator", path, key));
    }
  }
  if (value.is_null() && s.value("nullable", false)) return;

  if (auto it = s.find("allOf"); it != s.end()) {
    for (const auto& sub : *it) ValidateInto(value, sub, path, out, depth + 1);
  }
  for (const char* key : {"anyOf", "oneOf"}) {
    auto it = s.find(key);
    if (it == s.end()) continue;
    int matches = 0;
    std::vector<std::string> reasons;
    for (size_t i = 0; i < it->size(); ++i) {
      std::vector<std::string> sub;
      ValidateInto(value, (*it)[i], path, sub, depth + 1);
      if (sub.empty()) {
        ++matches;
      } else {
        reasons.push_back(fmt::format("[{}] {}", i, sub.front()));
      }
    }
    if (matches == 0) {
      out.push_back(fmt::format("{}: {} matches none of {}: {}", path, Short(value), key,
                                Join(reasons, "; ")));
    } else if (std::string_view(key) == "oneOf" && matches > 1) {
      out.push_back(
          fmt::format("{}: {} matches {} schemas of oneOf, not one", path, Short(value), matches));
    }
  }

  if (auto it = s.find("type"); it != s.end()) {
    const std::string type = it->is_string() ? it->get<std::string>() : "";
    bool ok = (type == "object" && value.is_object()) || (type == "array" && value.is_array()) ||
              (type == "string" && value.is_string()) ||
              (type == "integer" && value.is_number_integer()) ||
              (type == "number" && value.is_number()) || (type == "boolean" && value.is_boolean());
    if (!ok) {
      out.push_back(fmt::format("{}: expected {}{}, got {} {}", path, type,
                                s.value("nullable", false) ? " or null" : "", JsonType(value),
                                Short(value)));
      return;
    }
  }
  if (auto it = s.find("enum"); it != s.end() && it->is_array()) {
    if (std::find(it->begin(), it->end(), value) == it->end()) {
      out.push_back(fmt::format("{}: {} is not one of {}", path, Short(value), it->dump()));
    }
  }

  if (value.is_string()) {
    const std::string& str = value.get_ref<const std::string&>();
    size_t length = Utf8Length(str);
    if (auto it = s.find("minLength"); it != s.end() && length < it->get<size_t>()) {
      out.push_back(fmt::format("{}: {} is shorter than {} characters", path, Short(value),
                                it->get<size_t>()));
    }
    if (auto it = s.find("maxLength"); it != s.end() && length > it->get<size_t>()) {
      out.push_back(fmt::format("{}: {} is longer than {} characters", path, Short(value),
                                it->get<size_t>()));
    }
    if (auto it = s.find("pattern"); it != s.end()) {
      try {
        std::regex re(it->get<std::string>(), std::regex::ECMAScript);
        if (!std::regex_search(str, re)) {
          out.push_back(
              fmt::format("{}: {} does not match the pattern {}", path, Short(value), it->dump()));
        }
      } catch (const std::regex_error& e) {
        out.push_back(
            fmt::format("{}: the pattern {} is not a valid regex: {}", path, it->dump(), e.what()));
      }
    }
    if (s.value("format", "") == "date-time" && !IsRfc3339DateTime(str)) {
      out.push_back(fmt::format("{}: {} is not an RFC 3339 date-time", path, Short(value)));
    }
  }
  if (auto it = s.find("format"); it != s.end()) {
    std::string format = it->is_string() ? it->get<std::string>() : it->dump();
    if (!KnownFormat(format)) {
      out.push_back(fmt::format("{}: format '{}' is not supported by the validator", path, format));
    } else if (format == "int32" && value.is_number_integer()) {
      if (value.is_number_unsigned()
              ? value.get<uint64_t>() > INT32_MAX
              : (value.get<int64_t>() < INT32_MIN || value.get<int64_t>() > INT32_MAX)) {
        out.push_back(fmt::format("{}: {} does not fit int32", path, Short(value)));
      }
    }
  }

  if (value.is_number()) {
    double v = value.get<double>();
    if (auto it = s.find("minimum"); it != s.end()) {
      bool exclusive = s.value("exclusiveMinimum", false);
      double min = it->get<double>();
      if (exclusive ? v <= min : v < min) {
        out.push_back(fmt::format("{}: {} is {} {}", path, Short(value),
                                  exclusive ? "not above" : "below", it->dump()));
      }
    }
    if (auto it = s.find("maximum"); it != s.end()) {
      bool exclusive = s.value("exclusiveMaximum", false);
      double max = it->get<double>();
      if (exclusive ? v >= max : v > max) {
        out.push_back(fmt::format("{}: {} is {} {}", path, Short(value),
                                  exclusive ? "not below" : "above", it->dump()));
      }
    }
  }

  if (value.is_object()) {
    const json empty = json::object();
    const json& properties = s.contains("properties") ? s["properties"] : empty;
    if (auto it = s.find("required"); it != s.end()) {
      for (const auto& name : *it) {
        if (!value.contains(name.get<std::string>())) {
          out.push_back(
              fmt::format("{}: required property '{}' is missing", path, name.get<std::string>()));
        }
      }
    }
    auto additional = s.find("additionalProperties");
    for (const auto& [key, member] : value.items()) {
      std::string child = ChildPath(path, key);
      if (auto p = properties.find(key); p != properties.end()) {
        ValidateInto(member, *p, child, out, depth + 1);
      } else if (additional == s.end() || (additional->is_boolean() && additional->get<bool>())) {
        continue;
      } else if (additional->is_boolean()) {
        out.push_back(
            fmt::format("{}: property '{}' is not allowed (the schema has no such "
                        "property and additionalProperties is false)",
                        path, key));
      } else {
        ValidateInto(member, *additional, child, out, depth + 1);
      }
    }
  }

  if (value.is_array()) {
    if (auto it = s.find("minItems"); it != s.end() && value.size() < it->get<size_t>()) {
      out.push_back(
          fmt::format("{}: has {} items, fewer than {}", path, value.size(), it->get<size_t>()));
    }
    if (auto it = s.find("maxItems"); it != s.end() && value.size() > it->get<size_t>()) {
      out.push_back(
          fmt::format("{}: has {} items, more than {}", path, value.size(), it->get<size_t>()));
    }
    if (auto it = s.find("items"); it != s.end()) {
      for (size_t i = 0; i < value.size(); ++i) {
        ValidateInto(value[i], *it, fmt::format("{}[{}]", path, i), out, depth + 1);
      }
    }
  }
}

void OpenApiSpec::LintSchema(const json& schema, const std::string& where,
                             std::vector<std::string>& out, int depth) const {
  if (depth > kMaxDepth) {
    out.push_back(where + ": schemas nest too deep");
    return;
  }
  if (!schema.is_object()) {
    if (!schema.is_boolean()) out.push_back(where + ": a schema must be an object");
    return;
  }
  if (schema.contains("$ref")) {
    if (schema.size() > 1) {
      out.push_back(where + ": keywords next to $ref are ignored in OpenAPI 3.0; use allOf");
    }
    return;  // the target is linted where it is defined
  }
  for (const auto& [key, _] : schema.items()) {
    if (!KnownKeyword(key)) {
      out.push_back(fmt::format("{}: keyword '{}' is not supported by the validator", where, key));
    }
  }
  if (auto it = schema.find("type"); it != schema.end()) {
    static const std::set<std::string> kTypes = {"object",  "array",  "string",
                                                 "integer", "number", "boolean"};
    if (!it->is_string() || !kTypes.contains(it->get<std::string>())) {
      out.push_back(fmt::format("{}: type {} is not an OpenAPI 3.0 type", where, it->dump()));
    }
  }
  if (auto it = schema.find("format"); it != schema.end()) {
    if (!it->is_string() || !KnownFormat(it->get<std::string>())) {
      out.push_back(fmt::format("{}: format {} is not supported", where, it->dump()));
    }
  }
  if (auto it = schema.find("pattern"); it != schema.end()) {
    try {
      std::regex re(it->get<std::string>(), std::regex::ECMAScript);
    } catch (const std::exception& e) {
      out.push_back(
          fmt::format("{}: pattern {} does not compile: {}", where, it->dump(), e.what()));
    }
  }
  if (auto it = schema.find("enum"); it != schema.end()) {
    if (!it->is_array() || it->empty()) out.push_back(where + ": enum must be a non-empty array");
    if (it->is_array() && std::find(it->begin(), it->end(), nullptr) != it->end() &&
        !schema.value("nullable", false)) {
      out.push_back(where + ": enum lists null but the schema is not nullable");
    }
  }
  if (auto it = schema.find("required"); it != schema.end()) {
    auto additional = schema.find("additionalProperties");
    bool closed =
        additional != schema.end() && additional->is_boolean() && !additional->get<bool>();
    for (const auto& name : *it) {
      if (closed && !(schema.contains("properties") &&
                      schema["properties"].contains(name.get<std::string>()))) {
        out.push_back(
            fmt::format("{}: required '{}' is not among the properties, and "
                        "additionalProperties is false",
                        where, name.get<std::string>()));
      }
    }
  }
  if (auto it = schema.find("properties"); it != schema.end()) {
    for (const auto& [name, sub] : it->items()) {
      LintSchema(sub, ChildPath(where + ".properties", name), out, depth + 1);
    }
  }
  if (auto it = schema.find("additionalProperties"); it != schema.end() && it->is_object()) {
    LintSchema(*it, where + ".additionalProperties", out, depth + 1);
  }
  if (auto it = schema.find("items"); it != schema.end()) {
    LintSchema(*it, where + ".items", out, depth + 1);
  }
  for (const char* key : {"allOf", "anyOf", "oneOf"}) {
    auto it = schema.find(key);
    if (it == schema.end()) continue;
    if (!it->is_array() || it->empty()) {
      out.push_back(fmt::format("{}: {} must be a non-empty array", where, key));
      continue;
    }
    for (size_t i = 0; i < it->size(); ++i) {
      LintSchema((*it)[i], fmt::format("{}.{}[{}]", where, key, i), out, depth + 1);
    }
  }
}

std::vector<std::string> OpenApiSpec::Lint() const {
  std::vector<std::string> out;
  // Every $ref anywhere resolves.
  std::function<void(const json&, const std::string&)> check_refs = [&](const json& node,
                                                                        const std::string& where) {
    if (node.is_object()) {
      if (auto it = node.find("$ref"); it != node.end()) {
        if (!it->is_string() || !Resolve(it->get<std::string>())) {
          out.push_back(fmt::format("{}: $ref {} does not resolve", where, it->dump()));
        }
      }
      for (const auto& [key, sub] : node.items()) check_refs(sub, ChildPath(where, key));
    } else if (node.is_array()) {
      for (size_t i = 0; i < node.size(); ++i) {
        check_refs(node[i], fmt::format("{}[{}]", where, i));
      }
    }
  };
  check_refs(doc_, "$");

  auto lint_content = [&](const json& holder, const std::string& where) {
    const json* h = Deref(holder);
    if (!h || !h->contains("content")) return;
    for (const auto& [type, media] : (*h)["content"].items()) {
      if (media.contains("schema")) {
        LintSchema(media["schema"], ChildPath(where + ".content", type) + ".schema", out, 0);
      }
    }
  };
  auto lint_headers = [&](const json& holder, const std::string& where) {
    const json* h = Deref(holder);
    if (!h || !h->contains("headers")) return;
    for (const auto& [name, header] : (*h)["headers"].items()) {
      const json* d = Deref(header);
      if (d && d->contains("schema")) {
        LintSchema((*d)["schema"], ChildPath(where + ".headers", name) + ".schema", out, 0);
      }
    }
  };

  static const json kEmpty = json::object();
  auto section = [&](const char* name) -> const json& {
    auto c = doc_.find("components");
    if (c == doc_.end() || !c->contains(name)) return kEmpty;
    return (*c)[name];
  };
  for (const auto& [name, schema] : section("schemas").items()) {
    LintSchema(schema, "#/components/schemas/" + name, out, 0);
  }
  for (const auto& [name, p] : section("parameters").items()) {
    if (p.contains("schema")) {
      LintSchema(p["schema"], "#/components/parameters/" + name + ".schema", out, 0);
    }
  }
  for (const auto& [name, h] : section("headers").items()) {
    if (h.contains("schema")) {
      LintSchema(h["schema"], "#/components/headers/" + name + ".schema", out, 0);
    }
  }
  for (const auto& [name, r] : section("responses").items()) {
    lint_content(r, "#/components/responses/" + name);
    lint_headers(r, "#/components/responses/" + name);
  }

  std::set<std::string> operation_ids;
  static const std::regex kParam("\\{([^}]+)\\}");
  for (const auto& [tmpl, item] : doc_["paths"].items()) {
    std::vector<std::string> template_params;
    for (std::sregex_iterator it(tmpl.begin(), tmpl.end(), kParam), end; it != end; ++it) {
      template_params.push_back((*it)[1].str());
    }
    for (const char* m : kMethods) {
      if (!item.contains(m)) continue;
      const json& op = item[m];
      std::string where = fmt::format("{} {}", Upper(m), tmpl);
      std::string id = op.value("operationId", "");
      if (id.empty()) {
        out.push_back(where + ": no operationId");
      } else if (!operation_ids.insert(id).second) {
        out.push_back(fmt::format("{}: operationId '{}' is used twice", where, id));
      }
      // Parameters of the path item and of the operation, $refs resolved.
      std::set<std::string> path_params;
      for (const json* params : {item.contains("parameters") ? &item["parameters"] : nullptr,
                                 op.contains("parameters") ? &op["parameters"] : nullptr}) {
        if (!params) continue;
        for (const auto& p_ref : *params) {
          const json* p = Deref(p_ref);
          if (!p) continue;
          if (p->value("in", "") == "path") {
            if (!p->value("required", false)) {
              out.push_back(fmt::format("{}: path parameter '{}' must be required", where,
                                        p->value("name", "")));
            }
            path_params.insert(p->value("name", ""));
          }
          if (p->contains("schema")) {
            LintSchema((*p)["schema"], where + " parameter " + p->value("name", ""), out, 0);
          }
        }
      }
      for (const auto& name : template_params) {
        if (!path_params.contains(name)) {
          out.push_back(fmt::format("{}: path parameter '{}' is not declared", where, name));
        }
      }
      if (op.contains("requestBody")) lint_content(op["requestBody"], where + " requestBody");
      if (!op.contains("responses") || !op["responses"].is_object() || op["responses"].empty()) {
        out.push_back(where + ": no responses");
        continue;
      }
      for (const auto& [status, r] : op["responses"].items()) {
        lint_content(r, where + " response " + status);
        lint_headers(r, where + " response " + status);
      }
    }
  }
  return out;
}

}  // namespace hearth::testing

// OpenApiSpec: api/openapi.yaml as data, for tests that check the real server against it. It finds
// the operation a request hits, the response declared for a status, and validates JSON values
// against the spec's schemas.
//
// The schema checks cover the subset of OpenAPI 3.0 that hearth's spec uses: type (object, array,
// string, integer, number, boolean), nullable, enum, properties, required, additionalProperties
// (a boolean or a schema), items, minItems/maxItems, minLength/maxLength, pattern (ECMAScript,
// unanchored as in JSON Schema), format (date-time is checked as RFC 3339; int32/int64 ranges),
// minimum/maximum (with exclusiveMinimum/exclusiveMaximum), allOf/anyOf/oneOf, and local `$ref`s
// ("#/components/..."). A schema keyword outside that subset is reported as a violation rather than
// ignored, so the spec cannot promise something no test checks. Not thread-safe to load; const
// methods are safe to call concurrently.
#pragma once

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/http_types.h"
#include "common/result.h"

namespace hearth::testing {

// Converts YAML text to JSON with the YAML 1.2 core schema: plain scalars become null, booleans,
// integers or numbers when they look like one, anything quoted stays a string. Map keys are
// always strings. invalid_argument on a YAML syntax error.
Result<nlohmann::json> YamlToJson(std::string_view yaml);

// The (METHOD, path template) pairs of a spec's `paths` object (OpenAPI 3 or Swagger 2), sorted.
std::vector<std::pair<std::string, std::string>> PathOperations(const nlohmann::json& paths);

// True if `text` is an RFC 3339 date-time ("2026-12-01T18:00:00.250Z", "...+02:00"), with the
// calendar checked (no February 30th).
bool IsRfc3339DateTime(std::string_view text);

// An operation of the spec, matched to a concrete request.
struct OperationMatch {
  std::string method;                              // upper case, "GET"
  std::string path_template;                       // as in the spec, "/v1/vms/{name}"
  std::map<std::string, std::string> path_params;  // {"name": "web"}
  const nlohmann::json* operation = nullptr;       // the Operation Object
};

// The response an operation declares for one status.
struct ResponseMatch {
  std::string key;                           // "201", "4XX" or "default"
  bool from_default = false;                 // matched only through "default"
  const nlohmann::json* response = nullptr;  // the Response Object, $ref resolved
};

class OpenApiSpec {
 public:
  // Reads and parses a YAML (or JSON) spec file. invalid_argument if it is not an OpenAPI 3.0
  // document with `paths`; not_found if the file cannot be read.
  static Result<OpenApiSpec> Load(const std::filesystem::path& file);
  static Result<OpenApiSpec> Parse(std::string_view yaml);

  const nlohmann::json& document() const { return doc_; }

  // Every (method, path template) of the spec, methods in upper case, sorted.
  std::vector<std::pair<std::string, std::string>> Operations() const;
  // The methods declared for one path template, upper case, sorted; empty if there is no such
  // path.
  std::vector<std::string> Methods(std::string_view path_template) const;

  // Finds the path template that `target` (a path, optionally with "?query") matches: literal
  // segments must be equal, "{param}" segments match any one non-empty segment, and a template
  // with more literal segments wins. Returns the template, or not_found.
  Result<std::string> MatchPath(std::string_view target) const;
  // MatchPath, then the operation for `method` on it: not_found if no path matches,
  // failed_precondition if the path has no such method.
  Result<OperationMatch> FindOperation(std::string_view method, std::string_view target) const;

  // The response declared for `status`: the exact code, else "NXX", else "default"; not_found if
  // none of them is declared.
  Result<ResponseMatch> FindResponse(const OperationMatch& op, int status) const;

  // The content types a response declares (e.g. "application/json"); empty for no body.
  std::vector<std::string> ContentTypes(const ResponseMatch& response) const;
  // The schema of one of a response's content types, $ref resolved; null if it has none.
  const nlohmann::json* ResponseSchema(const ResponseMatch& response,
                                       std::string_view content_type) const;
  // The schema of an operation's JSON request body; null if it takes none.
  const nlohmann::json* RequestSchema(const OperationMatch& op) const;
  // True if the operation's effective `security` (its own, else the document's) is non-empty.
  bool RequiresAuth(const OperationMatch& op) const;

  // Checks a real response against what the operation declares: the status is declared (with
  // `allow_default`, "default" counts), the media type (ignoring parameters such as charset) is
  // one the response declares, or there is no body when it declares none; the body parses and
  // validates against the schema (a text/* body is validated as a JSON string); and every
  // required header is present and matches its schema. `response.headers` names are compared
  // case-insensitively. Returns the violations, empty when the response conforms.
  std::vector<std::string> CheckResponse(const OperationMatch& op,
                                         const api::HttpResponse& response,
                                         bool allow_default = false) const;
  // The same checks against a Response Object given by reference, e.g.
  // "#/components/responses/MethodNotAllowed", for answers no operation declares.
  std::vector<std::string> CheckResponseObject(std::string_view ref,
                                               const api::HttpResponse& response) const;

  // Validates `value` against `schema` (which may be or contain local $refs). Each violation
  // reads "$.vms[0].state: \"asleep\" is not one of [...]"; `path` is the root's name.
  std::vector<std::string> Validate(const nlohmann::json& value, const nlohmann::json& schema,
                                    const std::string& path = "$") const;
  // Validates against "#/components/schemas/<name>".
  std::vector<std::string> ValidateSchema(const nlohmann::json& value, std::string_view name) const;

  // Resolves a local reference such as "#/components/schemas/Vm" (JSON Pointer escapes
  // included); null if it does not resolve.
  const nlohmann::json* Resolve(std::string_view ref) const;
  // `node` itself, or what its "$ref" points to (following chains); null on a broken $ref.
  const nlohmann::json* Deref(const nlohmann::json& node) const;

  // Checks the document itself: every $ref resolves, every schema uses only supported keywords,
  // every operation has a unique operationId and at least one response, and every path parameter
  // of a template is declared. Returns the problems found.
  std::vector<std::string> Lint() const;

 private:
  explicit OpenApiSpec(nlohmann::json doc) : doc_(std::move(doc)) {}

  void ValidateInto(const nlohmann::json& value, const nlohmann::json& schema,
                    const std::string& path, std::vector<std::string>& out, int depth) const;
  void LintSchema(const nlohmann::json& schema, const std::string& where,
                  std::vector<std::string>& out, int depth) const;
  std::vector<std::string> CheckAgainst(const ResponseMatch& match,
                                        const api::HttpResponse& response,
                                        const std::string& what) const;

  nlohmann::json doc_;
};

}  // namespace hearth::testing

// SwaggerSpec: the Firecracker API description (Swagger 2.0) as data, for the Firecracker test
// double. It routes a request to the operation the spec declares and validates a JSON body against
// the operation's `in: body` schema.
//
// Validation follows what Firecracker's serde deserialisation enforces, on top of the schema:
//   - `type` (object, array, string, integer, number, boolean), `required`, `properties`, `items`,
//     `enum`, `minimum`/`maximum`, local `$ref`s ("#/definitions/...");
//   - unknown properties are rejected (Firecracker's structs use serde `deny_unknown_fields`),
//     except in a schema with `additionalProperties: true` (the MMDS contents);
//   - integers must be non-negative (every integer of the API is unsigned in Firecracker);
//   - an optional property may be null (serde reads null as an absent Option).
// Messages read like serde's: "missing field `kernel_image_path`", "unknown field `foo`, expected
// one of `a`, `b`", "invalid type: string \"x\", expected integer", "unknown variant `X`, expected
// one of `A`, `B`"; a nested problem is prefixed with its location ("rate_limiter.bandwidth: ...").
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace hearth::fcdouble {

struct Route {
  std::string method;                              // "PUT"
  std::string path_template;                       // "/drives/{drive_id}"
  std::map<std::string, std::string> path_params;  // {"drive_id": "rootfs"}
  const nlohmann::json* body_schema = nullptr;     // the `in: body` schema, null if none
  bool body_required = false;                      // the body parameter says `required: true`
};

class SwaggerSpec {
 public:
  // Parses the spec (YAML). invalid_argument if it is not a Swagger 2.0 document with `paths`.
  static Result<SwaggerSpec> Parse(std::string_view yaml);

  const nlohmann::json& document() const { return doc_; }

  // Every (METHOD, path template) the spec declares, sorted.
  std::vector<std::pair<std::string, std::string>> Operations() const;

  // Routes a request path (no query) and method. not_found when no path template matches;
  // failed_precondition when the path exists but not with this method. A "{param}" segment
  // matches one non-empty segment; literal segments win over parameters.
  Result<Route> Match(std::string_view method, std::string_view path) const;

  // Validates `value` against `schema`; returns the first violation, or nullopt. With `partial`,
  // the top-level `required` list is not enforced (a PATCH that updates some fields).
  std::optional<std::string> Validate(const nlohmann::json& value, const nlohmann::json& schema,
                                      bool partial = false) const;

 private:
  explicit SwaggerSpec(nlohmann::json doc) : doc_(std::move(doc)) {}
  const nlohmann::json* Deref(const nlohmann::json& node) const;
  std::optional<std::string> Check(const nlohmann::json& value, const nlohmann::json& schema,
                                   const std::string& where, int depth, bool partial) const;

  nlohmann::json doc_;
};

// The spec this double was built with (third_party/firecracker/firecracker-api-v1.16.1.yaml,
// embedded at build time so the binary works inside a jail).
std::string_view EmbeddedSpecYaml();

}  // namespace hearth::fcdouble

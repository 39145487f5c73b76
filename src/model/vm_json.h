// JSON forms of the VM: the request bodies of create and edit (strict: unknown fields and wrong
// types are refused, naming the field) and the VM object the API answers with.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/result.h"
#include "model/timers.h"
#include "model/vm.h"

namespace hearth {

// Applies the spec fields present in `body` onto `spec`. Fields absent from `body` keep their
// value, so the same function reads a full create body (onto a default spec) and a partial edit.
// `ignored` names top-level keys the caller handles itself (e.g. "name", "version").
Status ApplySpecJson(const nlohmann::json& body, VmSpec& spec,
                     std::initializer_list<std::string_view> ignored = {});

struct CreateRequest {
  std::string name;
  VmSpec spec;
};
// Parses POST /v1/vms: {"name": ..., <spec fields>}.
Result<CreateRequest> ParseCreateRequest(const nlohmann::json& body);

struct EditRequest {
  nlohmann::json fields;              // the spec fields to change, still as JSON
  std::optional<int64_t> generation;  // the spec generation the edit is based on, if sent
  bool discard_state = false;         // allow edits that invalidate a saved snapshot
  bool replace = false;  // PUT: fields not given take their defaults instead of staying
};
// Parses PATCH /v1/vms/{name}: {<spec fields>, "generation": N?, "discard_state": bool?}.
Result<EditRequest> ParseEditRequest(const nlohmann::json& body);

// Parses a request body; malformed JSON or a non-object is invalid_argument.
Result<nlohmann::json> ParseJsonObject(std::string_view text);

// `resolve_wake`: show the effective wake mode (API) rather than null for "unset" (storage).
nlohmann::json SpecToJson(const VmSpec& spec, bool resolve_wake = true);
// `next_timer`: the timer that fires next, as the node sees it (model/timers.h).
nlohmann::json VmToJson(const VmRecord& vm, const std::optional<DueTimer>& next_timer);
nlohmann::json EventToJson(const Event& event);
nlohmann::json ErrorToJson(const Error& error);

}  // namespace hearth

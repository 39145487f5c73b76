// The target of an API request (path and query), parsed, and the readers of its query parameters
// and headers. Every error is kInvalidArgument naming the parameter, as the API answers it (400).
#pragma once

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/http_types.h"
#include "common/result.h"

namespace hearth::api {

struct RequestTarget {
  // The path's segments, percent-decoded; empty segments ("//") are skipped.
  std::vector<std::string> segments;
  // The query's parameters, form-decoded ('+' is a space); the last of a repeated key wins.
  std::map<std::string, std::string> query;
  // Every parameter in order, repeated keys included (`label=a=1&label=b=2`).
  std::vector<std::pair<std::string, std::string>> params;
};

// Parses "/v1/vms/web?force=true". Fails on bad percent-encoding.
Result<RequestTarget> ParseTarget(std::string_view target);

// Ok when only `allowed` query parameters are present.
Status CheckQuery(const RequestTarget& t, std::initializer_list<std::string_view> allowed);

// Every value of a parameter that may be repeated, in order.
std::vector<std::string> QueryAll(const RequestTarget& t, std::string_view key);

// A boolean parameter: absent is false; "", "true" and "1" are true; "false" and "0" false.
Result<bool> QueryFlag(const RequestTarget& t, const std::string& key);

// `wait=DURATION` of a lifecycle request ("30s", "500ms"; at most 10m); none without it.
Result<std::optional<std::chrono::milliseconds>> QueryWait(const RequestTarget& t);

// A whole number from `lo` to `hi`; `def` when absent.
Result<int> QueryInt(const RequestTarget& t, const std::string& key, int def, int lo, int hi);

// The spec generation an edit is based on, from If-Match ("5" or "\"5\""); none without the
// header.
Result<std::optional<int64_t>> IfMatchGeneration(const HttpRequest& req);

}  // namespace hearth::api

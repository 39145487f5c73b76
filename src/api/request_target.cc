#include "api/request_target.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

#include "common/clock.h"

namespace hearth::api {
namespace {

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

}  // namespace

Result<RequestTarget> ParseTarget(std::string_view target) {
  RequestTarget t;
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
    t.params.emplace_back(std::move(*key), std::move(*value));
  }
  return t;
}

Status CheckQuery(const RequestTarget& t, std::initializer_list<std::string_view> allowed) {
  for (const auto& [key, _] : t.query) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      return Fail(Code::kInvalidArgument,
                  fmt::format("query parameter '{}' is not known here", key), key);
    }
  }
  return Ok();
}

std::vector<std::string> QueryAll(const RequestTarget& t, std::string_view key) {
  std::vector<std::string> out;
  for (const auto& [k, v] : t.params) {
    if (k == key) out.push_back(v);
  }
  return out;
}

Result<bool> QueryFlag(const RequestTarget& t, const std::string& key) {
  auto it = t.query.find(key);
  if (it == t.query.end()) return false;
  if (it->second.empty() || it->second == "true" || it->second == "1") return true;
  if (it->second == "false" || it->second == "0") return false;
  return Fail(Code::kInvalidArgument,
              fmt::format("{}: '{}' is not a boolean; use true or false", key, it->second), key);
}

Result<std::optional<std::chrono::milliseconds>> QueryWait(const RequestTarget& t) {
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

Result<int> QueryInt(const RequestTarget& t, const std::string& key, int def, int lo, int hi) {
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

Result<std::optional<int64_t>> IfMatchGeneration(const HttpRequest& req) {
  auto it = req.headers.find("if-match");
  if (it == req.headers.end()) return std::optional<int64_t>();
  std::string_view v = it->second;
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  int64_t n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc{} || end != v.data() + v.size()) {
    return Fail(Code::kInvalidArgument,
                fmt::format("If-Match: '{}' is not a VM generation such as \"3\" (the ETag of GET /v1/vms/NAME)", it->second),
                "If-Match");
  }
  return std::optional<int64_t>(n);
}

}  // namespace hearth::api

#include "common/clock.h"

#include <fmt/format.h>
#include <time.h>

#include <algorithm>
#include <cctype>
#include <charconv>

#include "common/text.h"

namespace hearth {

Timestamp SystemClock::Now() const {
  return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
}

Timestamp AddClamped(Timestamp t, Duration d) {
  int64_t base = t.time_since_epoch().count();
  int64_t lo = kEarliestTime.time_since_epoch().count();
  int64_t hi = kLatestTime.time_since_epoch().count();
  int64_t sum = 0;
  if (__builtin_add_overflow(base, d.count(), &sum)) sum = d.count() < 0 ? lo : hi;
  return Timestamp{Duration{std::clamp(sum, lo, hi)}};
}

std::string FormatTime(Timestamp t) {
  auto ms_total = t.time_since_epoch().count();
  time_t secs = static_cast<time_t>(ms_total / 1000);
  int ms = static_cast<int>(ms_total % 1000);
  if (ms < 0) {
    ms += 1000;
    --secs;
  }
  struct tm tm {};
  gmtime_r(&secs, &tm);
  std::string out = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", tm.tm_year + 1900,
                                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  if (ms != 0) out += fmt::format(".{:03}", ms);
  out += 'Z';
  return out;
}

namespace {

constexpr Timestamp kMinTime = kEarliestTime;
constexpr Timestamp kMaxTime = kLatestTime;

bool ReadInt(std::string_view text, size_t& pos, size_t digits, int& out) {
  if (pos + digits > text.size()) return false;
  out = 0;
  for (size_t i = 0; i < digits; ++i) {
    char c = text[pos + i];
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    out = out * 10 + (c - '0');
  }
  pos += digits;
  return true;
}

bool Expect(std::string_view text, size_t& pos, std::string_view chars) {
  if (pos >= text.size() || chars.find(text[pos]) == std::string_view::npos) return false;
  ++pos;
  return true;
}

}  // namespace

Result<Timestamp> ParseTime(std::string_view text) {
  auto bad = [&] {
    return Fail(Code::kInvalidArgument,
                fmt::format("'{}' is not an RFC 3339 time; use e.g. 2026-12-01T18:00:00Z",
                            Printable(text)));
  };
  size_t pos = 0;
  int year, mon, day, hour, min, sec;
  if (!ReadInt(text, pos, 4, year) || !Expect(text, pos, "-") || !ReadInt(text, pos, 2, mon) ||
      !Expect(text, pos, "-") || !ReadInt(text, pos, 2, day) || !Expect(text, pos, "Tt ") ||
      !ReadInt(text, pos, 2, hour) || !Expect(text, pos, ":") || !ReadInt(text, pos, 2, min) ||
      !Expect(text, pos, ":") || !ReadInt(text, pos, 2, sec)) {
    return bad();
  }
  if (mon < 1 || mon > 12 || day < 1 || hour > 23 || min > 59 || sec > 60) return bad();
  std::chrono::year_month_day ymd{std::chrono::year{year}, std::chrono::month{unsigned(mon)},
                                  std::chrono::day{unsigned(day)}};
  if (!ymd.ok()) return bad();
  int millis = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    int scale = 100;
    size_t start = pos;
    while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) {
      millis += (text[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start) return bad();
  }
  int offset_minutes = 0;
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    int sign = text[pos] == '-' ? -1 : 1;
    ++pos;
    int oh, om;
    if (!ReadInt(text, pos, 2, oh) || !Expect(text, pos, ":") || !ReadInt(text, pos, 2, om) ||
        oh > 23 || om > 59) {
      return bad();
    }
    offset_minutes = sign * (oh * 60 + om);
  } else {
    return bad();
  }
  if (pos != text.size()) return bad();
  auto days = std::chrono::sys_days{ymd};
  auto t = std::chrono::time_point_cast<std::chrono::milliseconds>(days) +
           std::chrono::hours{hour} + std::chrono::minutes{min} + std::chrono::seconds{sec} +
           std::chrono::milliseconds{millis} - std::chrono::minutes{offset_minutes};
  // Only times that format back to four-digit years: everything hearth writes must read back.
  if (t < kMinTime || t > kMaxTime) {
    return Fail(
        Code::kInvalidArgument,
        fmt::format("'{}' is outside 1970-01-01T00:00:00Z..9999-12-31T23:59:59Z", Printable(text)));
  }
  return Timestamp{t};
}

std::string FormatDuration(Duration d) {
  long long ms = d.count();
  if (ms == 0) return "0s";
  std::string out;
  if (ms < 0) {
    out = "-";
    ms = -ms;
  }
  const struct {
    long long size;
    const char* unit;
  } units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}, {1, "ms"}};
  for (const auto& u : units) {
    if (ms >= u.size) {
      out += fmt::format("{}{}", ms / u.size, u.unit);
      ms %= u.size;
    }
  }
  return out;
}

Result<Duration> ParseDuration(std::string_view text) {
  auto bad = [&] {
    return Fail(
        Code::kInvalidArgument,
        fmt::format("'{}' is not a duration; use e.g. 30s, 5m, 1h30m, 500ms", Printable(text)));
  };
  if (text.empty()) return bad();
  long long total = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    long long value = 0;
    auto [end, ec] = std::from_chars(text.data() + pos, text.data() + text.size(), value);
    if (ec != std::errc{} || end == text.data() + pos || value < 0) return bad();
    pos = static_cast<size_t>(end - text.data());
    size_t unit_start = pos;
    while (pos < text.size() && std::isalpha(static_cast<unsigned char>(text[pos]))) ++pos;
    std::string_view unit = text.substr(unit_start, pos - unit_start);
    long long scale;
    if (unit == "ms") {
      scale = 1;
    } else if (unit == "s") {
      scale = 1000;
    } else if (unit == "m") {
      scale = 60000;
    } else if (unit == "h") {
      scale = 3600000;
    } else if (unit == "d") {
      scale = 86400000;
    } else {
      return bad();
    }
    // Refuse values whose millisecond count would not fit: about 292 million years.
    if (value > (INT64_MAX - total) / scale) return bad();
    total += value * scale;
  }
  return Duration{total};
}

}  // namespace hearth

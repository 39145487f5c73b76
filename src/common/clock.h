// Time: an injectable clock and the two text forms hearth accepts, RFC 3339 timestamps and
// durations ("90s", "1h30m", "500ms").
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace hearth {

using Timestamp = std::chrono::sys_time<std::chrono::milliseconds>;
using Duration = std::chrono::milliseconds;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual Timestamp Now() const = 0;
};

class SystemClock final : public Clock {
 public:
  Timestamp Now() const override;
};

// A steady-clock interval in seconds, for messages ("saved in 0.014 s").
inline double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}
// The same in milliseconds, for measures ("restore_ms").
inline double Millis(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// The times hearth accepts and writes: RFC 3339 with a four-digit year, from the Unix epoch.
inline constexpr Timestamp kEarliestTime{};
inline constexpr Timestamp kLatestTime = std::chrono::time_point_cast<std::chrono::milliseconds>(
    std::chrono::sys_days{std::chrono::year{9999} / 12 / 31} + std::chrono::hours{24} -
    std::chrono::milliseconds{1});
// The longest duration a timer or range may span: 100 years (36500d).
inline constexpr Duration kMaxDuration = std::chrono::hours{24 * 36500};

// t + d, clamped to [kEarliestTime, kLatestTime] instead of overflowing or leaving the range that
// formats as RFC 3339.
Timestamp AddClamped(Timestamp t, Duration d);

// Formats as RFC 3339 UTC, e.g. "2026-11-26T07:40:28Z"; milliseconds are shown when non-zero.
std::string FormatTime(Timestamp t);
// Parses RFC 3339 with a "Z" or "+hh:mm" offset and optional fractional seconds.
Result<Timestamp> ParseTime(std::string_view text);

// Formats e.g. 5400s as "1h30m"; 0 as "0s".
std::string FormatDuration(Duration d);
// Parses a sequence of <integer><unit> with units ms, s, m, h, d ("1h30m", "250ms").
Result<Duration> ParseDuration(std::string_view text);

}  // namespace hearth

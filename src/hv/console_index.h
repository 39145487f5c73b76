// When the bytes of a console log arrived. The VMM writes the log itself (QEMU's
// `-chardev file`), so hearthd learns only that the file grew: an index next to the log
// (vms/<id>/console.times, files::kConsoleTimes) holds one text line "END UNIX_MS" each time
// hearthd saw it grow, meaning "the bytes before offset END that no earlier line covers had
// arrived by UNIX_MS". Each line of the log is stamped with the first entry whose END is past the
// line's start: never earlier than the truth, and at most one look later (hearthd's tick, 1 s, or
// the read that asked for timestamps). Bytes written while hearthd was down are stamped when it
// first sees them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/result.h"

namespace hearth::hv {

// The most entries an index keeps (about 80 KiB); past it, old entries are merged.
inline constexpr size_t kMaxConsoleTimes = 4096;

struct ConsoleTime {
  int64_t end = 0;  // offset in the log
  Timestamp seen;
  bool operator==(const ConsoleTime&) const = default;
};

// The index's entries, oldest first; empty if it is missing. Malformed lines are skipped.
std::vector<ConsoleTime> ReadConsoleTimes(const std::filesystem::path& index);

// The END of the index's last entry, 0 without one.
int64_t LastConsoleEnd(const std::filesystem::path& index);

// Appends "END MS".
Status AppendConsoleTime(const std::filesystem::path& index, const ConsoleTime& t);

// After the first `cut` bytes of the log were cut off (CapLog), moves every END back by `cut` and
// drops the entries that now cover nothing; then, if more than `max_entries` remain, merges the
// oldest pairs (a merged entry keeps the later time: still never earlier than the truth).
// Rewritten through a temporary file and a rename.
Status ShiftConsoleTimes(const std::filesystem::path& index, int64_t cut, size_t max_entries);

// `text` is the part of the log that starts at offset `start`. Returns its lines, each prefixed
// with when it arrived (RFC 3339 UTC with milliseconds, then a space); a line not covered by any
// entry gets `unknown`.
std::string StampLines(std::string_view text, int64_t start, const std::vector<ConsoleTime>& times,
                       Timestamp unknown);

// The last `lines` lines of `text` (a final line without a newline counts), and in `skipped` how
// many bytes were left out before them.
std::string_view LastLinesOf(std::string_view text, int lines, int64_t& skipped);

}  // namespace hearth::hv

#include "hv/console_index.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

#include "hv/console_log.h"

namespace hearth::hv {
namespace {

// RFC 3339 UTC, always with milliseconds, so that stamped lines line up.
std::string Stamp(Timestamp t) {
  std::string s = FormatTime(t);
  if (s.find('.') == std::string::npos && !s.empty() && s.back() == 'Z')
    s.insert(s.size() - 1, ".000");
  return s;
}

bool ParseEntry(std::string_view line, ConsoleTime& out) {
  size_t space = line.find(' ');
  if (space == std::string_view::npos) return false;
  int64_t end = 0, ms = 0;
  auto a = std::from_chars(line.data(), line.data() + space, end);
  auto b = std::from_chars(line.data() + space + 1, line.data() + line.size(), ms);
  if (a.ec != std::errc{} || b.ec != std::errc{} || b.ptr != line.data() + line.size()) {
    return false;
  }
  out = {end, Timestamp{std::chrono::milliseconds(ms)}};
  return true;
}

std::string EntryLine(const ConsoleTime& t) {
  return fmt::format("{} {}\n", t.end, t.seen.time_since_epoch().count());
}

}  // namespace

std::vector<ConsoleTime> ReadConsoleTimes(const std::filesystem::path& index) {
  std::vector<ConsoleTime> out;
  std::ifstream in(index);
  for (std::string line; std::getline(in, line);) {
    ConsoleTime t;
    if (ParseEntry(line, t)) out.push_back(t);
  }
  return out;
}

int64_t LastConsoleEnd(const std::filesystem::path& index) {
  std::string tail = ReadTail(index, 64);
  while (!tail.empty() && tail.back() == '\n') tail.pop_back();
  size_t nl = tail.rfind('\n');
  ConsoleTime t;
  return ParseEntry(nl == std::string::npos ? tail : tail.substr(nl + 1), t) ? t.end : 0;
}

Status AppendConsoleTime(const std::filesystem::path& index, const ConsoleTime& t) {
  int fd = ::open(index.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Fail(Code::kInternal, fmt::format("opening {}: {}", index.string(), strerror(errno)));
  }
  std::string line = EntryLine(t);
  ssize_t n = ::write(fd, line.data(), line.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(line.size())) {
    return Fail(Code::kInternal, fmt::format("writing {}: {}", index.string(), strerror(err)));
  }
  return Ok();
}

Status ShiftConsoleTimes(const std::filesystem::path& index, int64_t cut, size_t max_entries) {
  std::vector<ConsoleTime> times = ReadConsoleTimes(index), kept;
  for (ConsoleTime t : times) {
    t.end -= cut;
    if (t.end > 0) kept.push_back(t);
  }
  while (kept.size() > max_entries && max_entries > 0) {
    // Merge the older half pairwise: the earlier entry of each pair goes, its bytes fall to the
    // later one.
    std::vector<ConsoleTime> merged;
    size_t half = kept.size() / 2;
    for (size_t i = 0; i < kept.size(); ++i) {
      if (i < half && i % 2 == 0 && i + 1 < half) continue;
      merged.push_back(kept[i]);
    }
    if (merged.size() == kept.size()) break;
    kept = std::move(merged);
  }
  if (cut == 0 && kept.size() == times.size()) return Ok();
  std::string text;
  for (const ConsoleTime& t : kept) text += EntryLine(t);
  std::filesystem::path tmp = index;
  tmp += ".new";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    if (!out.flush()) {
      return Fail(Code::kInternal, fmt::format("writing {}: {}", tmp.string(), strerror(errno)));
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, index, ec);
  if (ec) return Fail(Code::kInternal, fmt::format("renaming {}: {}", tmp.string(), ec.message()));
  return Ok();
}

std::string StampLines(std::string_view text, int64_t start, const std::vector<ConsoleTime>& times,
                       Timestamp unknown) {
  std::string out;
  size_t entry = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string_view::npos ? text.size() : nl + 1;
    int64_t offset = start + static_cast<int64_t>(pos);
    while (entry < times.size() && times[entry].end <= offset) ++entry;
    out += Stamp(entry < times.size() ? times[entry].seen : unknown);
    out += ' ';
    out += text.substr(pos, end - pos);
    pos = end;
  }
  return out;
}

std::string_view LastLinesOf(std::string_view text, int lines, int64_t& skipped) {
  size_t end = text.size();
  if (end > 0 && text[end - 1] == '\n') --end;  // the last line's own newline
  size_t from = end;
  for (int found = 0; found < lines; ++found) {
    size_t nl = from == 0 ? std::string_view::npos : text.rfind('\n', from - 1);
    if (nl == std::string_view::npos) {
      from = 0;
      break;
    }
    from = nl;
    if (found + 1 == lines) ++from;
  }
  skipped = static_cast<int64_t>(from);
  return text.substr(from);
}

}  // namespace hearth::hv

// Helpers shared by hearth's libFuzzer targets (see CMakeLists.txt here and scripts/fuzz.sh).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace hearth::fuzz {

// A finding that the sanitizers would not see: prints what and aborts, so libFuzzer keeps the
// input.
[[noreturn]] inline void Crash(std::string_view what, std::string_view detail) {
  std::fprintf(stderr, "fuzz: %.*s: %.*s\n", int(what.size()), what.data(),
               int(std::min<size_t>(detail.size(), 2000)), detail.data());
  std::abort();
}

inline std::string_view AsText(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// An in-memory file holding `text`, for code that reads a path (`path()` is /proc/self/fd/N).
// No disk and no clean-up on a crash; closed on destruction.
class MemFile {
 public:
  explicit MemFile(std::string_view text) : fd_(memfd_create("hearth-fuzz", MFD_CLOEXEC)) {
    if (fd_ < 0) Crash("memfd_create", "failed");
    size_t done = 0;
    while (done < text.size()) {
      ssize_t n = write(fd_, text.data() + done, text.size() - done);
      if (n <= 0) Crash("writing a memfd", "failed");
      done += static_cast<size_t>(n);
    }
  }
  ~MemFile() { close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  std::string path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_;
};

// Calls `f(line)` for each '\n'-terminated or final line of `text`.
template <class F>
void ForEachLine(std::string_view text, F&& f) {
  while (!text.empty()) {
    size_t nl = text.find('\n');
    f(text.substr(0, nl));
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

// A JSON document read with `from` (a Result-returning parser), written back with `to` and read
// again: crashes when the second read fails or `same` says the two differ. Returns what the first
// read gave (empty when the input is not JSON or `from` refused it), for further checks.
template <class From, class To, class Same>
auto CheckJsonRoundTrip(std::string_view text, From from, To to, Same same)
    -> decltype(from(nlohmann::json())) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return from(nlohmann::json());
  auto first = from(j);
  if (!first) return first;
  nlohmann::json stored = to(*first);
  auto again = from(nlohmann::json::parse(stored.dump()));
  if (!again) Crash("a manifest written back does not load", again.error().message);
  if (!same(*first, *again)) Crash("a manifest changes when written back", stored.dump());
  return first;
}

}  // namespace hearth::fuzz

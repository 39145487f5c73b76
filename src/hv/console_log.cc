#include "hv/console_log.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/text.h"

namespace hearth::hv {

Result<int64_t> CapLog(const std::filesystem::path& path, int64_t cap) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? Result<int64_t>(0) : Fail(Code::kInternal, strerror(errno));
  struct stat st {};
  fstat(fd, &st);
  int64_t size = st.st_size;
  int64_t data_start = lseek(fd, 0, SEEK_DATA);
  if (data_start < 0) data_start = size;
  Result<int64_t> result = 0;
  if (size - data_start > cap) {
    const int64_t block = st.st_blksize > 0 ? st.st_blksize : 4096;
    // Cut whole blocks from the head so that about cap/2 bytes of data remain.
    int64_t cut = (size - cap / 2) / block * block;
    if (cut > 0 && fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, cut) == 0) {
      result = cut;
    } else if (cut > 0) {
      // Not supported here (or the range is busy): punch a hole instead; the size stays.
      if (cut > data_start &&
          fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, cut) != 0) {
        result =
            Fail(Code::kInternal, fmt::format("capping {}: {}", path.string(), strerror(errno)));
      }
    }
  }
  ::close(fd);
  return result;
}

namespace {

// The last `max_bytes` of the open file (skipping holes), and in `end` the offset they end at.
std::string TailOf(int fd, int64_t max_bytes, int64_t& end) {
  struct stat st {};
  fstat(fd, &st);
  int64_t size = st.st_size;
  int64_t from = std::max<int64_t>(0, size - max_bytes);
  end = size;
  off_t data = lseek(fd, from, SEEK_DATA);
  if (data < 0) return "";
  from = std::max<int64_t>(from, data);
  std::string out(static_cast<size_t>(size - from), '\0');
  ssize_t n = pread(fd, out.data(), out.size(), from);
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  end = from + static_cast<int64_t>(out.size());
  return out;
}

}  // namespace

std::string ReadTail(const std::filesystem::path& path, int64_t max_bytes) {
  int64_t end = 0;
  return ReadTailAt(path, max_bytes, end);
}

std::string ReadTailAt(const std::filesystem::path& path, int64_t max_bytes, int64_t& end) {
  end = 0;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  std::string out = TailOf(fd, max_bytes, end);
  ::close(fd);
  return out;
}

std::string LastLines(const std::filesystem::path& path, int lines) {
  std::string tail = ReadTail(path, 4096);
  std::vector<std::string> found;
  size_t end = tail.size();
  while (end > 0 && static_cast<int>(found.size()) < lines) {
    size_t start = tail.rfind('\n', end - 1);
    size_t begin = start == std::string::npos ? 0 : start + 1;
    std::string line = tail.substr(begin, end - begin);
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
    if (line.starts_with(kLaunchMarker)) break;  // what came before is an earlier run's
    if (!line.empty()) found.push_back(EscapeText(line, {.max_bytes = kMaxTailLineBytes}));
    if (start == std::string::npos) break;
    end = start;
  }
  std::string out;
  for (auto it = found.rbegin(); it != found.rend(); ++it) {
    if (!out.empty()) out += " | ";
    out += *it;
  }
  return out;
}

Status StampLaunch(const std::filesystem::path& console_log, const std::filesystem::path& vmm_log,
                   std::string_view vm_name) {
  std::string stamp =
      fmt::format("{} {} at {}", kLaunchMarker, vm_name, FormatTime(SystemClock().Now()));
  if (auto s = AppendLine(console_log, stamp); !s) return s;
  return AppendLine(vmm_log, stamp);
}

Status AppendLine(const std::filesystem::path& path, std::string_view line) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Fail(Code::kInternal, fmt::format("opening {}: {}", path.string(), strerror(errno)));
  }
  std::string text = std::string(line) + "\n";
  ssize_t n = write(fd, text.data(), text.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) {
    return Fail(Code::kInternal, fmt::format("writing {}: {}", path.string(), strerror(err)));
  }
  return Ok();
}

namespace {

// Where WaitForConsole has read the console log to, and what it still looks at.
class ConsoleCursor {
 public:
  explicit ConsoleCursor(const ConsoleWatch& w) : w_(w) { Reposition(); }

  bool Found() const { return window_.find(w_.marker) != std::string::npos; }

  // Takes in what was appended since the last call, at most kMaxRead bytes of it. When the log
  // was capped meanwhile (its head cut off, the rest moved up), starts again from its tail.
  void Advance() {
    int fd = ::open(w_.console_log.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    if (!StillInPlace(fd)) {
      ::close(fd);
      Reposition();
      return;
    }
    char buf[8192];
    std::string fresh;
    for (ssize_t n; fresh.size() < kMaxRead && (n = pread(fd, buf, sizeof(buf), offset_)) > 0;
         offset_ += n) {
      fresh.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    if (fresh.empty()) return;
    // Keep a marker's length of overlap for split writes.
    if (window_.size() > w_.marker.size()) window_.erase(0, window_.size() - w_.marker.size());
    window_ += fresh;
  }

 private:
  static constexpr size_t kMaxRead = 1 << 20;

  // The window after the last launch marker in the log's tail, and the offset its end is at.
  void Reposition() {
    offset_ = 0;
    window_.clear();
    int fd = ::open(w_.console_log.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    std::string text = TailOf(fd, kDefaultLogCap * 2, offset_);
    ::close(fd);
    size_t from = text.rfind(kLaunchMarker);
    window_ = text.substr(from == std::string::npos ? 0 : from);
  }

  // Whether the bytes just before offset_ are still the last ones read (a cap moves them).
  bool StillInPlace(int fd) const {
    size_t n = std::min<size_t>(window_.size(), 64);
    if (n == 0) return true;
    std::string here(n, '\0');
    if (offset_ < static_cast<int64_t>(n)) return false;
    ssize_t got = pread(fd, here.data(), n, offset_ - static_cast<int64_t>(n));
    return got == static_cast<ssize_t>(n) && here == window_.substr(window_.size() - n);
  }

  const ConsoleWatch& w_;
  int64_t offset_ = 0;
  std::string window_;
};

}  // namespace

Status WaitForConsole(const ConsoleWatch& w, std::chrono::steady_clock::time_point deadline,
                      const std::atomic<bool>& cancel) {
  ConsoleCursor cursor(w);
  auto diagnosis = [&] { return w.diagnose ? w.diagnose() : std::string(); };
  for (;;) {
    if (cursor.Found()) return Ok();
    if (cancel.load()) {
      return Fail(Code::kFailedPrecondition, fmt::format("vm '{}': start cancelled", w.vm_name));
    }
    if (!IsAlive(w.process)) {
      return Fail(Code::kUnavailable,
                  fmt::format("vm '{}': {} (pid {}) exited before the guest was up{}", w.vm_name,
                              w.vmm, w.process.pid, diagnosis()));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return Fail(Code::kUnavailable, fmt::format("vm '{}': the guest did not report ready in "
                                                  "time{}",
                                                  w.vm_name, diagnosis()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    cursor.Advance();
  }
}

}  // namespace hearth::hv

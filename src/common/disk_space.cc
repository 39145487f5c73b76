#include "common/disk_space.h"

#include <fmt/format.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>

namespace hearth {
namespace {

constexpr std::string_view kDiskFullPhrase = "no space left on device for ";

}  // namespace

Result<DiskSpace> ReadDiskSpace(const std::filesystem::path& path) {
  struct statvfs st {};
  if (statvfs(path.c_str(), &st) != 0) {
    return Fail(Code::kUnavailable,
                fmt::format("reading the free space of {}: {}", path.string(), strerror(errno)));
  }
  auto unit = static_cast<int64_t>(st.f_frsize);
  return DiskSpace{static_cast<int64_t>(st.f_bfree) * unit,
                   static_cast<int64_t>(st.f_blocks) * unit};
}

bool IsDiskFullErrno(int err) { return err == ENOSPC || err == EDQUOT; }

std::string FormatBytes(int64_t bytes) {
  constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  auto v = static_cast<double>(bytes);
  int unit = 0;
  while (v >= 1024 && unit < 4) {
    v /= 1024;
    ++unit;
  }
  return fmt::format("{:.1f} {}", v, kUnits[unit]);
}

Error DiskFullError(std::string_view what, const std::filesystem::path& path) {
  // The directory, not the file: a file that could not be created has no space to read.
  std::filesystem::path probe = path;
  std::error_code ec;
  if (!std::filesystem::is_directory(probe, ec)) probe = probe.parent_path();
  if (probe.empty()) probe = ".";
  std::string space = "free space unknown";
  if (auto s = ReadDiskSpace(probe)) {
    space = fmt::format("{} free of {}", FormatBytes(s->free_bytes), FormatBytes(s->total_bytes));
  }
  return Error{Code::kResourceExhausted,
               fmt::format("{}: {}{} ({}); delete VMs (hearth vm rm) or free space on that "
                           "filesystem",
                           what, kDiskFullPhrase, path.string(), space)};
}

bool IsDiskFull(const Error& error) {
  return error.code == Code::kResourceExhausted &&
         error.message.find(kDiskFullPhrase) != std::string::npos;
}

int HttpStatusOf(const Error& error) { return IsDiskFull(error) ? 507 : HttpStatus(error.code); }

}  // namespace hearth

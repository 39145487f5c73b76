#include "store/disk_reserve.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

namespace hearth::store {

DiskReserve::DiskReserve(std::filesystem::path file, int64_t bytes, SpaceReader space)
    : file_(std::move(file)), bytes_(bytes), space_(std::move(space)) {}

std::filesystem::path DiskReserve::ReserveFileFor(const std::filesystem::path& db) {
  return std::filesystem::path(db.string() + ".reserve");
}

Status DiskReserve::Allocate() {
  int fd = open(file_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    int err = errno;
    if (IsDiskFullErrno(err)) return Fail(DiskFullError("creating the disk reserve", file_));
    return Fail(Code::kUnavailable,
                fmt::format("creating the disk reserve {}: {}", file_.string(), strerror(err)));
  }
  // Real blocks, not a sparse file: freeing them must give the store room.
  int err = posix_fallocate(fd, 0, bytes_);
  close(fd);
  if (err == 0) return Ok();
  unlink(file_.c_str());
  if (IsDiskFullErrno(err)) {
    return Fail(DiskFullError(
        fmt::format("allocating {} for the disk reserve", FormatBytes(bytes_)), file_));
  }
  return Fail(Code::kUnavailable,
              fmt::format("allocating the disk reserve {}: {}", file_.string(), strerror(err)));
}

Status DiskReserve::Ensure() {
  std::lock_guard lock(mu_);
  if (read_only_) return Ok();
  struct stat st {};
  if (stat(file_.c_str(), &st) == 0 && st.st_blocks * 512 >= bytes_) return Ok();
  auto s = Allocate();
  if (!s && IsDiskFull(s.error())) {
    read_only_ = s.error().message;
    spdlog::warn("read-only: {}", *read_only_);
    return Ok();
  }
  return s;
}

bool DiskReserve::EnterReadOnly(std::string_view why) {
  std::lock_guard lock(mu_);
  if (!read_only_) {
    read_only_ = std::string(why);
    spdlog::warn("read-only: {}; only deletes are accepted until there is room again", why);
  }
  std::error_code ec;
  bool removed = std::filesystem::remove(file_, ec);
  if (removed) spdlog::warn("freed the disk reserve {} ({})", file_.string(), FormatBytes(bytes_));
  return removed;
}

void DiskReserve::MaybeLeaveReadOnly(std::unique_lock<std::mutex>& lock) {
  (void)lock;
  if (!read_only_) return;
  auto space = space_(file_.parent_path());
  if (!space || space->free_bytes < LeaveBytes()) return;
  if (auto s = Allocate(); !s) {
    spdlog::warn("still read-only: {}", s.error().message);
    return;
  }
  spdlog::info("writable again: {} free on the store's filesystem; disk reserve {} restored",
               FormatBytes(space->free_bytes), file_.string());
  read_only_.reset();
}

std::optional<std::string> DiskReserve::ReadOnlyReason() {
  std::unique_lock lock(mu_);
  MaybeLeaveReadOnly(lock);
  return read_only_;
}

Status DiskReserve::CheckWritable(std::string_view action) {
  std::unique_lock lock(mu_);
  MaybeLeaveReadOnly(lock);
  if (!read_only_) return Ok();
  return Fail(DiskFullError(
      fmt::format("{}: the node is read-only because its disk filled up (deletes still work)",
                  action),
      file_.parent_path()));
}

}  // namespace hearth::store

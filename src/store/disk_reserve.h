// DiskReserve: room kept on the store's filesystem so that a node whose disk filled up still
// starts, answers reads and deletes VMs, and the node's read-only mode that goes with it.
//
// While writable, the file `<store>.reserve` holds `bytes` of allocated space. When the store
// finds the filesystem full (at open, or in a write), the node enters read-only mode: the
// reserve is deleted, which gives SQLite the room it needs on a full disk (measured on a full
// tmpfs: opening and reading needs 32 KiB for the -shm index, deleting a VM about 52 KiB of WAL),
// and writes that would take more space are refused (CheckWritable) while deletes go on and
// free the VMs' files. Read-only mode ends at the first check (CheckWritable, ReadOnlyReason)
// that finds room for the reserve and half as much again (LeaveBytes: 12 MiB by default), so that
// the room freeing the reserve gave back is not enough alone: the reserve is allocated anew.
// Thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "common/disk_space.h"
#include "common/result.h"

namespace hearth::store {

class DiskReserve {
 public:
  using SpaceReader = std::function<Result<DiskSpace>(const std::filesystem::path&)>;
  static constexpr int64_t kDefaultBytes = int64_t{8} << 20;

  // `file`: the reserve, on the store's filesystem (`ReserveFileFor`). `space` reads the free
  // space of the directory holding it (common/disk_space.h; a fake in tests).
  DiskReserve(std::filesystem::path file, int64_t bytes = kDefaultBytes,
              SpaceReader space = ReadDiskSpace);

  // `<store>.reserve` next to the SQLite database at `db`.
  static std::filesystem::path ReserveFileFor(const std::filesystem::path& db);

  // Allocates the reserve unless it is there or the node is read-only. A full disk is not an
  // error: the node enters read-only mode. Other I/O errors are.
  Status Ensure();
  // Enters read-only mode (if not in it) because of `why` and deletes the reserve. Returns true
  // if a reserve was deleted, i.e. there is more room than before.
  bool EnterReadOnly(std::string_view why);
  // nullopt while writable; else why the node is read-only. Leaves read-only mode first if
  // there is room again.
  std::optional<std::string> ReadOnlyReason();
  // Ok while writable (leaving read-only mode if there is room again); else a disk-full
  // resource_exhausted (HTTP 507) that names `action`, the path and the free space.
  Status CheckWritable(std::string_view action);

  const std::filesystem::path& file() const { return file_; }
  // The free bytes that end read-only mode: the reserve and half as much again.
  int64_t LeaveBytes() const { return bytes_ + bytes_ / 2; }

 private:
  // Leaves read-only mode if the filesystem has LeaveBytes free.
  void MaybeLeaveReadOnly(std::unique_lock<std::mutex>& lock);
  // Creates and allocates the reserve file; removes what it made on failure.
  Status Allocate();

  const std::filesystem::path file_;
  const int64_t bytes_;
  const SpaceReader space_;
  std::mutex mu_;
  std::optional<std::string> read_only_;  // why, while read-only
};

}  // namespace hearth::store

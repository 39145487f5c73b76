#include "snapshot/snapshot_dir.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "common/files.h"

namespace hearth::snapshot {

namespace fs = std::filesystem;

namespace {

int64_t AllocatedBytes(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<int64_t>(st.st_blocks) * 512;
}

Result<Manifest> ReadManifest(const fs::path& dir) {
  fs::path path = dir / kManifestFile;
  std::ifstream in(path);
  if (!in) return Fail(Code::kNotFound, fmt::format("no snapshot manifest at {}", path.string()));
  auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return Fail(Code::kFailedPrecondition, fmt::format("{} is not valid JSON", path.string()));
  }
  auto m = ManifestFromJson(j);
  if (!m) return Fail(m.error().Wrap(path.string()));
  return m;
}

}  // namespace

SnapshotDir::SnapshotDir(const Paths& paths, std::string_view vm_id)
    : vm_dir_(paths.vm_dir(vm_id)),
      current_(paths.snapshot_dir(vm_id)),
      staging_(paths.snapshot_staging(vm_id)),
      vm_id_(vm_id) {}

Status SnapshotDir::Begin() const {
  std::error_code ec;
  fs::remove_all(staging_, ec);
  fs::create_directories(staging_, ec);
  if (ec) {
    return Fail(Code::kInternal, fmt::format("creating {}: {}", staging_.string(), ec.message()));
  }
  return Ok();
}

Result<Manifest> SnapshotDir::Commit(Manifest manifest) const {
  manifest.vm_id = vm_id_;
  manifest.files.clear();
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(staging_, ec)) {
    if (!entry.is_regular_file()) continue;
    std::string name = entry.path().filename().string();
    if (name == kManifestFile) continue;
    auto sum = Sha256File(entry.path());
    if (!sum) return Fail(sum.error().Wrap("summing the snapshot"));
    manifest.files.push_back({name, static_cast<int64_t>(entry.file_size()), *sum});
  }
  if (ec)
    return Fail(Code::kInternal, fmt::format("listing {}: {}", staging_.string(), ec.message()));
  std::sort(manifest.files.begin(), manifest.files.end(),
            [](const FileSum& a, const FileSum& b) { return a.name < b.name; });
  if (!manifest.memory_file.empty()) {
    manifest.memory_bytes = static_cast<int64_t>(fs::file_size(vm_dir_ / manifest.memory_file, ec));
    if (ec) {
      return Fail(Code::kInternal,
                  fmt::format("the snapshot's RAM file {}: {}",
                              (vm_dir_ / manifest.memory_file).string(), ec.message()));
    }
  }
  if (auto s = WriteFileAtomically(staging_ / kManifestFile, ToJson(manifest).dump(2) + "\n"); !s) {
    return Fail(s.error().Wrap("writing the snapshot manifest"));
  }
  if (auto s = SwapIntoPlace(staging_, current_, /*sync=*/false); !s) return Fail(s.error());
  RemoveStaging();  // now the previous snapshot, if there was one
  return manifest;
}

Result<Manifest> SnapshotDir::Load() const {
  auto m = ReadManifest(current_);
  if (!m) return m;
  auto unusable = [&](std::string why) {
    return Fail(Code::kFailedPrecondition,
                fmt::format("the snapshot in {} cannot be restored: {}; start the VM with --fresh "
                            "to discard it and cold-boot",
                            current_.string(), why));
  };
  if (m->vm_id != vm_id_) return unusable(fmt::format("it belongs to VM id {}", m->vm_id));
  if (Consumed()) return unusable("a guest already ran on from it");
  for (const auto& f : m->files) {
    fs::path path = current_ / f.name;
    std::error_code ec;
    auto size = fs::file_size(path, ec);
    if (ec) return unusable(fmt::format("{}: {}", f.name, ec.message()));
    if (static_cast<int64_t>(size) != f.bytes) {
      return unusable(fmt::format("{} has {} bytes, the manifest says {}", f.name, size, f.bytes));
    }
    auto sum = Sha256File(path);
    if (!sum) return unusable(sum.error().message);
    if (*sum != f.sha256) return unusable(fmt::format("{} does not match its SHA-256", f.name));
  }
  if (!m->memory_file.empty()) {
    std::error_code ec;
    auto size = fs::file_size(vm_dir_ / m->memory_file, ec);
    if (ec) return unusable(fmt::format("RAM file {}: {}", m->memory_file, ec.message()));
    if (static_cast<int64_t>(size) != m->memory_bytes) {
      return unusable(fmt::format("RAM file {} has {} bytes, the manifest says {}", m->memory_file,
                                  size, m->memory_bytes));
    }
  }
  return m;
}

Result<Manifest> SnapshotDir::Sync(Timestamp taken_at) const {
  auto m = ReadManifest(current_);
  if (!m) return Fail(m.error());
  if (m->taken_at != taken_at || Consumed()) {
    return Fail(Code::kFailedPrecondition, "the snapshot was replaced or used meanwhile");
  }
  for (const auto& f : m->files) {
    if (auto s = FsyncPath(current_ / f.name); !s) return Fail(s.error());
  }
  for (const auto& path : {current_ / kManifestFile, current_, vm_dir_}) {
    if (auto s = FsyncPath(path); !s) return Fail(s.error());
  }
  // The snapshot holds no disk: what the guest wrote to it up to the pause may still be only in
  // the host's page cache (Firecracker flushes to it, not to the disk), and a synced snapshot must
  // not come back with an older disk.
  if (!m->origin.rootfs.empty()) {
    if (auto s = FsyncPath(m->origin.rootfs); !s) return Fail(s.error());
  }
  if (!m->memory_file.empty()) {
    fs::path memory = vm_dir_ / m->memory_file;
    int fd = ::open(memory.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Fail(Code::kInternal, fmt::format("opening {}", memory.string()));
    bool synced = ::fdatasync(fd) == 0;
    if (synced) ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
    if (!synced) return Fail(Code::kInternal, fmt::format("fdatasync {}", memory.string()));
  }
  return m;
}

Status SnapshotDir::MarkSynced(Manifest manifest) const {
  auto now = ReadManifest(current_);
  if (!now || now->taken_at != manifest.taken_at || Consumed()) {
    return Fail(Code::kFailedPrecondition, "the snapshot was replaced or used meanwhile");
  }
  manifest.synced = true;
  return WriteFileDurably(current_ / kManifestFile, ToJson(manifest).dump(2) + "\n");
}

Status SnapshotDir::MarkConsumed() const {
  return WriteFileAtomically(current_ / kConsumedFile, "");
}

bool SnapshotDir::Consumed() const {
  std::error_code ec;
  return fs::exists(current_ / kConsumedFile, ec);
}

void SnapshotDir::RemoveStaging() const {
  std::error_code ec;
  fs::remove_all(staging_, ec);
}

void SnapshotDir::Discard() const {
  RemoveStaging();
  std::error_code ec;
  fs::remove_all(current_, ec);
}

int64_t SnapshotDir::DiskBytes(const Manifest& manifest) const {
  int64_t bytes = AllocatedBytes(current_ / kManifestFile);
  for (const auto& f : manifest.files) bytes += AllocatedBytes(current_ / f.name);
  if (!manifest.memory_file.empty()) bytes += AllocatedBytes(vm_dir_ / manifest.memory_file);
  return bytes;
}

}  // namespace hearth::snapshot

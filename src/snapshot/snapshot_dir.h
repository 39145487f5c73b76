// The snapshot of one VM on disk (see common/paths.h): `snapshot/` holds the complete one,
// `snapshot.new/` the one being written. A new snapshot is written into the staging directory,
// its files summed, its manifest written last, and then swapped into place in one rename; the
// previous snapshot is removed only after that. A crash of any process at any point leaves either
// the previous or the new snapshot whole. Reaching the disk (fsync) is a separate, later step
// (MakeDurable), off the suspend path: until then a host crash may tear the new snapshot, which
// its manifest's sums and `synced` flag then reveal.
#pragma once

#include <filesystem>
#include <string_view>

#include "common/paths.h"
#include "common/result.h"
#include "snapshot/manifest.h"

namespace hearth::snapshot {

inline constexpr std::string_view kManifestFile = files::kManifest;
// Written into a snapshot just before the guest runs on from it: its RAM is then the running
// guest's, so the snapshot must never be restored again. Not fsynced: it guards against crashes of
// hearthd and the VMM; after a host reboot a resume that was under way counts as having used the
// snapshot (see Node::RecoverSnapshotTransition).
inline constexpr std::string_view kConsumedFile = "consumed";

class SnapshotDir {
 public:
  SnapshotDir(const Paths& paths, std::string_view vm_id);

  const std::filesystem::path& current() const { return current_; }
  const std::filesystem::path& staging() const { return staging_; }

  // Empties and creates the staging directory for a new snapshot.
  Status Begin() const;
  // Completes the staged snapshot: fills in the sums of its files, writes the manifest and swaps
  // it into place. Returns the manifest as written.
  Result<Manifest> Commit(Manifest manifest) const;
  // Reads the current snapshot and checks that it is whole: manifest, file sizes and sums, the
  // RAM file's size. not_found when there is none; failed_precondition when it cannot be used.
  Result<Manifest> Load() const;
  // Writes the current snapshot, if it is still the one taken at `taken_at`, to disk: its files,
  // directories and RAM file; then drops the RAM file from the page cache (the suspended VM holds
  // no host RAM). Slow (the RAM file); changes nothing. Returns the manifest for MarkSynced.
  Result<Manifest> Sync(Timestamp taken_at) const;
  // Records `synced` in the manifest of a synced snapshot unless it was used or replaced since.
  // Callers serialise it with Discard.
  Status MarkSynced(Manifest manifest) const;
  // The guest is about to run on from the current snapshot (see kConsumedFile).
  Status MarkConsumed() const;
  bool Consumed() const;
  // Removes the staging directory (an incomplete snapshot).
  void RemoveStaging() const;
  // Removes both directories.
  void Discard() const;
  // What the snapshot occupies on disk: its files and the RAM file, in allocated blocks.
  int64_t DiskBytes(const Manifest& manifest) const;

 private:
  std::filesystem::path vm_dir_;
  std::filesystem::path current_;
  std::filesystem::path staging_;
  std::string vm_id_;
};

}  // namespace hearth::snapshot

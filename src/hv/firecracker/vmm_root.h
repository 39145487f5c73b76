// Where one VM's Firecracker keeps its files, seen from hearthd and from Firecracker, and the one
// place that translates between the two. Without the jailer Firecracker sees host paths and its
// own files live in the VM's directory. With the jailer everything Firecracker opens must be
// inside its chroot, `<chroot base>/<firecracker binary name>/<vm id>/root`, and the paths in API
// calls are relative to that root:
//
//   <vm dir>/ (see common/paths.h)        or   <chroot base>/firecracker/<vm id>/root/
//   ├── firecracker.socket   the API socket (created by Firecracker; a stale one is removed first)
//   ├── firecracker.log      Firecracker's log (PUT /logger; recreated for each process)
//   ├── metrics.fifo         the metrics FIFO (PUT /metrics; hearthd keeps it drained)
//   ├── state.saving         a snapshot's device state being written (moved into the snapshot)
//   ├── memory.saving        a snapshot's guest RAM being written (renamed to <vm dir>/memory)
//   └── (jailed only) firecracker (the jailer's copy), dev/, and hard links of the kernel, initrd,
//       root disk and, for a restore, the snapshot's state and RAM file.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

#include "common/paths.h"
#include "common/result.h"

namespace hearth::hv::firecracker {

inline constexpr std::string_view kSocketName = files::kFirecrackerSocket;
inline constexpr std::string_view kLogName = files::kFirecrackerLog;
inline constexpr std::string_view kMetricsName = files::kFirecrackerMetrics;

struct JailConfig {
  std::filesystem::path jailer;       // the jailer binary; empty: no jail
  std::filesystem::path firecracker;  // absolute: the jailer copies it into the chroot
  uid_t uid = 0;
  gid_t gid = 0;
  std::filesystem::path chroot_base = "/srv/jailer";
};

class VmmRoot {
 public:
  // Firecracker runs unjailed: its files are in `vm_dir`.
  static VmmRoot Direct(std::filesystem::path vm_dir);
  // Firecracker runs in the jail of `vm_id`.
  static VmmRoot Jailed(const JailConfig& jail, std::string_view vm_id);

  bool jailed() const { return jailed_; }
  // The host directory of Firecracker's own files (the VM directory or the chroot root).
  const std::filesystem::path& dir() const { return dir_; }
  // File `name` of Firecracker's own: its path as Firecracker sees it, and on the host.
  std::string Vmm(std::string_view name) const;
  std::filesystem::path Host(std::string_view name) const;

  // Makes host file `source` visible to Firecracker under `name` and returns the path to give it.
  // Unjailed: `source` itself. Jailed: a hard link in the chroot (a copy when the chroot is on
  // another filesystem, only if `may_copy`: a copy of a disk would not keep the guest's writes),
  // given to the jail's uid:gid when `writable`, else made readable by its group.
  Result<std::string> Import(const std::filesystem::path& source, std::string_view name,
                             bool writable, bool may_copy) const;
  // Moves Firecracker's output file `name` to `target` (a rename, or copy and remove across
  // filesystems).
  Status Export(std::string_view name, const std::filesystem::path& target) const;
  // Prepares the directory for a new Firecracker process: creates it; jailed, first removes the
  // whole jail of the previous process (`<chroot base>/<binary>/<vm id>`).
  Status Reset() const;
  // Jailed: removes the jail (the VM is gone). Unjailed: nothing (the node removes the VM dir).
  void Remove() const;
  // Creates a file or FIFO of Firecracker's own, empty, owned by the jail's uid:gid when jailed.
  Status MakeFile(std::string_view name) const;
  Status MakeFifo(std::string_view name) const;

 private:
  bool jailed_ = false;
  std::filesystem::path dir_;
  std::filesystem::path jail_dir_;  // <chroot base>/<binary>/<vm id>
  uid_t uid_ = 0;
  gid_t gid_ = 0;
};

}  // namespace hearth::hv::firecracker

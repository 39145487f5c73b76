// A snapshot's manifest: what it was taken from and what it consists of. A snapshot is restored
// only into the machine it was taken from (same backend, hypervisor version and hardware), and only
// when its files are whole (sizes and SHA-256 sums match). Stored as manifest.json in the snapshot
// directory; written last, so a directory without one is incomplete.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/result.h"

namespace hearth::snapshot {

// Bumped when the layout or the meaning of a field changes; older formats are refused.
inline constexpr int kFormatVersion = 1;

// The machine a snapshot belongs to. Restoring into anything else would crash the guest or the
// VMM, so every field must match at restore time.
struct Origin {
  std::string backend;             // "qemu-tcg", "qemu-kvm", "firecracker"
  std::string hypervisor_version;  // as the VMM reports it
  int vcpus = 0;
  int64_t memory_mib = 0;
  std::string kernel;  // path and identity ("<path> (<bytes> bytes, modified <time>)")
  std::string initrd;
  std::string rootfs;  // path only: the disk's content changes while the guest runs
  std::string cmdline;
  std::string mac;
  // The host CPU (model/host.h HostCpuModel); empty in manifests written before it was recorded,
  // which are then not checked for it.
  std::string cpu_model;
  bool operator==(const Origin&) const = default;
};

struct FileSum {
  std::string name;  // in the snapshot directory
  int64_t bytes = 0;
  std::string sha256;
  bool operator==(const FileSum&) const = default;
};

struct Manifest {
  int format = kFormatVersion;
  std::string vm_id;
  int64_t vm_version = 0;  // the VM record's version when the snapshot was taken
  Timestamp taken_at;
  std::string host_boot_id;  // the host boot the snapshot was written in
  Origin origin;
  std::vector<FileSum> files;
  // Guest RAM kept outside the snapshot directory (QEMU's shared memory file), relative to the
  // VM directory; empty when the backend writes RAM into the snapshot itself.
  std::string memory_file;
  int64_t memory_bytes = 0;
  // Whether the snapshot (its files, the manifest and the RAM file) has reached the disk. It is
  // complete before that, and survives a crash of hearthd or the VMM, but not of the host: a
  // snapshot taken in an earlier host boot is restored only if synced.
  bool synced = false;
  bool operator==(const Manifest&) const = default;
};

nlohmann::json ToJson(const Manifest& m);
Result<Manifest> ManifestFromJson(const nlohmann::json& j);

// failed_precondition naming the first difference between the machine a snapshot was taken from
// and the one it would be restored into (both values), and offering a cold boot of VM `vm_name`.
Status CheckOrigin(const Origin& taken, const Origin& now, std::string_view vm_name = "NAME");

}  // namespace hearth::snapshot

// How QEMU is confined (README, "Confinement"): it runs as its VM's own unprivileged user
// (vmm_user.h), under QEMU's seccomp filter (`-sandbox`, see qemu_command.h), in a cgroup of its
// own with a memory limit and a CPU weight (cgroup.h). hearthd hands it the QMP socket, the tap and
// the snapshot's state file as descriptors; what QEMU opens by path itself is granted here: the
// files of its VM become its user's, the images it reads become readable by the shared group, and
// the directories above them traversable (mode 0710, group shared). Files outside the data
// directory (a --kernel of the user's) are left as they are, and checked.
//
// Plans are plain data, unit-tested; ApplyGrants does the chown/chmod.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"
#include "hv/cgroup.h"
#include "hv/driver.h"
#include "hv/qemu/qemu_command.h"
#include "hv/vmm_user.h"

namespace hearth::hv::qemu {

struct QemuConfinement {
  VmmUserRange users{.base = 0};           // base 0: QEMU runs as root, as hearthd
  std::filesystem::path data_dir;          // hearthd's data directory (grants stop there)
  CgroupHierarchy cgroups;                 // kNone: no cgroup
  gid_t kvm_gid = static_cast<gid_t>(-1);  // the group of /dev/kvm, added under KVM
};

// TCG's translation cache, fixed so that the memory limit can count it.
inline constexpr int64_t kTcgCacheMiB = 64;

// The cgroup memory limit of a VM's QEMU: the guest RAM (the page cache of the shared RAM file
// is charged to the cgroup that touches it) plus QEMU's own memory (libraries, heap, I/O buffers,
// page tables: 96 MiB and 1/64 of the guest RAM) plus, under TCG, the translation cache.
int64_t QemuMemoryLimitBytes(MiB guest, Accel accel);

struct Grant {
  enum class Kind {
    kTraverse,   // a directory: root:<shared gid>, mode 0710 (group may pass, not list)
    kShareRead,  // a file all VMs read: group <shared gid>, group-readable
    kOwn,        // a file of this VM's: <uid>:<gid>, mode 0600
  };
  std::filesystem::path path;
  Kind kind;
  bool operator==(const Grant&) const = default;
};

// What `spec`'s QEMU needs granted, in order (directories before what is in them). Only paths
// inside `data_dir` are granted.
std::vector<Grant> PlanGrants(const MachineSpec& spec, const std::filesystem::path& data_dir);
Status ApplyGrants(const std::vector<Grant>& grants, const VmmUser& user);

// OK when VMM users may pass through every directory above `data_dir` (world-executable, or
// group-executable for `users.base`), so that QEMU reaches what is granted inside. Otherwise
// failed_precondition naming the directory, its mode and the fixes. Always OK when users are off.
Status CheckDataDirReachable(const std::filesystem::path& data_dir, const VmmUserRange& users);

// The paths QEMU opens itself, with the access it needs (R_OK or R_OK|W_OK): the spawn checks
// them as QEMU's user so that a missing permission is reported with the path.
std::vector<std::pair<std::string, int>> QemuOpens(const MachineSpec& spec);

}  // namespace hearth::hv::qemu

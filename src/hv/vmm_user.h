// The unprivileged users VMM processes run as. Each VM gets a user and group of its own, uid = gid
// = base + slot (slot 1..count), so that an escaped VMM can neither open another VM's files (its
// RAM file, console log, agent FIFOs are 0600 and owned by that VM's user) nor ptrace or read the
// memory of another VMM. All of them also hold the shared group `base`, which may read what every
// VM reads (the images' kernels and initrds) and traverse the data directory.
//
// The slot is persistent without a store: it is the group of the VM's directory
// (<data-dir>/vms/<id>, root:<base+slot> mode 0710), chosen once as the lowest slot no other VM
// directory has. No passwd entry is needed: the ids are numbers, as with Firecracker's jailer.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

#include "common/result.h"

namespace hearth::hv {

struct VmmUserRange {
  uint32_t base = 0;  // 0: VMMs run as root (no per-VM user)
  uint32_t count = 65535;
  bool enabled() const { return base != 0; }
  bool Contains(gid_t id) const { return id > base && id - base <= count; }
};

// The default base: above the ranges Debian hands out to users, system users, systemd's dynamic
// users and /etc/subuid, and below 2^31 (some tools mishandle larger ids).
inline constexpr uint32_t kDefaultVmmIdBase = 1'900'000'000;

struct VmmUser {
  uid_t uid = 0;
  gid_t gid = 0;
  gid_t shared_gid = 0;
  bool operator==(const VmmUser&) const = default;
};

// The lowest slot's user not in `taken` (the groups of the other VM directories), or the one the
// VM already has (`current`, its directory's group, when inside the range).
// resource_exhausted when the range is full.
Result<VmmUser> ChooseVmmUser(const VmmUserRange& range, const std::vector<gid_t>& taken,
                              std::optional<gid_t> current);

// Reads the groups of the directories in `vms_dir` and gives `vm_dir` its user: the directory
// becomes root:<gid> mode 0710. Callers serialise calls for one data directory.
Result<VmmUser> AssignVmmUser(const VmmUserRange& range, const std::filesystem::path& vms_dir,
                              const std::filesystem::path& vm_dir);

}  // namespace hearth::hv

// Configuration checks, all made before anything touches the host. Each error is
// invalid_argument (or failed_precondition for state rules), names the field, the bad value and
// what is allowed.
#pragma once

#include <filesystem>
#include <optional>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/paths.h"
#include "common/result.h"
#include "model/host.h"
#include "model/vm.h"

namespace hearth {

inline constexpr int kMaxVcpus = 32;
inline constexpr int64_t kMinMemoryMib = 64;
inline constexpr size_t kMaxCmdline = 2048;  // x86 COMMAND_LINE_SIZE

struct ValidationContext {
  HostInfo host;
  const FileProbe* files = nullptr;
  const Paths* paths = nullptr;
  Timestamp now;
  // The node's other VMs, for conflicts (shared writable rootfs, published host ports).
  std::vector<const VmRecord*> others;
  // Where kernel, initrd and rootfs may be (hearthd --allowed-paths, canonical): a file must
  // resolve (symlinks, "..") to a path inside one of these; a block device must be listed itself.
  // Unset: anywhere. Either way, nothing under /proc or /sys, and none of hearth's own files
  // (everything under paths->data_dir() but its images/).
  std::optional<std::vector<std::filesystem::path>> allowed_paths;
  // Who holds host ports; null: published ports are not checked against host sockets.
  const PortHolders* ports = nullptr;
};

// The longest stop_after / idle_timeout: kMaxDuration (100 years).
inline constexpr Duration kMaxTimerDuration = kMaxDuration;

// Whether `path` is `dir` or inside it, comparing whole components of normalised paths.
bool IsWithin(const std::filesystem::path& path, const std::filesystem::path& dir);

// A VM name is a DNS label: 1-63 of [a-z0-9-], starting with a letter, not ending with '-'.
Status ValidateName(std::string_view name);

// A label, as Kubernetes has them: the key 1-63 characters of a-z, A-Z, 0-9, '.', '_', '-' and
// '/', starting and ending with a letter or digit; the value at most 63 characters of a-z, A-Z,
// 0-9, '.', '_' and '-' (empty is allowed). A VM has at most kMaxLabels.
inline constexpr size_t kMaxLabels = 32;
Status ValidateLabel(std::string_view key, std::string_view value);

// Checks a whole spec. `previous` is the spec an edit starts from (null on create): timers that
// did not change are not re-checked against the clock, so an old stop_at does not block edits.
Status ValidateSpec(const VmSpec& spec, const ValidationContext& ctx,
                    const VmSpec* previous = nullptr);

// Checks that a VM in `current.state` may change from current.spec to `next`. Hardware fields
// (vcpus, memory, kernel, disks, cmdline, image, publish) change only while the VM has no
// process; on a suspended VM they would make the saved state unrestorable unless
// `discard_state`. Nothing may change while a transition is under way.
Status CheckEditAllowed(const VmRecord& current, const VmSpec& next, bool discard_state);

// The names of the spec fields that differ, in API spelling (for events and rules).
std::vector<std::string> ChangedFields(const VmSpec& a, const VmSpec& b);

}  // namespace hearth

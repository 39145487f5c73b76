// Whether this host can run Firecracker, with errors that say where hearthd looked and what to do:
// the binaries (`--firecracker`, `--jailer`, or found in PATH) and KVM.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "common/result.h"

namespace hearth::hv::firecracker {

// The absolute path of executable `configured` (a path, or a name looked up in `path_env`, the
// PATH). failed_precondition naming `flag`, the places searched and how to fix it.
Result<std::filesystem::path> FindExecutable(std::string_view configured,
                                             std::string_view default_name, std::string_view flag,
                                             std::string_view path_env);

// OK when /dev/kvm can be opened read-write (Firecracker needs it); else failed_precondition
// saying why and what to do. This does not prove that KVM boots a guest (see qemu/kvm_probe.h).
Status CheckKvmDevice(const std::filesystem::path& device = "/dev/kvm");

}  // namespace hearth::hv::firecracker

// From a VM record to what the hypervisor driver runs: the image resolved into kernel, initrd and
// base command line, the network (tap, MAC, addresses) and the VM's runtime paths.
#pragma once

#include <optional>

#include "common/paths.h"
#include "hv/driver.h"
#include "model/vm.h"
#include "net/address_pool.h"

namespace hearth::node {

// The base kernel command line for a VM that boots its own kernel (no image): the serial console,
// and a panic ends the VM (the VMM then exits and the restart policy applies).
inline constexpr std::string_view kDefaultCmdline = "console=ttyS0 panic=1";

// The VMM program a backend runs, for messages: "qemu" (qemu-tcg, qemu-kvm), "firecracker", or
// "VMM" when the backend is not known.
std::string_view VmmProgram(std::string_view backend);

struct MachineContext {
  const Paths* paths = nullptr;
  const net::AddressPool* pool = nullptr;  // null: VMs get no network
  int64_t tsc_khz = 0;
};

// failed_precondition when the image is gone or unreadable, or the VM's address does not belong
// to the pool (the pool was changed under existing VMs).
Result<hv::MachineSpec> MachineFor(const VmRecord& vm, const MachineContext& ctx);

}  // namespace hearth::node

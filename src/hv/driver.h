// The seam between the node and a hypervisor. A driver starts one VMM process per VM, tells when
// its guest is up, re-adopts VMMs that outlived a previous hearthd, and ends them; it keeps no
// state beyond what a MachineSpec and a ProcessId carry. Exits are the node's (supervisor.h).
// Drivers: QEMU (qemu/qemu_driver.h), Firecracker (firecracker/firecracker_driver.h), the node
// tests' fake; tests/support/driver_contract.h checks each one against the comments below.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "common/paths.h"
#include "common/result.h"
#include "hv/process.h"
#include "model/vm.h"

namespace hearth::hv {

// Everything needed to run one VM, resolved by the node (image, network, paths).
struct MachineSpec {
  std::string vm_id;
  std::string name;
  int vcpus = 1;
  MiB memory;
  std::string kernel;  // ELF vmlinux
  std::string initrd;
  std::string rootfs;
  bool rootfs_readonly = false;
  std::string cmdline;  // the complete kernel command line
  std::string tap;      // the VM's tap; empty: no network
  std::string mac;      // the guest's MAC on that tap
  int tap_fd = -1;      // an open fd of that tap to hand to the VMM instead of its name, or -1
  // For a driver that opens the tap by name (!TakesTapFd()): closes what hearthd holds of the tap
  // (the waker's fd of a sleeping VM) so that the VMM can attach; Restore calls it right before
  // the load. Empty: hearthd holds nothing.
  std::function<void()> release_tap;
  // Runtime files, all in the VM's directory (see UseLayout).
  std::filesystem::path vm_dir;
  std::filesystem::path console_log;
  std::filesystem::path vmm_log;
  std::filesystem::path memory_file;  // guest RAM
  std::filesystem::path qmp_socket;   // the VMM's control socket
  std::filesystem::path agent_pipe;   // the guest agent's channel (prefix of .in/.out)
};

// Points the runtime files of `spec` at VM `vm_id`'s directory in the data-dir layout.
inline void UseLayout(MachineSpec& spec, const Paths& paths, std::string_view vm_id) {
  spec.vm_dir = paths.vm_dir(vm_id);
  spec.console_log = paths.console_log(vm_id);
  spec.vmm_log = paths.vmm_log(vm_id);
  spec.memory_file = paths.memory_file(vm_id);
  spec.qmp_socket = paths.qmp_socket(vm_id);
  spec.agent_pipe = paths.agent_pipe(vm_id);
}

// A spec with only the VM's identity and runtime files: enough to meter or forget its VMM.
inline MachineSpec RuntimeSpec(const Paths& paths, std::string_view vm_id, std::string_view name) {
  MachineSpec spec;
  spec.vm_id = vm_id;
  spec.name = name;
  UseLayout(spec, paths, vm_id);
  return spec;
}

struct BackendInfo {
  std::string backend;
  std::string note;
};

// The guest's disk I/O since its VMM started, summed over its disks (metering).
struct DiskCounters {
  int64_t read_bytes = 0;
  int64_t write_bytes = 0;
  int64_t read_ops = 0;
  int64_t write_ops = 0;
  bool operator==(const DiskCounters&) const = default;
};

// What a caller can use to give up waiting (a stop or delete request during a start).
using CancelFlag = std::atomic<bool>;

class HypervisorDriver {
 public:
  virtual ~HypervisorDriver() = default;

  // "qemu-kvm", "qemu-tcg", "firecracker": what VMs started now run on. May block until the
  // driver has decided (e.g. the KVM probe).
  virtual std::string Backend() = 0;
  // Without blocking: the backend (empty while still deciding) and why it was chosen, e.g. why
  // KVM is not used (shown in GET /v1/node).
  virtual BackendInfo Peek() = 0;

  // Whether the VMM can take MachineSpec::tap_fd. A driver that cannot (Firecracker opens the tap
  // by name, and attaching fails with EBUSY while hearthd holds it) gets no tap_fd from the node
  // and calls MachineSpec::release_tap right before it attaches.
  virtual bool TakesTapFd() const { return true; }
  // The VM was deleted: drops what the driver keeps for it outside the VM's directory (e.g.
  // Firecracker's jail). Its VMM has ended.
  virtual void Forget(const MachineSpec& spec) {}
  // A VMM this driver started or adopted has exited (called from the supervisor's thread, must
  // not block): drops what the driver set up for that process alone (e.g. its cgroup).
  virtual void Exited(const ProcessId& process) {}

  // Starts the VMM; returns once it runs, not when the guest is up. No vCPU/RAM: invalid_argument.
  virtual Result<ProcessId> Launch(const MachineSpec& spec) = 0;
  // Waits until the guest is up (it printed its ready marker), or fails when `deadline` passes, or
  // at once when the process exits or `cancel` is set. Reads the console log from its start.
  virtual Status WaitReady(const MachineSpec& spec, const ProcessId& process,
                           std::chrono::steady_clock::time_point deadline,
                           const CancelFlag& cancel) = 0;
  // Checks that `process` is alive, is this VM's VMM (else not_found) and answers on its socket.
  virtual Status Adopt(const MachineSpec& spec, const ProcessId& process) = 0;
  // Asks the guest to power off (ACPI power button). Does not wait; an obeying guest ends the VMM.
  virtual Status RequestShutdown(const MachineSpec& spec, const ProcessId& process) = 0;
  // --- Snapshots. The node drives the steps so that a failure or a crash at any of them leaves
  // either the guest running or a complete snapshot (see snapshot/snapshot_dir.h).
  // Pauses the guest and writes the VMM's state into directory `dir` (complete, not fsynced:
  // the node makes the snapshot durable after the VM is suspended). The VMM
  // stays, paused: the node completes the snapshot and then ends it, or lets the guest run on.
  // Returns the file holding guest RAM when it is kept outside `dir` (QEMU's memory file), else
  // an empty path.
  virtual Result<std::filesystem::path> SaveState(const MachineSpec& spec, const ProcessId& process,
                                                  const std::filesystem::path& dir) = 0;
  // Lets a paused guest run on (after SaveState).
  virtual Status Continue(const MachineSpec& spec, const ProcessId& process) = 0;
  // Starts a VMM that loads the snapshot in `dir` and calls `before_running` once, with that VMM,
  // while the guest is still paused; if that succeeds, lets the same guest run on, returns the VMM.
  // On any failure (no snapshot, a failed load, before_running's error) the new VMM is ended.
  virtual Result<ProcessId> Restore(
      const MachineSpec& spec, const std::filesystem::path& dir,
      const std::function<Status(const ProcessId&)>& before_running) = 0;
  // Puts the guest's wall clock right after a restore (it stood still while suspended).
  virtual Status SyncClock(const MachineSpec& spec, const ProcessId& process) = 0;
  // The hypervisor's version as it reports it; a snapshot records it and is restored only by the
  // same version.
  virtual Result<std::string> Version() = 0;
  // Ends the VMM at once (SIGKILL). Does not wait. Succeeds for an exited process (idempotent).
  virtual Status Kill(const ProcessId& process) = 0;
  // The VMM's own view of the VM, e.g. {"status": "running"}; for diagnostics.
  virtual Result<std::string> Describe(const MachineSpec& spec, const ProcessId& process) = 0;

  // --- Metering: what the backend can tell beyond /proc. Called about once per metering
  // interval per VM, so cheap; the defaults know nothing. Only `vm_id`, `name` and the runtime
  // paths of `spec` are used (UseLayout).
  // The host thread ids of the guest's vCPUs, in vCPU order; empty when the backend cannot tell.
  virtual Result<std::vector<int64_t>> VcpuThreads(const MachineSpec& spec,
                                                   const ProcessId& process) {
    return std::vector<int64_t>{};
  }
  // The guest's disk I/O (zeros without disks, or when the backend cannot tell).
  virtual Result<DiskCounters> Disks(const MachineSpec& spec, const ProcessId& process) {
    return DiskCounters{};
  }
};

}  // namespace hearth::hv

// The QEMU driver: one qemu-system-x86_64 per VM (microvm, see qemu_command.h), controlled over
// its QMP socket in the VM's directory, each operation a flow of QMP calls built by qmp_calls.h
// and run on a QmpChannel (qmp_channel.h). The guest is up when its console shows the default
// image's ready marker after the line this driver writes at each launch.
#pragma once

#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "common/paths.h"
#include "hv/driver.h"
#include "hv/qemu/qemu_command.h"
#include "hv/qemu/qemu_confinement.h"
#include "hv/qemu/qmp_channel.h"
#include "hv/version_cache.h"

namespace hearth::hv::qemu {

class QmpListener;

// Which accelerator to use and why (KVM only after a real boot under it succeeded).
struct AccelChoice {
  Accel accel = Accel::kTcg;
  std::string note;
};

struct QemuDriverOptions {
  std::string binary = "qemu-system-x86_64";
  // Decides the accelerator; may block (the first call waits for the KVM probe).
  std::function<AccelChoice()> accel;
  // The same without blocking: nullopt while undecided.
  std::function<std::optional<AccelChoice>()> peek_accel;
  // Who QEMU runs as and in which cgroup (qemu_confinement.h); the default confines nothing
  // beyond QEMU's seccomp filter. hearthd confines (README, "Confinement").
  QemuConfinement confinement;
  // How the driver reaches a VM's QMP socket; empty: QmpClient (tests script a fake QEMU).
  QmpConnector qmp;
};

class QemuDriver final : public HypervisorDriver {
 public:
  explicit QemuDriver(QemuDriverOptions options);

  std::string Backend() override;
  BackendInfo Peek() override;
  Result<ProcessId> Launch(const MachineSpec& spec) override;
  Status WaitReady(const MachineSpec& spec, const ProcessId& process,
                   std::chrono::steady_clock::time_point deadline,
                   const CancelFlag& cancel) override;
  Status Adopt(const MachineSpec& spec, const ProcessId& process) override;
  Status RequestShutdown(const MachineSpec& spec, const ProcessId& process) override;
  Status Kill(const ProcessId& process) override;
  Result<std::string> Describe(const MachineSpec& spec, const ProcessId& process) override;
  // Removes the cgroups of the VMM that exited.
  void Exited(const ProcessId& process) override;

  // The configuration Launch runs (for tests and the benchmark's hand-run comparison).
  QemuConfig ConfigFor(const MachineSpec& spec, Accel accel) const;

  // Guest RAM stays in the shared memory file; only the device state is migrated (capability
  // x-ignore-shared on both sides): `stop`, then `migrate fd:` into dir/state.part, which hearthd
  // opened and handed over with `getfd`, named dir/state once QEMU's MIGRATION event says
  // `completed`.
  Result<std::filesystem::path> SaveState(const MachineSpec& spec, const ProcessId& process,
                                          const std::filesystem::path& dir) override;
  Status Continue(const MachineSpec& spec, const ProcessId& process) override;
  // The same command line plus `-incoming defer`, `migrate-incoming fd:` from dir/state (handed
  // over with `getfd`), `before_running` once it is loaded, then `cont` on the same QMP
  // connection.
  Result<ProcessId> Restore(const MachineSpec& spec, const std::filesystem::path& dir,
                            const std::function<Status(const ProcessId&)>& before_running) override;
  // Through the guest agent in the default image ("settime"). A later SyncClock of the same VM
  // (suspended and resumed again meanwhile) takes over from an earlier one still waiting.
  Status SyncClock(const MachineSpec& spec, const ProcessId& process) override;
  // The VM is deleted: its clock bookkeeping and its cgroups go.
  void Forget(const MachineSpec& spec) override;
  // The first line of `qemu-system-x86_64 --version`.
  Result<std::string> Version() override;
  // Metering, over QMP (qemu_driver_stats.cc): query-cpus-fast, query-blockstats.
  Result<std::vector<int64_t>> VcpuThreads(const MachineSpec& spec,
                                           const ProcessId& process) override;
  Result<DiskCounters> Disks(const MachineSpec& spec, const ProcessId& process) override;

 private:
  // Makes `spec`'s files QEMU's (its VM's user) and its cgroups, and fills in how the spawn
  // confines the process. `cgroup_fds` are to be closed after the spawn.
  Result<SpawnOptions> Confine(const MachineSpec& spec, Accel accel, const QmpListener& qmp);
  // Spawns `argv` confined; on success remembers the process's VM for Exited. The process joins
  // its cgroups before exec, or, given `join_later`, from a thread started here whose result
  // that future gives (the caller waits for it before the guest runs).
  Result<ProcessId> SpawnConfined(const MachineSpec& spec, Accel accel,
                                  const std::vector<std::string>& argv, const QmpListener& qmp,
                                  std::future<Status>* join_later = nullptr);
  CgroupPlan CgroupsOf(std::string_view vm_id, MiB memory, int vcpus, Accel accel) const;
  // The VM's QMP channel; errors say what it was for.
  Result<std::unique_ptr<QmpChannel>> Qmp(const MachineSpec& spec, std::string_view what,
                                          std::chrono::milliseconds timeout) const;
  // Runs the save flow into `partial`; on failure, its abort flow.
  Status RunSave(const MachineSpec& spec, QmpChannel& qmp, const std::filesystem::path& partial);

  QemuDriverOptions options_;
  std::mutex users_mu_;  // one VM directory at a time picks its user
  std::mutex vmm_mu_;
  std::map<int64_t, std::string> vmm_vm_;  // VM id by the pid of its running QEMU
  std::mutex clock_mu_;
  std::map<std::string, uint64_t> clock_requests_;  // per VM id: the latest SyncClock
  VersionCache version_;
};

// The device state's file in a snapshot directory.
inline constexpr std::string_view kStateFile = files::kSnapshotState;

}  // namespace hearth::hv::qemu

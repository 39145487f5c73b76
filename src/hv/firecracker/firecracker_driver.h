// The Firecracker driver: one `firecracker` process per VM (or `jailer` exec-ing it, when
// configured), configured over its API socket in the order the v1.16.1 API requires (see
// api_calls.h), each request waiting for its answer. The guest's serial console is Firecracker's
// stdout (appended to the console log), its stderr goes to the VMM log, its own log to
// firecracker.log and its metrics into a FIFO that a MetricsReader keeps drained (see
// vmm_root.h for where these files are).
//
// Snapshots: PATCH /vm Paused, PUT /snapshot/create (Full) writing the device state and a new RAM
// file, which is renamed over <vm dir>/memory; the RAM file a running restored guest was loaded
// from is mapped MAP_PRIVATE and must never change, so a snapshot never writes into it: the rename
// leaves the old inode to the old process. Restore is a fresh process: logger, metrics,
// PUT /snapshot/load (File backend, clock_realtime, the same tap by name) and PATCH /vm Resumed
// after the node's before_running. The guest clock is set by clock_realtime at the load, so
// SyncClock has nothing to do.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include "hv/driver.h"
#include "hv/firecracker/api_calls.h"
#include "hv/firecracker/api_transport.h"
#include "hv/firecracker/metrics_reader.h"
#include "hv/firecracker/vmm_root.h"
#include "hv/version_cache.h"

namespace hearth::hv::firecracker {

struct FirecrackerDriverOptions {
  std::filesystem::path binary;  // the firecracker binary, absolute
  JailConfig jail;               // jail.jailer empty: Firecracker runs unjailed, as hearthd's user
  // How long Firecracker has to create its API socket after exec.
  std::chrono::milliseconds socket_timeout = std::chrono::seconds(5);
  // The transport to a VM's API socket (tests inject a fake); default: UnixSocketTransport.
  std::function<std::unique_ptr<ApiTransport>(const std::filesystem::path& socket)> transport;
};

class FirecrackerDriver final : public HypervisorDriver {
 public:
  explicit FirecrackerDriver(FirecrackerDriverOptions options);

  std::string Backend() override { return "firecracker"; }
  BackendInfo Peek() override;
  bool TakesTapFd() const override { return false; }
  void Forget(const MachineSpec& spec) override;
  Result<ProcessId> Launch(const MachineSpec& spec) override;
  // The default image's ready marker on the console after this launch's marker line.
  Status WaitReady(const MachineSpec& spec, const ProcessId& process,
                   std::chrono::steady_clock::time_point deadline,
                   const CancelFlag& cancel) override;
  // Alive, started with this VM's --id, and GET / answers with that id.
  Status Adopt(const MachineSpec& spec, const ProcessId& process) override;
  // SendCtrlAltDel. With reboot=k on the command line, the guest's reset ends Firecracker.
  Status RequestShutdown(const MachineSpec& spec, const ProcessId& process) override;
  Result<std::filesystem::path> SaveState(const MachineSpec& spec, const ProcessId& process,
                                          const std::filesystem::path& dir) override;
  Status Continue(const MachineSpec& spec, const ProcessId& process) override;
  Result<ProcessId> Restore(const MachineSpec& spec, const std::filesystem::path& dir,
                            const std::function<Status(const ProcessId&)>& before_running) override;
  // The clock needs nothing: the load passed clock_realtime (kvmclock advanced by the time
  // asleep), and a cold boot reads it from the host through kvmclock. Called off the resume path
  // of a restored process, it logs the load latency Firecracker measured; after a boot it sends
  // nothing.
  Status SyncClock(const MachineSpec& spec, const ProcessId& process) override;
  // The first line of `firecracker --version`, e.g. "Firecracker v1.16.1" (cached).
  Result<std::string> Version() override;
  Status Kill(const ProcessId& process) override;
  // {"instance": GET / answer, "metrics": summed metrics with snapshot latencies}.
  Result<std::string> Describe(const MachineSpec& spec, const ProcessId& process) override;
  // Threads named "fc_vcpu N" in /proc/<pid>/task/*/comm.
  Result<std::vector<int64_t>> VcpuThreads(const MachineSpec& spec,
                                           const ProcessId& process) override;
  // From the metrics (FlushMetrics first, so they are current).
  Result<DiskCounters> Disks(const MachineSpec& spec, const ProcessId& process) override;

  // What Launch runs: firecracker, or jailer with firecracker's arguments after "--".
  std::vector<std::string> Argv(const MachineSpec& spec) const;
  VmmRoot RootFor(const MachineSpec& spec) const;
  // The summed metrics of the VM's current Firecracker process.
  Result<MetricsTotals> Metrics(const MachineSpec& spec);

 private:
  std::unique_ptr<ApiTransport> Transport(const VmmRoot& root) const;
  // Files and host set-up before a process starts; returns the jail-relative paths via `root`.
  Status Prepare(const MachineSpec& spec, const VmmRoot& root);
  Result<ProcessId> Start(const MachineSpec& spec, const VmmRoot& root, std::string_view what);
  // Ends a process that failed to come up; returns `error` with what its logs say.
  Error Abandon(const MachineSpec& spec, const VmmRoot& root, const ProcessId& process,
                const Error& error);
  std::string Diagnose(const MachineSpec& spec, const VmmRoot& root) const;
  // Flushes the metrics and logs the snapshot latency in `field` (best effort).
  void LogLatency(const MachineSpec& spec, ApiTransport& transport, std::string_view what,
                  int64_t MetricsTotals::*field);
  // Keeps the VM's metrics FIFO drained (attached once per process).
  Status EnsureMetrics(const MachineSpec& spec);
  // Right before Firecracker attaches to the tap by name: hearthd lets go of it, and a jailed
  // Firecracker is given it.
  Status HandOverTap(const MachineSpec& spec, const VmmRoot& root);

  FirecrackerDriverOptions options_;
  MetricsReader metrics_;
  VersionCache version_;
  // Processes Restore made whose SyncClock is still to come (pid, start time).
  std::mutex restored_mu_;
  std::set<std::pair<int64_t, uint64_t>> restored_;
};

// The device state's file in a snapshot directory.
inline constexpr std::string_view kStateFile = "state";

}  // namespace hearth::hv::firecracker

// The snapshot half of Node: suspend and resume, and taking over a suspend or resume that a
// restart of hearthd cut short. The steps are ordered so that at every point either the guest can
// run on or a complete snapshot exists (see snapshot/snapshot_dir.h):
//   suspend: pause + save into snapshot.new/ → sum, manifest, swap into snapshot/ → end the VMM
//            (a failure before the swap lets the paused guest run on);
//   resume:  check the snapshot → restore paused → mark it consumed → run → clock, discard.
#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fault.h"
#include "model/host.h"
#include "net/wake.h"
#include "node/node.h"
#include "snapshot/snapshot_dir.h"

namespace hearth::node {
namespace {

using namespace std::chrono_literals;

// A file's path with what identifies its content ("<path> (<bytes> bytes, modified <time>)").
std::string Identity(const std::string& path) {
  if (path.empty()) return "";
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return path + " (missing)";
  return fmt::format("{} ({} bytes, modified {}.{:09d})", path, st.st_size, st.st_mtim.tv_sec,
                     st.st_mtim.tv_nsec);
}

// Where a suspend's time went, for `vm events` and metering.
std::map<std::string, double> SuspendMeasures(HostSystem::SteadyTime begun,
                                              HostSystem::SteadyTime saved,
                                              HostSystem::SteadyTime committed,
                                              HostSystem::SteadyTime ended, int64_t bytes) {
  return {{"latency_ms", Millis(ended - begun)},
          {"save_ms", Millis(saved - begun)},
          {"complete_ms", Millis(committed - saved)},
          {"end_ms", Millis(ended - committed)},
          {"bytes", static_cast<double>(bytes)}};
}

snapshot::Origin OriginOf(const hv::MachineSpec& m, std::string backend, std::string version,
                          std::string cpu_model) {
  snapshot::Origin o;
  o.backend = std::move(backend);
  o.hypervisor_version = std::move(version);
  o.cpu_model = std::move(cpu_model);
  o.vcpus = m.vcpus;
  o.memory_mib = m.memory.value;
  o.kernel = Identity(m.kernel);
  o.initrd = Identity(m.initrd);
  o.rootfs = m.rootfs;
  o.cmdline = m.cmdline;
  o.mac = m.mac;
  return o;
}

}  // namespace

void Node::Fault(std::string_view point, const hv::ProcessId* vmm) {
  switch (FaultAt(point)) {
    case FaultAction::kNone:
      return;
    case FaultAction::kExit:
      spdlog::critical("fault injection: exiting at {}", point);
      ::_exit(86);
    case FaultAction::kKillVmm:
      if (!vmm) return;
      spdlog::critical("fault injection: killing pid {} at {}", vmm->pid, point);
      machinery_.driver->Kill(*vmm);
      system_.WaitForExit(*vmm, 5s);
      return;
  }
}

Result<snapshot::Manifest> Node::CheckSnapshot(const VmRecord& vm, const hv::MachineSpec& machine,
                                               const std::string& backend) {
  snapshot::SnapshotDir dir(paths_, vm.id);
  auto m = dir.Load();
  if (!m) {
    if (m.error().code == Code::kNotFound) {
      return Fail(Code::kFailedPrecondition,
                  fmt::format("vm '{}' has no snapshot on disk ({}); start it with --fresh to "
                              "cold-boot",
                              vm.name, m.error().message));
    }
    return Fail(m.error());
  }
  if (vm.snapshot && m->taken_at != vm.snapshot->taken_at) {
    return Fail(Code::kFailedPrecondition,
                fmt::format("the snapshot on disk was taken at {}, not at {} as recorded; start "
                            "the VM with --fresh to cold-boot",
                            FormatTime(m->taken_at), FormatTime(vm.snapshot->taken_at)));
  }
  if (!m->synced && m->host_boot_id != system_.BootId()) {
    return Fail(Code::kFailedPrecondition,
                "the host restarted before the snapshot's RAM reached the disk, so it may be "
                "torn; start the VM with --fresh to cold-boot");
  }
  auto version = machinery_.driver->Version();
  if (!version) return Fail(version.error().Wrap("asking the hypervisor's version"));
  if (auto s = snapshot::CheckOrigin(
          m->origin, OriginOf(machine, backend, *version, system_.CpuModel()), vm.name);
      !s) {
    return Fail(s.error().Wrap(fmt::format("vm '{}'", vm.name)));
  }
  return m;
}

void Node::DiscardSavedState(const VmRecord& vm) {
  std::lock_guard files(snapshot_files_mu_);
  snapshot::SnapshotDir(paths_, vm.id).Discard();
}

void Node::SyncSnapshotLater(const std::string& vm_id, Timestamp taken_at) {
  Spawn([this, dir = snapshot::SnapshotDir(paths_, vm_id), taken_at] {
    // A VM woken soon after it slept has no use for its RAM on disk, and writing it back would
    // slow that very wake (every fsync waits for the writeback, ext4 data=ordered). So the sync
    // waits a little, or until hearthd stops; until it is done the snapshot is restorable on this
    // boot of the host only.
    {
      std::unique_lock lock(mu_);
      system_.WaitUntil(changed_, lock, system_.SteadyNow() + options_.snapshot_sync_delay,
                        [this] { return shutting_down_; });
    }
    // Fails harmlessly when the VM was resumed or discarded meanwhile.
    auto synced = dir.Sync(taken_at);
    std::lock_guard files(snapshot_files_mu_);
    if (Status s = synced ? dir.MarkSynced(*synced) : Status(Fail(synced.error())); !s) {
      spdlog::debug("{}: not synced: {}", dir.current().string(), s.error().message);
    }
  });
}

void Node::RunSuspend(const std::string& name) {
  std::unique_lock lock(mu_);
  const VmRecord* found = OwnedVm(lock, name, VmState::kSuspending);
  if (!found) return;
  VmRecord vm = *found;
  auto machine = Machine(vm);
  if (!machine || !vm.pid) {
    std::string why =
        "suspend failed: " + (machine ? "no process recorded" : machine.error().message);
    EndProcess(lock, vm, /*graceful=*/false);
    Settle(lock, name, VmEvent::kFailed, "failed", why, why);
    return;
  }
  hv::ProcessId process{*vm.pid, vm.pid_start};
  lock.unlock();
  auto t0 = system_.SteadyNow();
  snapshot::SnapshotDir dir(paths_, vm.id);
  Result<snapshot::Manifest> committed = Fail(Code::kInternal, "not taken");
  Status begun = dir.Begin();
  Result<std::filesystem::path> memory =
      begun ? machinery_.driver->SaveState(*machine, process, dir.staging())
            : Result<std::filesystem::path>(Fail(begun.error()));
  auto t_saved = system_.SteadyNow();
  Fault("suspend-saved", &process);
  if (memory) {
    auto version = machinery_.driver->Version();
    snapshot::Manifest manifest;
    manifest.vm_version = vm.version;
    manifest.taken_at = clock_.Now();
    manifest.host_boot_id = system_.BootId();
    manifest.origin = OriginOf(*machine, vm.backend, version ? *version : "", system_.CpuModel());
    if (!memory->empty()) manifest.memory_file = memory->lexically_relative(machine->vm_dir);
    committed = version ? dir.Commit(manifest) : Result<snapshot::Manifest>(Fail(version.error()));
  } else {
    committed = Fail(memory.error());
  }
  auto t_committed = system_.SteadyNow();
  Fault("suspend-committed", &process);
  if (!committed) {
    // Nothing was lost: the paused guest runs on. Only if that fails too is the VM ended.
    dir.RemoveStaging();
    Status cont = machinery_.driver->Continue(*machine, process);
    lock.lock();
    std::string why = "suspend failed: " + committed.error().message;
    if (cont) {
      Settle(lock, name, VmEvent::kSaveFailed, "suspend_failed", why + "; the VM runs on", why);
      return;
    }
    EndProcess(lock, vm, /*graceful=*/false);
    why += "; resuming the paused guest failed too: " + cont.error().message;
    Settle(lock, name, VmEvent::kFailed, "failed", why, why);
    return;
  }
  // The snapshot is complete: the VMM has nothing more to keep.
  machinery_.driver->Kill(process);
  system_.WaitForExit(process, 5s);
  Fault("suspend-ended", nullptr);
  int64_t bytes = dir.DiskBytes(*committed);
  Measures m = SuspendMeasures(t0, t_saved, t_committed, system_.SteadyNow(), bytes);
  // Formatted before the call that takes `m`: its arguments may be evaluated in any order, and
  // reading a moved-from map printed zeros.
  std::string message = fmt::format(
      "snapshot taken in {:.3f} s (state saved {:.1f} ms, snapshot complete {:.1f} ms, VMM ended "
      "{:.1f} ms); {} bytes on disk",
      m["latency_ms"] / 1e3, m["save_ms"], m["complete_ms"], m["end_ms"], bytes);
  lock.lock();
  Settle(
      lock, name, VmEvent::kSaved, "suspended", message, "",
      [&](VmRecord& next) {
        next.snapshot = SnapshotInfo{committed->taken_at, bytes};
      },
      std::move(m));
  SyncSnapshotLater(vm.id, committed->taken_at);
  WatchIfAsleep(lock, name);
}

void Node::RecoverSnapshotTransition(std::unique_lock<std::mutex>& lock, const VmRecord& vm,
                                     std::set<int64_t>& adopted) {
  const std::string& name = vm.name;
  ClaimJob(name);
  snapshot::SnapshotDir dir(paths_, vm.id);
  dir.RemoveStaging();
  auto machine = Machine(vm);
  // The VMM that was being saved (recorded) or restored (not yet recorded: found by its socket).
  std::optional<hv::ProcessId> vmm;
  if (vm.pid) {
    vmm = hv::ProcessId{*vm.pid, vm.pid_start};
  } else if (auto found = system_.FindProcesses(paths_.vm_dir(vm.id).string() + "/");
             !found.empty()) {
    vmm = found.front();
  }
  bool alive = vmm && machine && machinery_.driver->Adopt(*machine, *vmm);
  auto end_vmm = [&] {
    if (!vmm) return;
    machinery_.driver->Kill(*vmm);
    system_.WaitForExit(*vmm, 5s);
  };
  auto run_on = [&](std::string message) {
    Status cont = machinery_.driver->Continue(*machine, *vmm);
    if (!cont) return false;
    adopted.insert(vmm->pid);
    if (auto s = supervisor_->Watch(*vmm); !s) spdlog::error("{}", s.error().message);
    Settle(lock, name, VmEvent::kAdopted, "adopted", std::move(message), "", [&](VmRecord& next) {
      next.pid = vmm->pid;
      next.pid_start = vmm->start_time;
      next.snapshot.reset();
    });
    return true;
  };
  auto fail = [&](std::string why) {
    end_vmm();
    DiscardSavedState(vm);
    Settle(lock, name, VmEvent::kFailed, "failed", why, why,
           [](VmRecord& next) { next.snapshot.reset(); });
  };

  if (vm.state == VmState::kSuspending) {
    auto m = dir.Load();
    if (m && m->vm_version == vm.version) {
      end_vmm();
      int64_t bytes = dir.DiskBytes(*m);
      Settle(lock, name, VmEvent::kSaved, "suspended",
             "hearthd restarted during the suspend; the snapshot was complete", "",
             [&](VmRecord& next) {
               next.snapshot = SnapshotInfo{m->taken_at, bytes};
             });
      if (!m->synced) SyncSnapshotLater(vm.id, m->taken_at);
      return;
    }
    if (alive && run_on("hearthd restarted during the suspend, before the snapshot was complete; "
                        "the guest runs on")) {
      return;
    }
    fail(
        "hearthd restarted during the suspend and the VMM ended before the snapshot was "
        "complete; start the VM anew");
    return;
  }
  // Resuming. Once the snapshot is marked consumed the guest may have run: continue it if its VMM
  // is still there. Before that, the snapshot is intact and stays. The mark is not fsynced (it is
  // on the resume path): after a host reboot its absence proves nothing, so the snapshot counts
  // as used.
  if (!host_rebooted_ && !dir.Consumed() && dir.Load()) {
    end_vmm();
    Settle(lock, name, VmEvent::kRestoreFailed, "suspended",
           "hearthd restarted during the resume, before the guest ran; the snapshot is kept");
    return;
  }
  if (alive) {
    DiscardSavedState(vm);
    if (run_on("hearthd restarted during the resume; took over the restored guest")) return;
  }
  fail("hearthd restarted during the resume and the restored VMM is gone; start the VM anew");
}

}  // namespace hearth::node

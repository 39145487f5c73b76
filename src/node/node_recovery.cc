// Recovery after a restart of hearthd: VMM processes outlive hearthd, so the new one takes over
// each VM from where the record says it was, trusting a recorded pid only together with its start
// time and an answer on the VM's control socket.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <set>

#include "model/host.h"
#include "node/machine.h"
#include "node/node.h"

namespace hearth::node {

Status Node::Recover() {
  if (!machinery_.driver) return Ok();
  // Whether the host rebooted since the last hearthd on this data dir: the page cache (and with
  // it any file written but not fsynced) did not survive.
  std::string boot = system_.BootId();
  auto last_boot = store_.GetSetting(kHostBootSetting);
  host_rebooted_ = last_boot && *last_boot && **last_boot != boot;
  if (auto s = store_.PutSetting(kHostBootSetting, boot); !s) {
    return Fail(s.error().Wrap("recording the host boot id"));
  }
  std::unique_lock lock(mu_);
  // Snapshots record the hypervisor's version; ask it once now, off the suspend path.
  Spawn([this] { machinery_.driver->Version(); });
  // Processes running from our VM directories, before any job launches new ones.
  std::vector<hv::ProcessId> running = system_.FindProcesses(paths_.vms_dir().string() + "/");
  std::set<int64_t> adopted;
  std::vector<std::function<void()>> jobs;
  std::vector<std::string> names;
  for (const auto& [name, _] : vms_) names.push_back(name);
  for (const std::string& name : names) {
    auto it = vms_.find(name);
    if (it == vms_.end()) continue;
    VmRecord vm = it->second;
    if (vm.state == VmState::kSuspending || vm.state == VmState::kResuming) {
      RecoverSnapshotTransition(lock, vm, adopted);
    } else if (vm.pid) {
      RecoverProcess(lock, vm, adopted, jobs);
    } else {
      RecoverWithoutProcess(lock, vm, jobs);
    }
  }
  if (auto s = RemoveLeftovers(running, adopted); !s) return Fail(s.error());
  // Suspended VMs that wake on a packet: their taps are watched again.
  for (const auto& [name, vm] : vms_) {
    if (vm.state == VmState::kSuspended) WatchIfAsleep(lock, name);
  }
  for (auto& job : jobs) Spawn(std::move(job));
  StartTimers();  // timers that fell due while no hearthd ran fire now
  return Ok();
}

void Node::RecoverProcess(std::unique_lock<std::mutex>& lock, const VmRecord& vm,
                          std::set<int64_t>& adopted, std::vector<std::function<void()>>& jobs) {
  const std::string& name = vm.name;
  hv::ProcessId process = {*vm.pid, vm.pid_start};
  auto machine = Machine(vm);
  Status alive = machine ? machinery_.driver->Adopt(*machine, process) : Fail(machine.error());
  if (!alive) {
    RecoverVanished(lock, vm, alive.error().message, jobs);
    return;
  }
  adopted.insert(process.pid);
  if (auto s = supervisor_->Watch(process); !s) spdlog::error("{}", s.error().message);
  switch (vm.state) {
    case VmState::kRunning:
      if (auto c = Commit(
              lock, vm, VmEvent::kAdopted, "adopted",
              fmt::format("hearthd restarted; took over {} pid {}", vm.backend, process.pid));
          !c) {
        spdlog::error("vm '{}': {}", name, c.error().message);
      }
      spdlog::info("vm '{}': re-adopted pid {}", name, process.pid);
      break;
    case VmState::kStarting:
      ClaimJob(name);
      jobs.push_back([this, name, m = *machine, process] {
        AwaitGuest(name, m, process, system_.SteadyNow());
      });
      break;
    case VmState::kStopping:
      ClaimJob(name);
      jobs.push_back([this, name] { RunStop(name, /*kill=*/true); });
      break;
    case VmState::kDeleting:
      ClaimJob(name);
      EndProcess(lock, vm, /*graceful=*/false);
      if (auto s = Remove(lock, vm); !s) spdlog::error("{}", s.error().message);
      break;
    default:
      spdlog::warn("vm '{}' is {} but its {} pid {} runs; ending it", name, ToString(vm.state),
                   VmmProgram(vm.backend), process.pid);
      ClaimJob(name);
      EndProcess(lock, vm, /*graceful=*/false);
      Settle(lock, name, VmEvent::kRecovered, "stopped", "an unexpected VMM process was ended");
      break;
  }
}

void Node::RecoverVanished(std::unique_lock<std::mutex>& lock, const VmRecord& vm,
                           const std::string& error, std::vector<std::function<void()>>& jobs) {
  const std::string& name = vm.name;
  std::string why = fmt::format("{} (pid {}) vanished while hearthd was down ({})",
                                VmmProgram(vm.backend), *vm.pid, error);
  switch (vm.state) {
    case VmState::kRunning:
    case VmState::kStarting:
      ClaimJob(name);
      jobs.push_back([this, name, why] {
        std::unique_lock job_lock(mu_);
        HandleExit(job_lock, name, why, /*clean=*/false);
      });
      break;
    case VmState::kDeleting:
      if (auto s = Remove(lock, vm); !s) spdlog::error("{}", s.error().message);
      break;
    default:
      ClaimJob(name);
      Settle(lock, name, vm.state == VmState::kStopping ? VmEvent::kEnded : VmEvent::kRecovered,
             "exited", why);
      break;
  }
}

void Node::RecoverWithoutProcess(std::unique_lock<std::mutex>& lock, const VmRecord& vm,
                                 std::vector<std::function<void()>>& jobs) {
  const std::string& name = vm.name;
  switch (vm.state) {
    case VmState::kStarting:  // cut short before the launch was recorded: launch again
      ClaimJob(name);
      jobs.push_back([this, name] { RunStart(name, std::chrono::milliseconds(0)); });
      break;
    case VmState::kStopping:
      ClaimJob(name);
      Settle(lock, name, VmEvent::kEnded, "stopped", "hearthd restarted during the stop");
      break;
    case VmState::kDeleting:
      if (auto s = Remove(lock, vm); !s) spdlog::error("{}", s.error().message);
      break;
    default:
      break;
  }
}

Status Node::RemoveLeftovers(const std::vector<hv::ProcessId>& running,
                             const std::set<int64_t>& adopted) {
  // VMM processes nobody recorded (a launch cut short), VM directories and taps that belong to no
  // VM.
  for (const auto& process : running) {
    if (adopted.count(process.pid)) continue;
    spdlog::warn("ending pid {}: a VMM from {} that no VM owns", process.pid,
                 paths_.vms_dir().string());
    system_.SignalProcess(process, SIGKILL);
  }
  std::set<std::string> ids, taps;
  for (const auto& [_, vm] : vms_) {
    ids.insert(vm.id);
    taps.insert(net::TapName(vm.id));
  }
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(paths_.vms_dir(), ec)) {
    if (ids.count(entry.path().filename().string())) continue;
    spdlog::warn("removing {}: no VM owns it", entry.path().string());
    std::filesystem::remove_all(entry.path(), ec);
  }
  if (!machinery_.network) return Ok();
  auto existing = machinery_.network->ListTaps();
  if (!existing) return Fail(existing.error().Wrap("listing taps"));
  for (const auto& tap : *existing) {
    if (taps.count(tap)) continue;
    spdlog::warn("removing tap {}: no VM owns it", tap);
    if (auto s = machinery_.network->RemoveTap(tap); !s) spdlog::error("{}", s.error().message);
  }
  return SyncRules();
}

}  // namespace hearth::node

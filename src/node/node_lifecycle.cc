// The lifecycle half of Node: start, stop and exits of VMM processes. A request validates, moves
// the VM to a transitional state (so that every other request on it is refused until it settles)
// and hands the slow part to a job thread, which settles the VM in its next stable state.
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <thread>

#include "hv/console_index.h"
#include "hv/console_log.h"
#include "node/machine.h"
#include "node/node.h"

namespace hearth::node {
namespace {

using namespace std::chrono_literals;
using Ms = std::chrono::milliseconds;

}  // namespace

Result<VmRecord> Node::Commit(std::unique_lock<std::mutex>& lock, VmRecord next, VmEvent event,
                              std::string type, std::string message, Measures measures) {
  auto pending = BeginCommit(lock, std::move(next), event, std::move(type), std::move(message),
                             std::move(measures));
  if (!pending) return Fail(pending.error());
  return FinishCommit(lock, *pending);
}

Result<Node::PendingCommit> Node::BeginCommit(std::unique_lock<std::mutex>&, VmRecord next,
                                              VmEvent event, std::string type, std::string message,
                                              Measures measures) {
  // The state comes from the lifecycle table, never from the caller.
  auto step = Next(vms_.find(next.name)->second, event);
  if (!step) return Fail(step.error());
  if (step->removes) {
    return Fail(Code::kInternal, fmt::format("vm '{}': '{}' removes the record; it is not an "
                                             "update",
                                             next.name, ToString(event)));
  }
  next.state = step->state;
  PendingCommit pending;
  pending.base = next.version;
  next.version = pending.base + 1;
  next.updated_at = clock_.Now();
  TrackRunningSince(vms_.find(next.name)->second, next, next.updated_at);
  pending.event = MakeEvent(next, std::move(type), std::move(message));
  pending.event.measures = std::move(measures);
  pending.next = std::move(next);
  writing_.emplace(pending.next.name, pending.next);
  return pending;
}

Result<VmRecord> Node::FinishCommit(std::unique_lock<std::mutex>& lock, PendingCommit& pending) {
  lock.unlock();
  Status written = store_.UpdateVm(pending.next, pending.base, pending.event);
  lock.lock();
  pending.done = true;
  if (!written) pending.error = written.error();
  EndWrite(pending.next.name);
  if (!written) return Fail(written.error());
  vms_.find(pending.next.name)->second = pending.next;
  return pending.next;
}

void Node::Spawn(std::function<void()> job, ReadyThreads* ready) {
  ++jobs_;
  auto run = [this, job = std::move(job)] {
    job();
    std::lock_guard lock(mu_);
    --jobs_;
    Touch();
    changed_.notify_all();
  };
  if (ready) {
    ready->Run(std::move(run));
  } else {
    std::thread(std::move(run)).detach();
  }
}

void Node::Shutdown() {
  StopTimers();  // first: a firing starts jobs
  std::unique_lock lock(mu_);
  shutting_down_ = true;
  for (auto& [_, live] : live_) live.cancel->store(true);
  changed_.notify_all();
  changed_.wait(lock, [&] { return jobs_ == 0; });
}

Result<hv::MachineSpec> Node::Machine(const VmRecord& vm) const {
  MachineContext ctx;
  ctx.paths = &paths_;
  ctx.pool = machinery_.network && machinery_.pool ? &*machinery_.pool : nullptr;
  ctx.tsc_khz = host_.tsc_khz;
  return MachineFor(vm, ctx);
}

Result<std::string> Node::AllocateAddress() const {
  std::vector<std::string> used;
  for (const auto& [_, vm] : vms_) {
    if (!vm.ip.empty()) used.push_back(vm.ip);
  }
  for (const auto& [_, vm] : writing_) {
    if (!vm.ip.empty()) used.push_back(vm.ip);
  }
  auto address = machinery_.pool->Allocate(used);
  if (!address) return Fail(address.error());
  return address->guest;
}

Status Node::PrepareNetwork(const VmRecord& vm) {
  if (!machinery_.network || vm.ip.empty()) return Ok();
  Status prepared = Ok();
  std::call_once(network_prepared_, [&] { prepared = machinery_.network->Prepare(); });
  if (!prepared) return Fail(prepared.error());
  auto address = machinery_.pool->FromGuest(vm.ip);
  if (!address) return Fail(address.error());
  net::TapConfig tap{net::TapName(vm.id), *address, net::GuestMac(*address)};
  {
    std::lock_guard lock(taps_mu_);
    if (taps_ready_.count(tap.name)) return Ok();  // set up by this hearthd already
  }
  if (auto s = machinery_.network->EnsureTap(tap); !s) {
    return Fail(s.error().Wrap(fmt::format("vm '{}': tap {}", vm.name, tap.name)));
  }
  std::lock_guard lock(taps_mu_);
  taps_ready_.insert(tap.name);
  return Ok();
}

Status Node::SyncRules() {
  if (!machinery_.network) return Ok();
  net::RuleSet rules;
  rules.pool_cidr = machinery_.pool->cidr();
  rules.masquerade = options_.masquerade;
  // Only VMs that have been started have a tap; a node with none keeps no table at all.
  bool any = false;
  for (const auto& [_, vm] : vms_) {
    if (vm.ip.empty() || vm.state == VmState::kDeleting || vm.state == VmState::kCreated) continue;
    any = true;
    for (const auto& p : vm.spec.publish) rules.publish.push_back({vm.ip, p});
    if (auto address = machinery_.pool->FromGuest(vm.ip)) {
      rules.guests.push_back({net::TapName(vm.id), vm.ip, net::GuestMac(*address)});
    }
  }
  if (!any) rules = net::RuleSet{};                             // "no table"
  if (applied_rules_ && *applied_rules_ == rules) return Ok();  // nothing changed
  if (auto s = any ? machinery_.network->ApplyRules(rules) : machinery_.network->RemoveRules();
      !s) {
    applied_rules_.reset();
    return Fail(s.error().Wrap("rewriting hearth's nftables rules"));
  }
  applied_rules_ = rules;
  return Ok();
}

void Node::CleanUp(const VmRecord& vm) {
  ReleaseTap(vm.name);
  if (machinery_.network) {
    {
      std::lock_guard lock(taps_mu_);
      taps_ready_.erase(net::TapName(vm.id));
    }
    if (auto s = machinery_.network->RemoveTap(net::TapName(vm.id)); !s) {
      spdlog::error("vm '{}': {}", vm.name, s.error().message);
    }
  }
  if (machinery_.driver) {
    machinery_.driver->Forget(hv::RuntimeSpec(paths_, vm.id, vm.name));
  }
  std::error_code ec;
  std::filesystem::remove_all(paths_.vm_dir(vm.id), ec);
  if (ec)
    spdlog::error("vm '{}': removing {}: {}", vm.name, paths_.vm_dir(vm.id).string(), ec.message());
}

void Node::CapLogs() {
  std::vector<std::string> ids;
  {
    std::lock_guard lock(mu_);
    for (const auto& [_, vm] : vms_) {
      if (vm.pid) ids.push_back(vm.id);
    }
  }
  for (const auto& id : ids) {
    if (auto s = hv::CapLog(paths_.vmm_log(id), options_.log_cap); !s) {
      spdlog::warn("{}", s.error().message);
    }
    std::lock_guard console(console_mu_);  // the index moves with the log's head
    auto cut = hv::CapLog(paths_.console_log(id), options_.log_cap);
    if (!cut) {
      spdlog::warn("{}", cut.error().message);
      continue;
    }
    if (auto s = hv::ShiftConsoleTimes(paths_.console_times(id), *cut, hv::kMaxConsoleTimes); !s) {
      spdlog::warn("{}", s.error().message);
    }
    if (auto it = console_seen_.find(id); it != console_seen_.end()) {
      it->second = std::max<int64_t>(0, it->second - *cut);
    }
  }
}

void Node::IndexConsoles() {
  std::set<std::string> ids;
  {
    std::lock_guard lock(mu_);
    for (const auto& [_, vm] : vms_) {
      if (vm.pid) ids.insert(vm.id);
    }
  }
  // A VM watched last time but without a VMM now: its last bytes are noted once more.
  std::set<std::string> watch = ids;
  watch.insert(console_watched_.begin(), console_watched_.end());
  console_watched_ = std::move(ids);
  std::lock_guard console(console_mu_);
  for (const std::string& id : watch) {
    std::error_code ec;
    auto size = std::filesystem::file_size(paths_.console_log(id), ec);
    if (ec) {
      console_seen_.erase(id);  // not written yet, or the VM is gone
      continue;
    }
    NoteConsoleEnd(id, static_cast<int64_t>(size));
  }
}

void Node::NoteConsoleEnd(const std::string& id, int64_t end) const {
  auto [it, fresh] = console_seen_.try_emplace(id, 0);
  if (fresh) it->second = hv::LastConsoleEnd(paths_.console_times(id));
  if (end <= it->second) {
    if (end < it->second) it->second = end;  // the log was replaced or cut behind our back
    return;
  }
  if (auto s = hv::AppendConsoleTime(paths_.console_times(id), {end, clock_.Now()}); !s) {
    spdlog::warn("{}", s.error().message);
    return;
  }
  it->second = end;
}

void Node::ClaimJob(const std::string& name) { live_[name].job = true; }

bool Node::OwnedByJob(std::string_view name) const {
  auto it = live_.find(name);
  return it != live_.end() && it->second.job;
}

void Node::EndJob(const std::string& name) {
  if (auto it = live_.find(name); it != live_.end()) it->second.job = false;
  changed_.notify_all();
}

const VmRecord* Node::OwnedVm(std::unique_lock<std::mutex>& lock, const std::string& name,
                              VmState expected) {
  WaitForWrites(lock, name);
  const VmRecord* vm = Find(name);
  if (vm && vm->state == expected) return vm;
  // Deleted or moved on meanwhile: the job has nothing left to do.
  EndJob(name);
  return nullptr;
}

void Node::Settle(std::unique_lock<std::mutex>& lock, const std::string& name, VmEvent event,
                  std::string type, std::string message, std::string reason,
                  const std::function<void(VmRecord&)>& change, Measures measures) {
  WaitForWrites(lock, name);
  std::optional<VmState> settled;
  if (const VmRecord* vm = Find(name)) {
    auto step = Next(*vm, event);
    if (!step) {
      // A job reporting an outcome the table does not allow: a bug, logged, and nothing written.
      spdlog::error("vm '{}': not recorded ({}): {}", name, step.error().message, message);
    } else {
      VmRecord next = *vm;
      next.state_reason = std::move(reason);
      if (step->state != VmState::kRunning) {
        next.pid.reset();
        next.pid_start = 0;
      }
      if (change) change(next);
      std::string log = message;
      auto c = Commit(lock, next, event, std::move(type), std::move(message), std::move(measures));
      if (!c) {
        spdlog::error("vm '{}': recording state {}: {}", name, ToString(step->state),
                      c.error().message);
      } else {
        spdlog::info("vm '{}' is {}{}{}", name, ToString(c->state), log.empty() ? "" : ": ", log);
      }
      settled = step->state;
    }
  }
  if (settled == VmState::kStopped || settled == VmState::kFailed) ReleaseTap(name);
  EndJob(name);
}

std::string Node::EndProcess(std::unique_lock<std::mutex>& lock, const VmRecord& vm,
                             bool graceful) {
  if (!vm.pid) return "no process";
  hv::ProcessId process{*vm.pid, vm.pid_start};
  // Only a graceful stop talks to the VMM, and needs its machine (which reads the image).
  Result<hv::MachineSpec> machine = graceful ? Machine(vm) : Fail(Code::kNotFound, "unused");
  lock.unlock();
  auto t0 = system_.SteadyNow();
  std::string how;
  if (graceful && machine) {
    if (auto s = machinery_.driver->RequestShutdown(*machine, process); !s) {
      spdlog::warn("vm '{}': {}; killing it", vm.name, s.error().message);
    } else if (system_.WaitForExit(process, options_.stop_timeout)) {
      how = fmt::format("the guest powered off in {:.2f} s", Seconds(system_.SteadyNow() - t0));
    }
  }
  if (how.empty()) {
    machinery_.driver->Kill(process);
    if (!system_.WaitForExit(process, 10s)) {
      how = fmt::format("pid {} did not exit after SIGKILL", process.pid);
      spdlog::error("vm '{}': {}", vm.name, how);
    } else {
      how = graceful ? fmt::format("killed: the guest did not power off within {:.0f} s",
                                   Seconds(options_.stop_timeout))
                     : "killed";
    }
  }
  lock.lock();
  return how;
}

void Node::RunStart(const std::string& name, Ms delay) {
  std::unique_lock lock(mu_);
  auto cancel = live_[name].cancel;
  if (delay.count() > 0) {
    system_.WaitUntil(changed_, lock, system_.SteadyNow() + delay,
                      [&] { return cancel->load() || shutting_down_; });
  }
  if (shutting_down_) return;  // the VM stays `starting`; the next hearthd picks it up
  if (cancel->load()) {
    Settle(lock, name, VmEvent::kCancelled, "stopped", "start cancelled by a stop request");
    return;
  }
  const VmRecord* found = OwnedVm(lock, name, VmState::kStarting);
  if (!found) return;
  VmRecord vm = *found;
  auto machine = Machine(vm);
  if (!machine) {
    Settle(lock, name, VmEvent::kFailed, "failed", machine.error().message,
           machine.error().message);
    return;
  }
  lock.unlock();
  Status network = PrepareNetwork(vm);
  if (network) {
    lock.lock();
    HandTap(lock, vm, *machine, nullptr);
    // Before the guest runs, so that it never sends without its anti-spoofing rules.
    if (auto s = SyncRules(); !s) spdlog::error("vm '{}': {}", name, s.error().message);
    lock.unlock();
  }
  auto launched = system_.SteadyNow();
  Result<hv::ProcessId> process =
      network ? machinery_.driver->Launch(*machine) : Result<hv::ProcessId>(Fail(network.error()));
  std::string backend = process ? machinery_.driver->Backend() : "";
  lock.lock();
  if (network) {
    if (auto s = SyncRules(); !s) spdlog::error("vm '{}': {}", name, s.error().message);
  }
  if (!process) {
    Settle(lock, name, VmEvent::kFailed, "failed", process.error().message,
           process.error().message);
    return;
  }
  WaitForWrites(lock, name);
  vm = *Find(name);
  vm.pid = process->pid;
  vm.pid_start = process->start_time;
  vm.backend = backend;
  // Recorded before waiting for the guest, so that a new hearthd finds the process.
  if (auto c = Commit(lock, vm, VmEvent::kLaunched, "launched",
                      fmt::format("{}, pid {}", backend, process->pid));
      !c) {
    machinery_.driver->Kill(*process);
    Settle(lock, name, VmEvent::kFailed, "failed", c.error().message, c.error().message);
    return;
  }
  if (auto s = supervisor_->Watch(*process); !s) spdlog::error("{}", s.error().message);
  lock.unlock();
  AwaitGuest(name, *machine, *process, launched);
}

void Node::AwaitGuest(const std::string& name, const hv::MachineSpec& machine,
                      const hv::ProcessId& process,
                      std::chrono::steady_clock::time_point launched) {
  std::shared_ptr<hv::CancelFlag> cancel;
  {
    std::lock_guard lock(mu_);
    cancel = live_[name].cancel;
  }
  Status ready =
      machinery_.driver->WaitReady(machine, process, launched + options_.boot_timeout, *cancel);
  std::unique_lock lock(mu_);
  if (shutting_down_) return;
  const VmRecord* found = OwnedVm(lock, name, VmState::kStarting);
  if (!found) return;
  VmRecord vm = *found;
  // A stop that came while the guest was coming up wins, even if the guest made it.
  if (ready && !cancel->load()) {
    Settle(lock, name, VmEvent::kBooted, "started",
           fmt::format("the guest is up {:.2f} s after launch on {}",
                       Seconds(system_.SteadyNow() - launched), vm.backend));
    lock.unlock();
    // A cold-booted guest's clock comes from the RTC, whole seconds behind: put it right, as
    // after a resume (the VM already counts as running).
    if (auto s = machinery_.driver->SyncClock(machine, process); !s) {
      spdlog::warn("vm '{}': clock not set after boot: {}", name, s.error().message);
    }
    return;
  }
  bool exited = !system_.IsAlive(process);
  std::string how = EndProcess(lock, vm, /*graceful=*/false);
  if (cancel->load()) {
    Settle(lock, name, VmEvent::kCancelled, "stopped",
           "start cancelled by a stop request (" + how + ")");
  } else if (exited) {
    // A guest that dies while booting is a failure like any other exit: the policy applies.
    HandleExit(lock, name, ready.error().message, false);
  } else {
    Settle(lock, name, VmEvent::kFailed, "failed", ready.error().message, ready.error().message);
  }
}

void Node::RunStop(const std::string& name, bool kill) {
  std::unique_lock lock(mu_);
  const VmRecord* found = OwnedVm(lock, name, VmState::kStopping);
  if (!found) return;
  VmRecord vm = *found;
  std::string how = EndProcess(lock, vm, !kill);
  Settle(lock, name, VmEvent::kEnded, "stopped", how);
}

void Node::OnVmmExit(const hv::ProcessId& process, const hv::ExitStatus& status) {
  std::unique_lock lock(mu_);
  const VmRecord* vm = nullptr;
  for (const auto& [_, candidate] : vms_) {
    if (candidate.pid && *candidate.pid == process.pid &&
        candidate.pid_start == process.start_time) {
      vm = &candidate;
      break;
    }
  }
  if (!vm) return;  // a stop or delete already settled it
  Live& live = live_[vm->name];
  std::string_view vmm = VmmProgram(vm->backend);
  // A VMM a job ends (a suspend, a stop) is expected to go; only an unrequested exit is news.
  bool expected = live.job || vm->state != VmState::kRunning || shutting_down_;
  spdlog::log(expected ? spdlog::level::debug : spdlog::level::info, "vm '{}': {} pid {} {}",
              vm->name, vmm, process.pid, status.Describe());
  if (expected) return;
  ClaimJob(vm->name);
  std::string name = vm->name;
  std::string why = fmt::format("{} (pid {}) {}", vmm, process.pid, status.Describe());
  bool clean = status.clean();
  Spawn([this, name, why, clean] {
    std::unique_lock lock(mu_);
    HandleExit(lock, name, why, clean);
  });
}

void Node::HandleExit(std::unique_lock<std::mutex>& lock, const std::string& name,
                      const std::string& why, bool clean) {
  WaitForWrites(lock, name);
  const VmRecord* found = Find(name);
  if (!found) return;
  VmRecord vm = *found;
  std::string console = hv::LastLines(paths_.console_log(vm.id), 3);
  std::string message = console.empty() ? why : fmt::format("{}; console: {}", why, console);
  RestartPolicy policy = vm.spec.restart;
  bool restart =
      policy == RestartPolicy::kAlways || (policy == RestartPolicy::kOnFailure && !clean);
  if (!restart || shutting_down_) {
    Settle(lock, name, clean ? VmEvent::kExited : VmEvent::kCrashed, "exited", message,
           clean ? "" : message);
    return;
  }
  Live& live = live_[name];
  auto now = system_.SteadyNow();
  while (!live.restarts.empty() && now - live.restarts.front() > options_.crash_loop_window) {
    live.restarts.pop_front();
  }
  int recent = static_cast<int>(live.restarts.size());
  std::string window = FormatDuration(Duration(options_.crash_loop_window.count()));
  if (recent >= options_.crash_loop_limit) {
    std::string reason =
        fmt::format("crash loop: restarted {} times within {}; last: {}", recent, window, message);
    Settle(lock, name, VmEvent::kFailed, "failed", reason, reason);
    return;
  }
  Ms delay = std::min<Ms>(options_.restart_backoff * (int64_t{1} << std::min(recent, 20)),
                          options_.restart_backoff_max);
  live.restarts.push_back(now);
  live.cancel = std::make_shared<hv::CancelFlag>(false);
  vm.state_reason = message;
  vm.pid.reset();
  vm.pid_start = 0;
  std::string event = fmt::format("{}; restarting in {} (restart {} of {} allowed within {})",
                                  message, FormatDuration(Duration(delay.count())), recent + 1,
                                  options_.crash_loop_limit, window);
  if (auto c = Commit(lock, vm, VmEvent::kRestart, "exited", event); !c) {
    spdlog::error("vm '{}': {}", name, c.error().message);
    EndJob(name);
    return;
  }
  spdlog::warn("vm '{}': {}", name, event);
  lock.unlock();
  RunStart(name, delay);
  lock.lock();
}

}  // namespace hearth::node

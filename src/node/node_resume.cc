// Resume, the way back from a snapshot: restore the VMM paused, check the snapshot and record the
// move, mark the snapshot used up, let the guest run, replay the frames that woke it. The VMM's
// restore takes tens of milliseconds; hearth's own steps (the snapshot check, preparing the network
// and, for a wake, writing `resuming` to the store) run beside it, and the guest runs only once
// both are done. So a packet waits for little more than the hypervisor itself.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <future>
#include <thread>

#include "net/wake.h"
#include "node/node.h"
#include "snapshot/snapshot_dir.h"

namespace hearth::node {
namespace {

// A resume is measured on the real steady clock, not the node's HostSystem: its times are
// compared with when the waker saw the packet.
using SteadyClock = std::chrono::steady_clock;

// When each step of a resume happened.
struct ResumeTimes {
  SteadyClock::time_point start, issue, loaded, cleared, running, replayed;
};

struct ResumeReport {
  std::string type;  // "woken" or "resumed"
  std::string message;
  std::map<std::string, double> measures;
};

// Where the time went, for `vm events` and metering. hearth's own share of a wake is what the
// packet waited for hearth rather than for the VMM: seen -> restore issued, the loaded guest held
// for hearth's steps, and running -> frames replayed.
ResumeReport ReportResume(const ResumeTimes& t, const net::Handoff& handoff,
                          const std::string& backend) {
  ResumeReport r{"resumed", "", {}};
  auto& m = r.measures;
  m["restore_ms"] = Millis(t.running - t.issue);
  m["hold_ms"] = Millis(t.cleared - t.loaded);
  if (!handoff.woken_at) {
    m["latency_ms"] = Millis(t.running - t.start);
    r.message = fmt::format(
        "running again {:.3f} s after the resume began (state loaded in {:.1f} ms, guest held "
        "{:.2f} ms for hearth's checks), on {}",
        m["latency_ms"] / 1e3, Millis(t.loaded - t.issue), m["hold_ms"], backend);
    return r;
  }
  const auto seen = *handoff.woken_at;
  r.type = "woken";
  m["latency_ms"] = Millis(t.replayed - seen);
  m["seen_to_restore_ms"] = Millis(t.issue - seen);
  m["replay_ms"] = Millis(t.replayed - t.running);
  m["own_ms"] = m["seen_to_restore_ms"] + m["hold_ms"] + m["replay_ms"];
  m["frames"] = static_cast<double>(handoff.frames.size());
  m["dropped_filtered"] = static_cast<double>(handoff.counters.filtered);
  m["dropped_overflow"] = static_cast<double>(handoff.counters.overflow);
  r.message = fmt::format(
      "woken by a packet: restore issued {:.2f} ms after it was seen, guest held {:.2f} ms for "
      "hearth's checks, running at {:.1f} ms, {} frame(s) replayed at {:.1f} ms (hearth's own "
      "share {:.2f} ms; {} dropped while asleep: {} not a wake port, {} over the limits), on {}",
      m["seen_to_restore_ms"], m["hold_ms"], Millis(t.running - seen), handoff.frames.size(),
      m["latency_ms"], m["own_ms"], handoff.counters.filtered + handoff.counters.overflow,
      handoff.counters.filtered, handoff.counters.overflow, backend);
  return r;
}

// Restores the VMM from `dir` while `prepare` (hearth's own steps: the snapshot check, the
// network, the record of the move) runs beside it, when the VMM needs nothing from it to load (it
// is handed the held tap, or has none); else after it. The guest runs only once both are done and
// the snapshot is marked used up (`consumed`), as it may change its RAM from then on. `fault` is
// the fault point between the load and the run. Fills the times from `issue` to `running`.
Result<hv::ProcessId> RestoreBeside(hv::HypervisorDriver& driver, HostSystem& system,
                                    const hv::MachineSpec& machine, snapshot::SnapshotDir& dir,
                                    const std::function<Status()>& prepare,
                                    const std::function<void(const hv::ProcessId&)>& fault,
                                    ResumeTimes& t, bool& consumed) {
  t.issue = SteadyClock::now();
  const bool overlap = machine.tap_fd >= 0 || machine.tap.empty();
  std::promise<Status> prepared_promise;
  std::shared_future<Status> prepared = prepared_promise.get_future().share();
  std::thread side;
  if (overlap) {
    side = std::thread([&] { prepared_promise.set_value(prepare()); });
  } else {
    prepared_promise.set_value(prepare());
  }
  t.loaded = t.cleared = t.issue;
  auto before_running = [&](const hv::ProcessId& restored) -> Status {
    t.loaded = SteadyClock::now();
    Status ready = prepared.get();
    if (ready) {
      fault(restored);
      if (!system.IsAlive(restored)) {
        ready = Fail(Code::kUnavailable, fmt::format("the restored VMM (pid {}) ended before the "
                                                     "guest ran",
                                                     restored.pid));
      }
    }
    if (ready) ready = dir.MarkConsumed();
    consumed = static_cast<bool>(ready);
    t.cleared = SteadyClock::now();
    return ready;
  };
  Result<hv::ProcessId> process = overlap || prepared.get()
                                      ? driver.Restore(machine, dir.current(), before_running)
                                      : Result<hv::ProcessId>(Fail(prepared.get().error()));
  if (side.joinable()) side.join();
  if (!process && !prepared.get()) process = Fail(prepared.get().error());
  t.running = SteadyClock::now();
  return process;
}

}  // namespace

void Node::RunResume(const std::string& name, std::shared_ptr<PendingCommit> pending,
                     std::string checked_backend) {
  const auto t_start = SteadyClock::now();
  std::unique_lock lock(mu_);
  // Still suspended in the store; nobody else writes it meanwhile.
  const VmRecord vm = pending->next;
  // Writes the pending move to `resuming`, once (lock held).
  auto record = [&](std::unique_lock<std::mutex>& held) -> Status {
    if (!pending) return Ok();
    auto committed = FinishCommit(held, *pending);
    pending.reset();
    if (!committed) return Fail(committed.error().Wrap("recording the resume"));
    return Ok();
  };
  auto machine = Machine(vm);
  if (!machine) {
    record(lock);
    SettleFailedResume(lock, vm, "resume failed: " + machine.error().message, false);
    return;
  }
  // The tap the waker held, with the frames that woke the VM, goes to the restored VMM.
  net::Handoff handoff;
  HandTap(lock, vm, *machine, &handoff);
  lock.unlock();
  snapshot::SnapshotDir dir(paths_, vm.id);
  std::string backend = machinery_.driver->Backend();
  auto prepare = [&]() -> Status {
    Status s =
        backend == checked_backend ? Ok() : CheckSnapshot(vm, *machine, backend).map([](auto&&) {});
    if (s) s = PrepareNetwork(vm);
    std::unique_lock held(mu_);
    Status r = record(held);
    return s ? r : s;
  };

  // The job runs at the wake threads' raised priority up to here; the VMM it starts must not.
  SetThreadNice(0);
  ResumeTimes t;
  t.start = t_start;
  bool consumed = false;
  Result<hv::ProcessId> process = RestoreBeside(
      *machinery_.driver, system_, *machine, dir, prepare,
      [this](const hv::ProcessId& restored) { Fault("resume-restored", &restored); }, t, consumed);
  // What arrived while the VM slept goes to the guest first.
  if (process && !handoff.frames.empty()) {
    if (auto s = net::SendToGuest(machine->tap, handoff.frames); !s) {
      spdlog::warn("vm '{}': {}", name, s.error().message);
    }
  }
  t.replayed = SteadyClock::now();
  Fault("resume-running", process ? &*process : nullptr);
  // The snapshot is spent; the RAM file is the running guest's memory again.
  if (process) DiscardSavedState(vm);
  lock.lock();
  if (!process) {
    SettleFailedResume(lock, vm, "resume failed: " + process.error().message, consumed);
    return;
  }
  if (auto s = SyncRules(); !s) spdlog::error("vm '{}': {}", name, s.error().message);
  live_[name].restarts.clear();

  ResumeReport report = ReportResume(t, handoff, backend);
  Settle(
      lock, name, VmEvent::kRestored, report.type, report.message, "",
      [&](VmRecord& next) {
        next.pid = process->pid;
        next.pid_start = process->start_time;
        next.backend = backend;
        next.snapshot.reset();
      },
      std::move(report.measures));
  if (auto s = supervisor_->Watch(*process); !s) spdlog::error("{}", s.error().message);
  lock.unlock();
  // Off the critical path: the VM already counts as running while its clock is put right.
  if (auto s = machinery_.driver->SyncClock(*machine, *process); !s) {
    spdlog::warn("vm '{}': clock not set after resume: {}", name, s.error().message);
  }
}

void Node::SettleFailedResume(std::unique_lock<std::mutex>& lock, const VmRecord& vm,
                              std::string why, bool consumed) {
  if (!consumed) {
    // The guest never ran: the snapshot is as it was, to retry or start --fresh.
    Settle(lock, vm.name, VmEvent::kRestoreFailed, "failed", why, why);
    WatchIfAsleep(lock, vm.name);
    return;
  }
  DiscardSavedState(vm);
  why += "; the snapshot was used up, start the VM anew";
  Settle(lock, vm.name, VmEvent::kFailed, "failed", why, why,
         [](VmRecord& next) { next.snapshot.reset(); });
}

}  // namespace hearth::node

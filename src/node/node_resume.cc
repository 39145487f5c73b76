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

using SteadyClock = std::chrono::steady_clock;

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
    std::string why = "resume failed: " + machine.error().message;
    Settle(lock, name, VmState::kSuspended, "failed", why, why);
    WatchIfAsleep(lock, name);
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
  const auto t_issue = SteadyClock::now();
  // A VMM handed the held tap (or without one) needs nothing from hearth's steps to load; one that
  // opens the tap by name needs it prepared first.
  const bool overlap = machine->tap_fd >= 0 || machine->tap.empty();
  std::promise<Status> prepared_promise;
  std::shared_future<Status> prepared = prepared_promise.get_future().share();
  std::thread side;
  if (overlap) {
    side = std::thread([&] { prepared_promise.set_value(prepare()); });
  } else {
    prepared_promise.set_value(prepare());
  }
  auto t_loaded = t_issue, t_cleared = t_issue;
  // The guest may change its RAM once it runs: the snapshot is marked used up before that.
  bool consumed = false;
  auto before_running = [&](const hv::ProcessId& restored) -> Status {
    t_loaded = SteadyClock::now();
    Status ready = prepared.get();
    if (ready) {
      Fault("resume-restored", &restored);
      if (!hv::IsAlive(restored)) {
        ready = Fail(Code::kUnavailable, fmt::format("the restored VMM (pid {}) ended before the "
                                                     "guest ran",
                                                     restored.pid));
      }
    }
    if (ready) ready = dir.MarkConsumed();
    consumed = static_cast<bool>(ready);
    t_cleared = SteadyClock::now();
    return ready;
  };
  Result<hv::ProcessId> process =
      overlap || prepared.get()
          ? machinery_.driver->Restore(*machine, dir.current(), before_running)
          : Result<hv::ProcessId>(Fail(prepared.get().error()));
  if (side.joinable()) side.join();
  if (!process && !prepared.get()) process = Fail(prepared.get().error());
  const auto t_running = SteadyClock::now();
  // What arrived while the VM slept goes to the guest first.
  if (process && !handoff.frames.empty()) {
    if (auto s = net::SendToGuest(machine->tap, handoff.frames); !s) {
      spdlog::warn("vm '{}': {}", name, s.error().message);
    }
  }
  const auto t_replayed = SteadyClock::now();
  Fault("resume-running", process ? &*process : nullptr);
  // The snapshot is spent; the RAM file is the running guest's memory again.
  if (process) DiscardSavedState(vm);
  lock.lock();
  if (!process) {
    std::string why = "resume failed: " + process.error().message;
    if (!consumed) {
      // The guest never ran: the snapshot is as it was, to retry or start --fresh.
      Settle(lock, name, VmState::kSuspended, "failed", why, why);
      WatchIfAsleep(lock, name);
      return;
    }
    DiscardSavedState(vm);
    why += "; the snapshot was used up, start the VM anew";
    Settle(lock, name, VmState::kFailed, "failed", why, why,
           [](VmRecord& next) { next.snapshot.reset(); });
    return;
  }
  if (auto s = SyncRules(); !s) spdlog::error("vm '{}': {}", name, s.error().message);
  live_[name].restarts.clear();

  // Where the time went, for `vm events` and metering. hearth's own share of a wake is what the
  // packet waited for hearth rather than for the VMM: seen -> restore issued, the loaded guest
  // held for hearth's steps, and running -> frames replayed.
  Measures m;
  m["restore_ms"] = Millis(t_running - t_issue);
  m["hold_ms"] = Millis(t_cleared - t_loaded);
  std::string type = "resumed", how;
  if (handoff.woken_at) {
    const auto seen = *handoff.woken_at;
    type = "woken";
    m["latency_ms"] = Millis(t_replayed - seen);
    m["seen_to_restore_ms"] = Millis(t_issue - seen);
    m["replay_ms"] = Millis(t_replayed - t_running);
    m["own_ms"] = m["seen_to_restore_ms"] + m["hold_ms"] + m["replay_ms"];
    m["frames"] = static_cast<double>(handoff.frames.size());
    m["dropped_filtered"] = static_cast<double>(handoff.counters.filtered);
    m["dropped_overflow"] = static_cast<double>(handoff.counters.overflow);
    how = fmt::format(
        "woken by a packet: restore issued {:.2f} ms after it was seen, guest held {:.2f} ms for "
        "hearth's checks, running at {:.1f} ms, {} frame(s) replayed at {:.1f} ms (hearth's own "
        "share {:.2f} ms; {} dropped while asleep: {} not a wake port, {} over the limits), on {}",
        m["seen_to_restore_ms"], m["hold_ms"], Millis(t_running - seen), handoff.frames.size(),
        m["latency_ms"], m["own_ms"], handoff.counters.filtered + handoff.counters.overflow,
        handoff.counters.filtered, handoff.counters.overflow, backend);
  } else {
    m["latency_ms"] = Millis(t_running - t_start);
    how = fmt::format(
        "running again {:.3f} s after the resume began (state loaded in {:.1f} ms, guest held "
        "{:.2f} ms for hearth's checks), on {}",
        m["latency_ms"] / 1e3, Millis(t_loaded - t_issue), m["hold_ms"], backend);
  }
  Settle(
      lock, name, VmState::kRunning, type, how, "",
      [&](VmRecord& next) {
        next.pid = process->pid;
        next.pid_start = process->start_time;
        next.backend = backend;
        next.snapshot.reset();
      },
      std::move(m));
  if (auto s = supervisor_->Watch(*process); !s) spdlog::error("{}", s.error().message);
  lock.unlock();
  // Off the critical path: the VM already counts as running while its clock is put right.
  if (auto s = machinery_.driver->SyncClock(*machine, *process); !s) {
    spdlog::warn("vm '{}': clock not set after resume: {}", name, s.error().message);
  }
}

}  // namespace hearth::node

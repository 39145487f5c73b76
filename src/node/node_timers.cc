// The timers half of Node: one thread that reads the taps of running VMs with an idle timeout and
// fires the timers that fall due (model/timers.h says when) through the same suspend and stop
// paths as the API. It sleeps on a condition variable until the next timer, the next tap read or
// a change of a record, whichever comes first.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "node/node.h"

namespace hearth::node {
namespace {

using namespace std::chrono_literals;

// How often the taps of VMs with an idle timeout are read; idle time is known to within this.
constexpr std::chrono::milliseconds kIdlePoll = 250ms;
// The longest the thread sleeps while a timer is pending, so that a step of the wall clock (which
// stop-at follows) costs at most this much lateness.
constexpr std::chrono::milliseconds kMaxSleep = 1s;
// A firing whose action was refused is tried again this much later, if the VM still runs.
constexpr Duration kRetry = 30s;

bool HasTimers(const Timers& t) { return t.stop_at || t.stop_after || t.idle_timeout; }

}  // namespace

Timestamp Node::IdleBaseline(const VmRecord& vm) const {
  // Packets are known only from when they were first watched: since the VM became running, since
  // this node's timers started (after a restart), or since the record last changed (the edit that
  // gave a running VM its idle timeout), whichever is latest.
  return std::max({*vm.running_since, timers_epoch_, vm.updated_at});
}

std::optional<DueTimer> Node::NextTimer(const VmRecord& vm) const {
  if (!Allows(vm.state, VmEvent::kTimerFired) || !vm.running_since) return std::nullopt;
  std::lock_guard lock(mu_);
  Timestamp last_activity = IdleBaseline(vm);
  std::optional<Timestamp> retry;
  if (auto it = watches_.find(vm.name);
      it != watches_.end() && it->second.run == vm.running_since) {
    const TimerWatch& w = it->second;
    if (w.idle_watched) last_activity = w.last_activity;
    if (w.fired_at) retry = *w.fired_at + kRetry;
  }
  auto next = hearth::NextTimer(vm, last_activity);
  if (next && retry) next->at = std::max(next->at, *retry);
  return next;
}

int Node::FireDueTimers() { return RunTimers().fired; }

Node::TimerPass Node::RunTimers() {
  // One pass at a time, so that counters read by one are never compared with a later pass's.
  std::lock_guard pass_lock(timer_pass_mu_);
  std::vector<std::pair<std::string, std::string>> taps;  // VM name, tap name
  {
    std::lock_guard lock(mu_);
    for (const auto& [name, vm] : vms_) {
      if (machinery_.network && Allows(vm.state, VmEvent::kTimerFired) &&
          vm.spec.timers.idle_timeout && !vm.ip.empty()) {
        taps.emplace_back(name, net::TapName(vm.id));
      }
    }
  }
  // Read without the lock: sysfs reads are I/O.
  std::map<std::string, Result<net::TapCounters>, std::less<>> counters;
  for (const auto& [name, tap] : taps) counters.emplace(name, machinery_.network->Counters(tap));

  TimerPass pass;
  std::vector<Firing> due;
  {
    std::lock_guard lock(mu_);
    Timestamp now = clock_.Now();
    // A watch lives as long as its run, which a suspend that fails does not end: the retry time
    // of the timer that started that suspend is kept.
    std::erase_if(watches_, [&](const auto& entry) {
      const VmRecord* vm = Find(entry.first);
      return !vm || vm->running_since != entry.second.run;
    });
    auto later = [&](Timestamp at) { pass.next = pass.next ? std::min(*pass.next, at) : at; };
    for (const auto& [name, vm] : vms_) {
      if (!Allows(vm.state, VmEvent::kTimerFired) || !vm.running_since) continue;
      const Timers& t = vm.spec.timers;
      auto found = watches_.find(name);
      bool fresh = found == watches_.end() || found->second.run != vm.running_since;
      TimerWatch& w = watches_[name];
      if (fresh) {
        w = TimerWatch{};
        w.run = vm.running_since;
      }
      if (t.idle_timeout && !w.idle_watched) w.last_activity = IdleBaseline(vm);
      w.idle_watched = t.idle_timeout.has_value();
      if (auto c = counters.find(name); c != counters.end()) {
        if (c->second) {
          if (w.counters && *w.counters != *c->second) w.last_activity = now;
          w.counters = *c->second;
          w.read_failed = false;
        } else if (!w.read_failed) {
          w.read_failed = true;
          spdlog::warn("vm '{}': {}; its idle time counts on as if no packet passed", name,
                       c->second.error().message);
        }
      }
      if (!HasTimers(t)) continue;
      if (t.idle_timeout) pass.polling = true;
      auto next = hearth::NextTimer(vm, w.last_activity);
      if (!next) continue;
      Timestamp at = w.fired_at ? std::max(next->at, *w.fired_at + kRetry) : next->at;
      if (at > now) {
        later(at);
        continue;
      }
      if (auto live = live_.find(name); live != live_.end() && live->second.job) {
        later(now + kMaxSleep);  // a lifecycle job owns the VM; look again once it is done
        continue;
      }
      w.fired_at = now;
      due.push_back(Firing{name, *next, DescribeFiring(*next, t)});
    }
  }
  for (const Firing& firing : due) Fire(firing);
  pass.fired = static_cast<int>(due.size());
  return pass;
}

void Node::Fire(const Firing& firing) {
  Event event;
  {
    std::lock_guard lock(mu_);
    const VmRecord* vm = Find(firing.name);
    if (!vm) return;
    event = MakeEvent(*vm, "timer", firing.message);
  }
  spdlog::info("vm '{}': {}", firing.name, firing.message);
  if (auto s = store_.AppendEvent(event); !s) {
    spdlog::error("vm '{}': recording the timer event: {}", firing.name, s.error().message);
  }
  bool stop = firing.due.action == TimerAction::kStop;
  Result<VmRecord> acted = stop ? Stop(firing.name, /*kill=*/false) : Suspend(firing.name);
  if (acted) return;
  std::string why =
      fmt::format("{} did not {} the VM: {}; it tries again in {} if the VM still runs",
                  ToString(firing.due.kind), stop ? "stop" : "suspend", acted.error().message,
                  FormatDuration(kRetry));
  spdlog::warn("vm '{}': {}", firing.name, why);
  event.time = clock_.Now();
  event.message = why;
  if (auto s = store_.AppendEvent(event); !s) {
    spdlog::error("vm '{}': recording the timer event: {}", firing.name, s.error().message);
  }
}

void Node::StartTimers() {  // mu_ held (end of Recover)
  std::lock_guard thread_lock(timer_thread_mu_);
  if (timer_thread_.joinable() || timers_stop_) return;
  timers_epoch_ = clock_.Now();
  timer_thread_ = std::thread([this] { TimerLoop(); });
}

void Node::StopTimers() {
  {
    std::lock_guard lock(mu_);
    timers_stop_ = true;
    timers_wake_.notify_all();
  }
  std::thread thread;
  {
    std::lock_guard thread_lock(timer_thread_mu_);
    thread = std::move(timer_thread_);
  }
  if (thread.joinable()) thread.join();
}

void Node::TimerLoop() {
  std::unique_lock lock(mu_);
  while (!timers_stop_) {
    timers_dirty_ = false;
    lock.unlock();
    TimerPass pass = RunTimers();
    lock.lock();
    std::optional<std::chrono::milliseconds> sleep;
    if (pass.polling) sleep = kIdlePoll;
    if (pass.next) {
      // Rounded up: waking a little early would cost a pass and a minimal sleep.
      auto until = std::chrono::ceil<std::chrono::milliseconds>(*pass.next - clock_.Now());
      sleep = std::clamp(std::min(until, sleep.value_or(kMaxSleep)), 1ms, kMaxSleep);
    }
    auto woken = [&] { return timers_stop_ || timers_dirty_; };
    if (sleep) {
      system_.WaitUntil(timers_wake_, lock, system_.SteadyNow() + *sleep, woken);
    } else {
      timers_wake_.wait(lock, woken);  // no timer pending: the next change of a record wakes it
    }
  }
}

}  // namespace hearth::node

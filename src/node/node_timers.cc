// The timers half of Node: one thread that reads the taps of running VMs with an idle timeout and
// fires the timers that fall due (TimerBook decides which, model/timers.h says when) through the
// same suspend and stop paths as the API. It sleeps on a condition variable until the next timer,
// the next tap read or a change of a record, whichever comes first.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "node/node.h"

namespace hearth::node {
namespace {

using namespace std::chrono_literals;

}  // namespace

std::optional<DueTimer> Node::NextTimer(const VmRecord& vm) const {
  std::lock_guard lock(mu_);
  return timer_book_.Next(vm);
}

int Node::FireDueTimers() { return static_cast<int>(RunTimers().due.size()); }

TimerBook::Pass Node::RunTimers() {
  // One pass at a time, so that counters read by one are never compared with a later pass's.
  std::lock_guard pass_lock(timer_pass_mu_);
  std::vector<std::pair<std::string, std::string>> taps;  // VM name, tap name
  if (machinery_.network) {
    std::lock_guard lock(mu_);
    taps = TimerBook::TapsToRead(vms_);
  }
  // Read without the lock: sysfs reads are I/O.
  TapReadings readings;
  for (const auto& [name, tap] : taps) readings.emplace(name, machinery_.network->Counters(tap));
  TimerBook::Pass pass;
  {
    std::lock_guard lock(mu_);
    pass = timer_book_.Run(vms_, readings, clock_.Now(),
                           [&](const std::string& name) { return OwnedByJob(name); });
  }
  for (const TimerBook::Firing& firing : pass.due) Fire(firing);
  return pass;
}

void Node::Fire(const TimerBook::Firing& firing) {
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
                  FormatDuration(kTimerRetry));
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
  timer_book_.Start(clock_.Now());
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
    TimerBook::Pass pass = RunTimers();
    lock.lock();
    std::optional<std::chrono::milliseconds> sleep;
    if (pass.polling) sleep = kIdlePoll;
    if (pass.next) {
      // Rounded up: waking a little early would cost a pass and a minimal sleep.
      auto until = std::chrono::ceil<std::chrono::milliseconds>(*pass.next - clock_.Now());
      sleep = std::clamp(std::min(until, sleep.value_or(kMaxTimerSleep)), 1ms, kMaxTimerSleep);
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

#include "fakes/fake_host_system.h"

#include <fmt/format.h>

#include <algorithm>
#include <csignal>
#include <thread>

namespace hearth::testing {

// Starts at an arbitrary, far from zero point, as steady_clock does.
FakeHostSystem::FakeHostSystem() : now_(SteadyTime{} + std::chrono::hours(1000)) {}

void FakeHostSystem::SetBootId(std::string id) {
  std::lock_guard lock(mu_);
  boot_id_ = std::move(id);
}

void FakeHostSystem::SetCpuModel(std::string model) {
  std::lock_guard lock(mu_);
  cpu_model_ = std::move(model);
}

std::string FakeHostSystem::BootId() {
  std::lock_guard lock(mu_);
  return boot_id_;
}

std::string FakeHostSystem::CpuModel() {
  std::lock_guard lock(mu_);
  return cpu_model_;
}

ProcessId FakeHostSystem::AddProcess(std::string cmdline) {
  std::lock_guard lock(mu_);
  int64_t pid = next_pid_++;
  // A start time of its own, so that a ProcessId with another one is a recycled pid.
  ProcessId id{pid, static_cast<uint64_t>(pid) * 100};
  processes_[pid] = Process{id, std::move(cmdline), true};
  return id;
}

void FakeHostSystem::EndProcess(const ProcessId& id) {
  {
    std::lock_guard lock(mu_);
    auto it = processes_.find(id.pid);
    if (it == processes_.end() || it->second.id != id) return;
    it->second.alive = false;
  }
  exits_.notify_all();
}

void FakeHostSystem::SetSignalsEnd(bool end) {
  std::lock_guard lock(mu_);
  signals_end_ = end;
}

std::vector<std::pair<ProcessId, int>> FakeHostSystem::signals() const {
  std::lock_guard lock(mu_);
  return signals_;
}

std::vector<ProcessId> FakeHostSystem::FindProcesses(std::string_view needle) {
  std::lock_guard lock(mu_);
  std::vector<ProcessId> found;
  for (const auto& [pid, p] : processes_) {
    if (p.alive && p.cmdline.find(needle) != std::string::npos) found.push_back(p.id);
  }
  return found;
}

bool FakeHostSystem::IsAlive(const ProcessId& id) {
  std::lock_guard lock(mu_);
  auto it = processes_.find(id.pid);
  return it != processes_.end() && it->second.alive && it->second.id == id;
}

Result<uint64_t> FakeHostSystem::ProcessStartTime(int64_t pid) {
  std::lock_guard lock(mu_);
  auto it = processes_.find(pid);
  if (it == processes_.end() || !it->second.alive) {
    return Fail(Code::kNotFound, fmt::format("process {} does not exist", pid));
  }
  return it->second.id.start_time;
}

bool FakeHostSystem::WaitForExit(const ProcessId& id, std::chrono::milliseconds timeout) {
  const SteadyTime deadline = SteadyNow() + timeout;
  std::unique_lock lock(mu_);
  auto gone = [&] {
    auto it = processes_.find(id.pid);
    return it == processes_.end() || !it->second.alive || it->second.id != id;
  };
  return WaitUntil(exits_, lock, deadline, gone);
}

Status FakeHostSystem::SignalProcess(const ProcessId& id, int signal) {
  bool ended = false;
  {
    std::lock_guard lock(mu_);
    signals_.emplace_back(id, signal);
    auto it = processes_.find(id.pid);
    if (signals_end_ && (signal == SIGKILL || signal == SIGTERM) && it != processes_.end() &&
        it->second.id == id && it->second.alive) {
      it->second.alive = false;
      ended = true;
    }
  }
  if (ended) exits_.notify_all();
  return Ok();
}

void FakeHostSystem::ScriptCommand(std::string prefix, Result<CommandOutput> result) {
  std::lock_guard lock(mu_);
  scripts_.insert_or_assign(std::move(prefix), std::move(result));
}

std::vector<std::vector<std::string>> FakeHostSystem::commands() const {
  std::lock_guard lock(mu_);
  return commands_;
}

Result<CommandOutput> FakeHostSystem::RunCommand(const std::vector<std::string>& argv,
                                                 const CommandOptions& options) {
  std::lock_guard lock(mu_);
  commands_.push_back(argv);
  const std::string quoted = QuoteArgv(argv);
  const Result<CommandOutput>* best = nullptr;
  size_t best_length = 0;
  for (const auto& [prefix, result] : scripts_) {
    if (quoted.rfind(prefix, 0) == 0 && (!best || prefix.size() > best_length)) {
      best = &result;
      best_length = prefix.size();
    }
  }
  return best ? *best : Result<CommandOutput>(CommandOutput{});
}

HostSystem::SteadyTime FakeHostSystem::SteadyNow() {
  std::lock_guard lock(clock_mu_);
  return now_;
}

size_t FakeHostSystem::waiters() const {
  std::lock_guard lock(clock_mu_);
  return waiters_.size();
}

bool FakeHostSystem::AwaitWaiters(size_t n, std::chrono::milliseconds limit) {
  std::unique_lock lock(clock_mu_);
  return clock_cv_.wait_for(lock, limit, [&] { return waiters_.size() >= n; });
}

bool FakeHostSystem::WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                               SteadyTime deadline, const std::function<bool()>& pred) {
  // Registered while the caller holds `lock` (so Advance, which needs that mutex to notify, cannot
  // slip between the check of the clock and the wait), unregistered before returning (so Advance
  // never touches a condition variable after it is gone).
  auto me = std::make_shared<Waiter>(Waiter{&cv, lock.mutex()});
  {
    std::lock_guard clock(clock_mu_);
    waiters_.push_back(me);
  }
  clock_cv_.notify_all();
  bool result;
  for (;;) {
    if (pred()) {
      result = true;
      break;
    }
    if (SteadyNow() >= deadline) {
      result = false;
      break;
    }
    cv.wait(lock);
  }
  {
    std::lock_guard clock(clock_mu_);
    waiters_.erase(std::find(waiters_.begin(), waiters_.end(), me));
  }
  clock_cv_.notify_all();
  return result;
}

void FakeHostSystem::Advance(std::chrono::nanoseconds d) {
  std::vector<std::shared_ptr<Waiter>> pending;
  {
    std::lock_guard lock(clock_mu_);
    now_ += std::chrono::duration_cast<SteadyTime::duration>(d);
    pending = waiters_;
  }
  // Each waiter is notified while its mutex is held, so that it is either inside cv.wait (and
  // wakes) or about to look at the clock (and sees the new time). Its mutex is only tried: the
  // waiter takes clock_mu_ while holding it, so blocking here would deadlock. A waiter that is
  // busy (holds its mutex) is tried again once clock_mu_ is released.
  while (!pending.empty()) {
    {
      std::lock_guard lock(clock_mu_);
      for (auto it = pending.begin(); it != pending.end();) {
        Waiter& w = **it;
        if (std::find(waiters_.begin(), waiters_.end(), *it) == waiters_.end()) {
          it = pending.erase(it);  // returned meanwhile
        } else if (w.mu->try_lock()) {
          w.cv->notify_all();
          w.mu->unlock();
          it = pending.erase(it);
        } else {
          ++it;
        }
      }
    }
    if (!pending.empty()) std::this_thread::yield();
  }
}

}  // namespace hearth::testing

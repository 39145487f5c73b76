// A fake HostSystem: a boot id and CPU model the test sets, processes the test creates and ends,
// host commands recorded with scripted results, and a steady clock that moves only when the test
// advances it. Code waiting on a deadline through WaitUntil wakes when Advance passes it, so a
// test drives a thread's timers without sleeping: AwaitWaiters (the thread is parked on the
// clock), Advance, then wait for what the thread signals.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/host_system.h"

namespace hearth::testing {

class FakeHostSystem final : public HostSystem {
 public:
  FakeHostSystem();

  // --- Settings ---
  void SetBootId(std::string id);
  void SetCpuModel(std::string model);

  // --- Processes ---
  // A live process with a new pid whose command line is `cmdline`.
  ProcessId AddProcess(std::string cmdline);
  // `id` exits: it is no longer alive, and WaitForExit on it returns true.
  void EndProcess(const ProcessId& id);
  // Whether SignalProcess with SIGKILL or SIGTERM ends the process (the default), or is only
  // recorded (a process that ignores it).
  void SetSignalsEnd(bool end);
  // Every SignalProcess call, in order.
  std::vector<std::pair<ProcessId, int>> signals() const;

  // --- Commands ---
  // RunCommand of an argv whose QuoteArgv starts with `prefix` returns `result` (the longest
  // matching prefix wins; scripted results stay until scripted again). Unscripted commands succeed
  // with empty output.
  void ScriptCommand(std::string prefix, Result<CommandOutput> result);
  // Every RunCommand argv, in order.
  std::vector<std::vector<std::string>> commands() const;

  // --- The steady clock ---
  // Moves the clock forward and wakes every WaitUntil whose deadline that passes. Call it without
  // holding a mutex a waiter uses.
  void Advance(std::chrono::nanoseconds d);
  // Blocks (in real time, at most `limit`) until at least `n` threads wait in WaitUntil; false on
  // timeout.
  bool AwaitWaiters(size_t n, std::chrono::milliseconds limit = std::chrono::seconds(5));
  size_t waiters() const;

  // HostSystem.
  std::string BootId() override;
  std::string CpuModel() override;
  std::vector<ProcessId> FindProcesses(std::string_view needle) override;
  bool IsAlive(const ProcessId& id) override;
  Result<uint64_t> ProcessStartTime(int64_t pid) override;
  bool WaitForExit(const ProcessId& id, std::chrono::milliseconds timeout) override;
  Status SignalProcess(const ProcessId& id, int signal) override;
  Result<CommandOutput> RunCommand(const std::vector<std::string>& argv,
                                   const CommandOptions& options) override;
  SteadyTime SteadyNow() override;
  bool WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                 SteadyTime deadline, const std::function<bool()>& pred) override;

 private:
  struct Waiter {
    std::condition_variable* cv;
    std::mutex* mu;
  };
  struct Process {
    ProcessId id;
    std::string cmdline;
    bool alive = true;
  };

  // The clock and the threads waiting on it.
  mutable std::mutex clock_mu_;
  std::condition_variable clock_cv_;  // waiters_ changed
  SteadyTime now_;
  std::vector<std::shared_ptr<Waiter>> waiters_;

  // Everything else.
  mutable std::mutex mu_;
  std::condition_variable exits_;  // a process ended
  std::string boot_id_ = "00000000-0000-4000-8000-000000000000";
  std::string cpu_model_ = "FakeVendor family 6 model 1 stepping 1 (Fake CPU)";
  std::map<int64_t, Process> processes_;  // by pid
  int64_t next_pid_ = 4000;
  bool signals_end_ = true;
  std::vector<std::pair<ProcessId, int>> signals_;
  std::map<std::string, Result<CommandOutput>> scripts_;
  std::vector<std::vector<std::string>> commands_;
};

}  // namespace hearth::testing

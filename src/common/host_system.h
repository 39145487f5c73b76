// HostSystem: the one seam between hearth and the Linux host it runs on, for what is not a
// hypervisor, a disk or a network (those have seams of their own): which boot and CPU this is,
// the processes on it, the host tools hearth runs, and the steady clock. Code that takes a
// HostSystem runs in unit tests against tests/fakes/fake_host_system.h: a fake boot, fake
// processes, scripted commands and a steady clock the test advances, so that nothing sleeps.
// The implementation is LinuxHostSystem (common/linux_host_system.h).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/process.h"
#include "common/result.h"
#include "common/subprocess.h"

namespace hearth {

class HostSystem {
 public:
  using SteadyTime = std::chrono::steady_clock::time_point;

  virtual ~HostSystem() = default;

  // --- This host ---
  // This boot of the host (/proc/sys/kernel/random/boot_id): what survives in the page cache and
  // in /run is valid only within it.
  virtual std::string BootId() = 0;
  // The CPU model, as ParseCpuModel formats it; a snapshot of a KVM guest restores only on the
  // same model.
  virtual std::string CpuModel() = 0;

  // --- Processes (see common/process.h for the contracts) ---
  virtual std::vector<ProcessId> FindProcesses(std::string_view needle) = 0;
  virtual bool IsAlive(const ProcessId& id) = 0;
  virtual Result<uint64_t> ProcessStartTime(int64_t pid) = 0;
  // Waits until `id` has exited or `timeout` (on SteadyNow's clock) passed; true if it exited.
  virtual bool WaitForExit(const ProcessId& id, std::chrono::milliseconds timeout) = 0;
  // Ok when the process is already gone.
  virtual Status SignalProcess(const ProcessId& id, int signal) = 0;

  // --- Host tools (see common/subprocess.h) ---
  virtual Result<CommandOutput> RunCommand(const std::vector<std::string>& argv,
                                           const CommandOptions& options = {}) = 0;

  // --- The steady clock ---
  virtual SteadyTime SteadyNow() = 0;
  // std::condition_variable::wait_until on this clock: blocks on `cv` (with `lock` held on entry
  // and on return, released while blocked) until `pred` holds, which returns true, or SteadyNow()
  // reaches `deadline`, which returns pred(). Whoever changes what `pred` reads notifies `cv`; the
  // clock wakes the waiter itself when the deadline passes. Every wait on a deadline in code that
  // takes a HostSystem goes through here, so that a fake clock can drive it.
  virtual bool WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                         SteadyTime deadline, const std::function<bool()>& pred) = 0;
};

}  // namespace hearth

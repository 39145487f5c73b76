// Processes on this host, identified by pid *and* start time, so that a recycled pid is never
// mistaken for a process hearth recorded (a VMM, after a restart of hearthd).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace hearth {

// A process as hearth records it.
struct ProcessId {
  int64_t pid = 0;
  uint64_t start_time = 0;  // /proc/<pid>/stat field 22 (clock ticks since boot)
  bool operator==(const ProcessId&) const = default;
};

// The start time of `pid`, or not_found when there is no such process (a zombie counts as gone).
Result<uint64_t> ProcessStartTime(int64_t pid);
// The same, counting a zombie (exited, not yet reaped) as the process when `zombie_ok`.
Result<uint64_t> ProcessStartTime(int64_t pid, bool zombie_ok);
// True when `id` is still the same live process (not a zombie, not a recycled pid).
bool IsAlive(const ProcessId& id);
// A pidfd for `id`, checked against its start time after opening (so the fd refers to that very
// process). not_found when it is gone.
Result<int> OpenPidfd(const ProcessId& id);
// Sends `signal` through a pidfd-checked handle; ok when the process is already gone.
Status SignalProcess(const ProcessId& id, int signal);
// Waits until `id` has exited or `timeout` passed; true if it exited.
bool WaitForExit(const ProcessId& id, std::chrono::milliseconds timeout);

// The NUL-separated command line of `pid`; empty when it is gone (or a kernel thread).
std::string ProcessCmdline(int64_t pid);
// Live processes whose command line contains `needle` (e.g. a VM's directory), for finding VMMs
// that a crashed hearthd started but never recorded.
std::vector<ProcessId> FindProcesses(std::string_view needle);

}  // namespace hearth

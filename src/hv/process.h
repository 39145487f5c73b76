// VMM processes: started detached from hearthd (their own session, so that they outlive it and a
// Ctrl-C on hearthd's terminal does not reach them) and identified by pid *and* start time, so that
// a recycled pid is never mistaken for a VM after a restart.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"

namespace hearth::hv {

// A process as hearth records it.
struct ProcessId {
  int64_t pid = 0;
  uint64_t start_time = 0;  // /proc/<pid>/stat field 22 (clock ticks since boot)
  bool operator==(const ProcessId&) const = default;
};

struct SpawnOptions {
  std::filesystem::path output;        // stdout and stderr are appended here; empty: /dev/null
  std::vector<int> keep_fds;           // descriptors the child inherits at the same number
  std::filesystem::path error_output;  // if set, stderr is appended here instead of `output`
  int umask = -1;                      // the child's umask, e.g. 022; -1: hearthd's own (077)
  // Confinement, applied in the child between fork and exec, in this order:
  // cgroup.procs files (open for writing, see cgroup.h) the child moves itself into;
  std::vector<int> cgroup_procs;
  // the user it then runs as: setgroups, setgid, setuid, so no capability survives the exec;
  struct Credentials {
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;  // supplementary groups
  };
  std::optional<Credentials> run_as;
  // and paths it must be able to open as that user (access(2) with R_OK or R_OK|W_OK), so that a
  // missing permission fails the spawn with the path named rather than somewhere inside the VMM.
  std::vector<std::pair<std::string, int>> must_access;
};

// fork + setsid + exec of argv (argv[0] searched in PATH). Every other descriptor is closed in the
// child. Returns once exec succeeded (an exec failure is reported as unavailable, with errno; a
// confinement step that fails as failed_precondition, naming the step, the path and the fix).
Result<ProcessId> Spawn(const std::vector<std::string>& argv, const SpawnOptions& options);

// The start time of `pid`, or not_found when there is no such process.
Result<uint64_t> ProcessStartTime(int64_t pid);
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

}  // namespace hearth::hv

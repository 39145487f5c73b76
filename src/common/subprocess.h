// The one fork/exec of hearth: argv is data, never a shell string. Two ways to use it:
// RunCommand runs a host tool (apt-get, lz4, ip, a VMM's --version) to completion and captures
// its output; Spawn starts a detached, confined process (a VMM) and returns once it runs.
// Both are built on StartChild, which does everything the child needs between fork and exec with
// async-signal-safe calls only: whatever allocates is prepared before the fork.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/process.h"
#include "common/result.h"

namespace hearth {

// --- Running a command to completion -------------------------------------------------------------

struct CommandOptions {
  std::filesystem::path cwd;          // empty: inherit
  std::filesystem::path stdin_file;   // empty: /dev/null
  std::filesystem::path stdout_file;  // empty: captured into CommandOutput::out
};

inline CommandOptions InDirectory(std::filesystem::path cwd) {
  CommandOptions o;
  o.cwd = std::move(cwd);
  return o;
}
inline CommandOptions FileToFile(std::filesystem::path in, std::filesystem::path out) {
  CommandOptions o;
  o.stdin_file = std::move(in);
  o.stdout_file = std::move(out);
  return o;
}

struct CommandOutput {
  std::string out;  // stdout, unless it went to a file
  std::string err;  // stderr
};

// Runs argv[0] (searched in PATH) and waits for it. Fails with kUnavailable when the program
// cannot be started and kInternal when it exits non-zero or dies; the message names the command
// and ends with the last lines of its stderr. A stdin/stdout file that cannot be opened, or a cwd
// that cannot be entered, shows as "exited with status 126".
Result<CommandOutput> RunCommand(const std::vector<std::string>& argv,
                                 const CommandOptions& options = {});

// "a b 'c d'": argv for messages.
std::string QuoteArgv(const std::vector<std::string>& argv);

// --- Starting a detached process -----------------------------------------------------------------

// The user a child runs as: setgroups, setgid, setuid, so no capability survives the exec.
struct Credentials {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups
};

struct SpawnOptions {
  std::filesystem::path output;        // stdout and stderr are appended here; empty: /dev/null
  std::vector<int> keep_fds;           // descriptors the child inherits at the same number
  std::filesystem::path error_output;  // if set, stderr is appended here instead of `output`
  int umask = -1;                      // the child's umask, e.g. 022; -1: hearthd's own (077)
  // Confinement, applied in the child between fork and exec, in this order:
  // cgroup.procs files (open for writing, see hv/cgroup.h) the child moves itself into;
  std::vector<int> cgroup_procs;
  // the user it then runs as;
  using Credentials = hearth::Credentials;
  std::optional<Credentials> run_as;
  // and paths it must be able to open as that user (access(2) with R_OK or R_OK|W_OK), so that a
  // missing permission fails the spawn with the path named rather than somewhere inside the VMM.
  std::vector<std::pair<std::string, int>> must_access;
};

// fork + setsid + exec of argv (argv[0] searched in PATH). Every other descriptor is closed in the
// child. Returns once exec succeeded (an exec failure is reported as unavailable, with errno; a
// confinement step that fails as failed_precondition, naming the step, the path and the fix).
// The process is hearthd's child: whoever watches it reaps it (hv/supervisor.h).
Result<ProcessId> Spawn(const std::vector<std::string>& argv, const SpawnOptions& options);

// --- The core both use ---------------------------------------------------------------------------

// One standard descriptor of the child: a descriptor of the parent (dup2ed), else a file the child
// opens with `flags` and `mode`, else /dev/null (opened with `flags`).
struct ChildIo {
  int fd = -1;
  std::filesystem::path path;
  int flags = 0;  // O_RDONLY
  mode_t mode = 0644;
};

// Everything the child does between fork and exec, in this order: (detached only) setsid and a
// default signal mask and SIGPIPE; stdin, stdout, stderr; cwd; umask; cgroup_procs; run_as;
// must_access; (detached only) every descriptor above 2 but keep_fds closed at exec.
struct ChildSpec {
  std::vector<std::string> argv;  // argv[0] searched in PATH; not empty
  ChildIo in, out, err;
  std::filesystem::path cwd;  // empty: inherit
  bool detach = false;
  std::vector<int> keep_fds;
  int umask = -1;
  std::vector<int> cgroup_procs;
  std::optional<Credentials> run_as;
  std::vector<std::pair<std::string, int>> must_access;
};

// The step of ChildSpec that failed: kPipe and kFork in the parent (no child runs), the others in
// the child; `index` says which redirect (0-2), cgroup or path.
enum class ChildStep : int {
  kPipe,
  kFork,
  kRedirect,
  kChdir,
  kCgroup,
  kGroups,
  kGid,
  kUid,
  kAccess,
  kExec,
};
struct ChildFailure {
  ChildStep step = ChildStep::kExec;
  int index = 0;
  int err = 0;  // errno
};

struct StartedChild {
  pid_t pid = -1;  // the running child, when `failure` is not set
  // Set when a step before exec (or exec itself) failed; a child that ran is then reaped already.
  std::optional<ChildFailure> failure;
};

// Forks and runs `spec` in the child; returns once the exec succeeded or a step failed.
StartedChild StartChild(const ChildSpec& spec);

}  // namespace hearth

#include "hv/process.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

namespace hearth::hv {
namespace {

namespace fs = std::filesystem;

std::string Errno(int err) { return std::strerror(err); }

// Marks every descriptor >= 3 close-on-exec except those in `keep` (sorted). Async-signal-safe.
void CloexecAllBut(const std::vector<int>& keep) {
  unsigned first = 3;
  for (int fd : keep) {
    if (fd < 3) continue;
    if (static_cast<unsigned>(fd) > first) {
      syscall(SYS_close_range, first, static_cast<unsigned>(fd) - 1, CLOSE_RANGE_CLOEXEC);
    }
    int flags = fcntl(fd, F_GETFD);
    if (flags >= 0) fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC);
    first = static_cast<unsigned>(fd) + 1;
  }
  syscall(SYS_close_range, first, ~0U, CLOSE_RANGE_CLOEXEC);
}

// What the child reports through its pipe when a step before exec fails.
enum class Stage : int { kExec, kCgroup, kGroups, kGid, kUid, kAccess };
struct ChildFailure {
  Stage stage = Stage::kExec;
  int index = 0;  // which cgroup or path
  int err = 0;
};

Error Describe(const ChildFailure& f, const std::string& binary, const SpawnOptions& o) {
  std::string who = o.run_as ? fmt::format("uid {} gid {}", o.run_as->uid, o.run_as->gid) : "";
  switch (f.stage) {
    case Stage::kExec:
      return {Code::kUnavailable, fmt::format("cannot run {}: {}", binary, Errno(f.err))};
    case Stage::kCgroup:
      return {Code::kFailedPrecondition,
              fmt::format("{}: joining its cgroup (cgroup.procs #{}): {}", binary, f.index,
                          Errno(f.err))};
    case Stage::kGroups:
    case Stage::kGid:
    case Stage::kUid:
      return {Code::kFailedPrecondition,
              fmt::format("{}: switching to {}: {}", binary, who, Errno(f.err))};
    case Stage::kAccess: {
      const auto& [path, mode] = o.must_access.at(static_cast<size_t>(f.index));
      return {Code::kFailedPrecondition,
              fmt::format("{} runs as {} and cannot {} {}: {}; make the file (and every "
                          "directory above it) {} by that user or group",
                          binary, who, mode & W_OK ? "read and write" : "read", path, Errno(f.err),
                          mode & W_OK ? "readable and writable" : "readable")};
    }
  }
  return {Code::kInternal, "spawn: unknown failure"};
}

}  // namespace

namespace {

// The start time from /proc/<pid>/stat; a zombie counts as gone unless `zombie_ok`.
Result<uint64_t> ReadStartTime(int64_t pid, bool zombie_ok) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat;
  if (!in || !std::getline(in, stat)) {
    return Fail(Code::kNotFound, fmt::format("process {} does not exist", pid));
  }
  // "pid (comm) state ppid ..."; comm may hold spaces and parentheses, so parse after the last ')'.
  auto close = stat.rfind(')');
  if (close == std::string::npos) {
    return Fail(Code::kInternal, fmt::format("cannot parse /proc/{}/stat", pid));
  }
  std::istringstream fields(stat.substr(close + 1));
  std::string field;
  // Fields after ')' start at 3 (state); the start time is field 22.
  for (int i = 3; i <= 22 && fields >> field; ++i) {
    if (i == 3 && field == "Z" && !zombie_ok) {
      return Fail(Code::kNotFound, fmt::format("process {} has exited", pid));
    }
    if (i == 22) return std::stoull(field);
  }
  return Fail(Code::kInternal, fmt::format("cannot parse /proc/{}/stat", pid));
}

}  // namespace

Result<uint64_t> ProcessStartTime(int64_t pid) { return ReadStartTime(pid, false); }

bool IsAlive(const ProcessId& id) {
  auto t = ProcessStartTime(id.pid);
  return t && *t == id.start_time;
}

namespace {

// A pidfd of `id`; a zombie counts as the process when `zombie_ok`.
Result<int> OpenPidfd(const ProcessId& id, bool zombie_ok) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, static_cast<pid_t>(id.pid), 0));
  if (fd < 0) {
    return Fail(errno == ESRCH ? Code::kNotFound : Code::kInternal,
                fmt::format("pidfd_open({}): {}", id.pid, Errno(errno)));
  }
  // The pid may have been recycled between recording and opening: check it is the same process.
  auto start = ReadStartTime(id.pid, zombie_ok);
  if (!start || *start != id.start_time) {
    ::close(fd);
    return Fail(Code::kNotFound,
                fmt::format("process {} (started at tick {}) is gone", id.pid, id.start_time));
  }
  return fd;
}

}  // namespace

Result<int> OpenPidfd(const ProcessId& id) { return OpenPidfd(id, /*zombie_ok=*/false); }

Status SignalProcess(const ProcessId& id, int signal) {
  auto fd = OpenPidfd(id);
  if (!fd) return fd.error().code == Code::kNotFound ? Ok() : Fail(fd.error());
  int rc = static_cast<int>(syscall(SYS_pidfd_send_signal, *fd, signal, nullptr, 0));
  int err = errno;
  ::close(*fd);
  if (rc < 0 && err != ESRCH) {
    return Fail(Code::kInternal,
                fmt::format("sending signal {} to process {}: {}", signal, id.pid, Errno(err)));
  }
  return Ok();
}

bool WaitForExit(const ProcessId& id, std::chrono::milliseconds timeout) {
  // A zombie counts: a multi-threaded VMM's leader is a zombie while its other threads still exit
  // and hold its descriptors (a tap another process then cannot attach to). The pidfd becomes
  // readable only once the whole thread group is gone.
  auto fd = OpenPidfd(id, /*zombie_ok=*/true);
  if (!fd) return true;  // reaped, or another process under a recycled pid: ours is gone
  pollfd p{*fd, POLLIN, 0};
  int rc;
  do {
    rc = poll(&p, 1, static_cast<int>(timeout.count()));
  } while (rc < 0 && errno == EINTR);
  ::close(*fd);
  return rc > 0;
}

Result<ProcessId> Spawn(const std::vector<std::string>& argv, const SpawnOptions& options) {
  if (argv.empty()) return Fail(Code::kInvalidArgument, "spawn: empty argv");
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<int> keep = options.keep_fds;
  std::sort(keep.begin(), keep.end());

  int out = options.output.empty()
                ? ::open("/dev/null", O_WRONLY | O_CLOEXEC)
                : ::open(options.output.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (out < 0) {
    return Fail(Code::kInternal,
                fmt::format("opening {}: {}", options.output.string(), Errno(errno)));
  }
  int err_out =
      options.error_output.empty()
          ? ::dup(out)
          : ::open(options.error_output.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (err_out < 0) {
    int err = errno;
    ::close(out);
    return Fail(Code::kInternal,
                fmt::format("opening {}: {}", options.error_output.string(), Errno(err)));
  }
  fcntl(err_out, F_SETFD, FD_CLOEXEC);
  int null_in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  int report[2];
  if (null_in < 0 || pipe2(report, O_CLOEXEC) < 0) {
    int err = errno;
    ::close(out);
    ::close(err_out);
    if (null_in >= 0) ::close(null_in);
    return Fail(Code::kInternal, fmt::format("spawn {}: {}", argv[0], Errno(err)));
  }

  // Copied before the fork: the child may not allocate.
  const SpawnOptions::Credentials* creds = options.run_as ? &*options.run_as : nullptr;
  pid_t pid = fork();
  if (pid == 0) {
    // Child: only async-signal-safe calls from here to exec.
    setsid();
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);
    signal(SIGPIPE, SIG_DFL);
    dup2(null_in, 0);
    dup2(out, 1);
    dup2(err_out, 2);
    if (options.umask >= 0) ::umask(static_cast<mode_t>(options.umask));
    auto fail = [&](Stage stage, int index) {
      ChildFailure f{stage, index, errno};
      (void)!write(report[1], &f, sizeof(f));
      _exit(127);
    };
    for (size_t i = 0; i < options.cgroup_procs.size(); ++i) {
      if (write(options.cgroup_procs[i], "0", 1) != 1) fail(Stage::kCgroup, static_cast<int>(i));
    }
    if (creds) {
      if (setgroups(creds->groups.size(), creds->groups.data()) != 0) fail(Stage::kGroups, 0);
      if (setresgid(creds->gid, creds->gid, creds->gid) != 0) fail(Stage::kGid, 0);
      if (setresuid(creds->uid, creds->uid, creds->uid) != 0) fail(Stage::kUid, 0);
    }
    for (size_t i = 0; i < options.must_access.size(); ++i) {
      const auto& [path, mode] = options.must_access[i];
      if (access(path.c_str(), mode) != 0) fail(Stage::kAccess, static_cast<int>(i));
    }
    CloexecAllBut(keep);
    execvp(args[0], args.data());
    fail(Stage::kExec, 0);
  }
  int fork_errno = errno;
  ::close(out);
  ::close(err_out);
  ::close(null_in);
  ::close(report[1]);
  if (pid < 0) {
    ::close(report[0]);
    return Fail(Code::kInternal, fmt::format("fork for {}: {}", argv[0], Errno(fork_errno)));
  }
  ChildFailure failure{};
  ssize_t n;
  do {
    n = read(report[0], &failure, sizeof(failure));
  } while (n < 0 && errno == EINTR);
  ::close(report[0]);
  if (n > 0) {
    waitpid(pid, nullptr, 0);
    return Fail(Describe(failure, argv[0], options));
  }
  // Our child cannot vanish before we reap it: a quick exit leaves a zombie with its start time.
  auto start = ReadStartTime(pid, /*zombie_ok=*/true);
  if (!start) return Fail(start.error().Wrap(fmt::format("starting {}", argv[0])));
  return ProcessId{pid, *start};
}

std::string ProcessCmdline(int64_t pid) {
  std::ifstream in(fmt::format("/proc/{}/cmdline", pid), std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::vector<ProcessId> FindProcesses(std::string_view needle) {
  std::vector<ProcessId> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    int64_t pid = std::stoll(name);
    if (ProcessCmdline(pid).find(needle) == std::string::npos) continue;
    if (pid == getpid()) continue;
    if (auto start = ProcessStartTime(pid)) found.push_back({pid, *start});
  }
  return found;
}

}  // namespace hearth::hv

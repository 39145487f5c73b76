#include "common/subprocess.h"

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

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

namespace hearth {
namespace {

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

// In the child: points `target` at io's descriptor, file or /dev/null. Async-signal-safe.
bool Redirect(const ChildIo& io, int target) {
  if (io.fd >= 0) return dup2(io.fd, target) >= 0;
  int f = open(io.path.empty() ? "/dev/null" : io.path.c_str(), io.flags | O_CLOEXEC, io.mode);
  return f >= 0 && dup2(f, target) >= 0;
}

// In the child, from fork to exec: only async-signal-safe calls, no allocation. Never returns.
[[noreturn]] void RunChild(const ChildSpec& spec, char* const* args, const std::vector<int>& keep,
                           int report) {
  auto fail = [report](ChildStep step, int index) {
    ChildFailure f{step, index, errno};
    (void)!write(report, &f, sizeof(f));
    _exit(127);
  };
  if (spec.detach) {
    setsid();
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);
    signal(SIGPIPE, SIG_DFL);
  }
  const ChildIo* io[3] = {&spec.in, &spec.out, &spec.err};
  for (int i = 0; i < 3; ++i) {
    if (!Redirect(*io[i], i)) fail(ChildStep::kRedirect, i);
  }
  if (!spec.cwd.empty() && chdir(spec.cwd.c_str()) != 0) fail(ChildStep::kChdir, 0);
  if (spec.umask >= 0) ::umask(static_cast<mode_t>(spec.umask));
  for (size_t i = 0; i < spec.cgroup_procs.size(); ++i) {
    if (write(spec.cgroup_procs[i], "0", 1) != 1) fail(ChildStep::kCgroup, static_cast<int>(i));
  }
  if (const auto& creds = spec.run_as) {
    if (setgroups(creds->groups.size(), creds->groups.data()) != 0) fail(ChildStep::kGroups, 0);
    if (setresgid(creds->gid, creds->gid, creds->gid) != 0) fail(ChildStep::kGid, 0);
    if (setresuid(creds->uid, creds->uid, creds->uid) != 0) fail(ChildStep::kUid, 0);
  }
  for (size_t i = 0; i < spec.must_access.size(); ++i) {
    const auto& [path, mode] = spec.must_access[i];
    if (access(path.c_str(), mode) != 0) fail(ChildStep::kAccess, static_cast<int>(i));
  }
  if (spec.detach) CloexecAllBut(keep);
  execvp(args[0], args);
  fail(ChildStep::kExec, 0);
  _exit(127);  // not reached: fail exits
}

}  // namespace

StartedChild StartChild(const ChildSpec& spec) {
  StartedChild started;
  // Everything that allocates happens here, before the fork.
  std::vector<char*> args;
  for (const auto& a : spec.argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<int> keep = spec.keep_fds;
  std::sort(keep.begin(), keep.end());
  int report[2];
  if (pipe2(report, O_CLOEXEC) < 0) {
    started.failure = ChildFailure{ChildStep::kPipe, 0, errno};
    return started;
  }
  pid_t pid = fork();
  if (pid == 0) RunChild(spec, args.data(), keep, report[1]);
  int fork_errno = errno;
  ::close(report[1]);
  if (pid < 0) {
    ::close(report[0]);
    started.failure = ChildFailure{ChildStep::kFork, 0, fork_errno};
    return started;
  }
  // The pipe closes on a successful exec; before that the child writes what failed.
  ChildFailure failure{};
  ssize_t n;
  do {
    n = read(report[0], &failure, sizeof(failure));
  } while (n < 0 && errno == EINTR);
  ::close(report[0]);
  if (n > 0) {
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    started.failure = failure;
    return started;
  }
  started.pid = pid;
  return started;
}

namespace {

constexpr size_t kStderrTail = 800;

std::string Tail(const std::string& text) {
  std::string t = text;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  if (t.size() > kStderrTail) t = "..." + t.substr(t.size() - kStderrTail);
  return t;
}

// Reads both pipes until the child closes them.
void Drain(int out_fd, int err_fd, CommandOutput& result) {
  pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[8192];
      ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& p : fds) {
    if (p.fd >= 0) close(p.fd);
  }
}

// The failure of a command: how it ended and the tail of its stderr.
Error CommandFailed(const std::string& cmd, int status, const std::string& err) {
  std::string how = WIFEXITED(status) ? fmt::format("exited with status {}", WEXITSTATUS(status))
                                      : fmt::format("was killed by signal {}", WTERMSIG(status));
  std::string tail = Tail(err);
  return {Code::kInternal, fmt::format("`{}` {}{}{}", cmd, how, tail.empty() ? "" : ": ", tail)};
}

}  // namespace

std::string QuoteArgv(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    bool plain = !a.empty() && a.find_first_of(" \t'\"\\$`") == std::string::npos;
    out += plain ? a : "'" + a + "'";
  }
  return out;
}

Result<CommandOutput> RunCommand(const std::vector<std::string>& argv,
                                 const CommandOptions& options) {
  if (argv.empty()) return Fail(Code::kInternal, "RunCommand: empty argv");
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC)) {
    return Fail(Code::kResourceExhausted, fmt::format("pipe: {}", Errno(errno)));
  }
  if (pipe2(err, O_CLOEXEC)) {
    int e = errno;
    close(out[0]);
    close(out[1]);
    return Fail(Code::kResourceExhausted, fmt::format("pipe: {}", Errno(e)));
  }
  ChildSpec spec;
  spec.argv = argv;
  spec.in = {-1, options.stdin_file, O_RDONLY};
  spec.out = options.stdout_file.empty()
                 ? ChildIo{out[1]}
                 : ChildIo{-1, options.stdout_file, O_WRONLY | O_CREAT | O_TRUNC, 0644};
  spec.err = {err[1]};
  spec.cwd = options.cwd;
  StartedChild child = StartChild(spec);
  close(out[1]);
  close(err[1]);
  CommandOutput result;
  Drain(out[0], err[0], result);
  std::string cmd = QuoteArgv(argv);
  if (const auto& f = child.failure) {
    switch (f->step) {
      case ChildStep::kPipe:
        return Fail(Code::kResourceExhausted, fmt::format("pipe: {}", Errno(f->err)));
      case ChildStep::kFork:
        return Fail(Code::kResourceExhausted, fmt::format("fork: {}", Errno(f->err)));
      case ChildStep::kExec:
        return Fail(Code::kUnavailable, fmt::format("cannot run `{}`: {}{}", cmd, Errno(f->err),
                                                    f->err == ENOENT ? " (is it installed?)" : ""));
      default:  // a file or directory the child could not open: it exits with 126
        return Fail(CommandFailed(cmd, 126 << 8, result.err));
    }
  }
  int status = 0;
  while (waitpid(child.pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return result;
  return Fail(CommandFailed(cmd, status, result.err));
}

namespace {

Error DescribeSpawnFailure(const ChildFailure& f, const std::string& binary,
                           const SpawnOptions& o) {
  std::string who = o.run_as ? fmt::format("uid {} gid {}", o.run_as->uid, o.run_as->gid) : "";
  switch (f.step) {
    case ChildStep::kPipe:
    case ChildStep::kRedirect:
    case ChildStep::kChdir:
      return {Code::kInternal, fmt::format("spawn {}: {}", binary, Errno(f.err))};
    case ChildStep::kFork:
      return {Code::kInternal, fmt::format("fork for {}: {}", binary, Errno(f.err))};
    case ChildStep::kExec:
      return {Code::kUnavailable, fmt::format("cannot run {}: {}", binary, Errno(f.err))};
    case ChildStep::kCgroup:
      return {Code::kFailedPrecondition,
              fmt::format("{}: joining its cgroup (cgroup.procs #{}): {}", binary, f.index,
                          Errno(f.err))};
    case ChildStep::kGroups:
    case ChildStep::kGid:
    case ChildStep::kUid:
      return {Code::kFailedPrecondition,
              fmt::format("{}: switching to {}: {}", binary, who, Errno(f.err))};
    case ChildStep::kAccess: {
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

// Opens a log the child appends to (0600).
int OpenAppend(const std::filesystem::path& path) {
  return ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
}

}  // namespace

Result<ProcessId> Spawn(const std::vector<std::string>& argv, const SpawnOptions& options) {
  if (argv.empty()) return Fail(Code::kInvalidArgument, "spawn: empty argv");
  int out = options.output.empty() ? ::open("/dev/null", O_WRONLY | O_CLOEXEC)
                                   : OpenAppend(options.output);
  if (out < 0) {
    return Fail(Code::kInternal,
                fmt::format("opening {}: {}", options.output.string(), Errno(errno)));
  }
  int err_out = options.error_output.empty() ? ::fcntl(out, F_DUPFD_CLOEXEC, 0)
                                             : OpenAppend(options.error_output);
  if (err_out < 0) {
    int err = errno;
    ::close(out);
    return Fail(Code::kInternal,
                fmt::format("opening {}: {}", options.error_output.string(), Errno(err)));
  }
  ChildSpec spec;
  spec.argv = argv;
  spec.out = {out};
  spec.err = {err_out};
  spec.detach = true;
  spec.keep_fds = options.keep_fds;
  spec.umask = options.umask;
  spec.cgroup_procs = options.cgroup_procs;
  spec.run_as = options.run_as;
  spec.must_access = options.must_access;
  StartedChild child = StartChild(spec);
  ::close(out);
  ::close(err_out);
  if (child.failure) return Fail(DescribeSpawnFailure(*child.failure, argv[0], options));
  // Our child cannot vanish before we reap it: a quick exit leaves a zombie with its start time.
  auto start = ProcessStartTime(child.pid, /*zombie_ok=*/true);
  if (!start) return Fail(start.error().Wrap(fmt::format("starting {}", argv[0])));
  return ProcessId{child.pid, *start};
}

}  // namespace hearth

#include "image/command.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace hearth::image {
namespace {

constexpr size_t kStderrTail = 800;

std::string Tail(const std::string& text) {
  std::string t = text;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  if (t.size() > kStderrTail) t = "..." + t.substr(t.size() - kStderrTail);
  return t;
}

// In the child: points fd at path (or /dev/null), exiting on failure.
void Redirect(int fd, const std::filesystem::path& path, int flags) {
  int f = open(path.empty() ? "/dev/null" : path.c_str(), flags | O_CLOEXEC, 0644);
  if (f < 0 || dup2(f, fd) < 0) _exit(126);
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
  int out[2], err[2], status_pipe[2];
  if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) || pipe2(status_pipe, O_CLOEXEC)) {
    return Fail(Code::kResourceExhausted, fmt::format("pipe: {}", std::strerror(errno)));
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  pid_t pid = fork();
  if (pid < 0) return Fail(Code::kResourceExhausted, fmt::format("fork: {}", std::strerror(errno)));
  if (pid == 0) {
    Redirect(STDIN_FILENO, options.stdin_file, O_RDONLY);
    if (options.stdout_file.empty()) {
      dup2(out[1], STDOUT_FILENO);
    } else {
      Redirect(STDOUT_FILENO, options.stdout_file, O_WRONLY | O_CREAT | O_TRUNC);
    }
    dup2(err[1], STDERR_FILENO);
    if (!options.cwd.empty() && chdir(options.cwd.c_str()) != 0) _exit(126);
    execvp(args[0], args.data());
    int e = errno;  // tell the parent why exec failed; the pipe closes on a successful exec
    ssize_t n = write(status_pipe[1], &e, sizeof(e));
    (void)n;
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  close(status_pipe[1]);

  CommandOutput result;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
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
  int exec_errno = 0;
  ssize_t got = read(status_pipe[0], &exec_errno, sizeof(exec_errno));
  close(status_pipe[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::string cmd = QuoteArgv(argv);
  if (got == static_cast<ssize_t>(sizeof(exec_errno))) {
    return Fail(Code::kUnavailable,
                fmt::format("cannot run `{}`: {}{}", cmd, std::strerror(exec_errno),
                            exec_errno == ENOENT ? " (is it installed?)" : ""));
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return result;
  std::string how = WIFEXITED(status) ? fmt::format("exited with status {}", WEXITSTATUS(status))
                                      : fmt::format("was killed by signal {}", WTERMSIG(status));
  std::string tail = Tail(result.err);
  return Fail(Code::kInternal,
              fmt::format("`{}` {}{}{}", cmd, how, tail.empty() ? "" : ": ", tail));
}

}  // namespace hearth::image

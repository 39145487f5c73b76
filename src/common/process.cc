#include "common/process.h"

#include <fmt/format.h>
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace hearth {
namespace {

std::string Errno(int err) { return std::strerror(err); }

// A pidfd of `id`; a zombie counts as the process when `zombie_ok`.
Result<int> OpenPidfd(const ProcessId& id, bool zombie_ok) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, static_cast<pid_t>(id.pid), 0));
  if (fd < 0) {
    return Fail(errno == ESRCH ? Code::kNotFound : Code::kInternal,
                fmt::format("pidfd_open({}): {}", id.pid, Errno(errno)));
  }
  // The pid may have been recycled between recording and opening: check it is the same process.
  auto start = ProcessStartTime(id.pid, zombie_ok);
  if (!start || *start != id.start_time) {
    ::close(fd);
    return Fail(Code::kNotFound,
                fmt::format("process {} (started at tick {}) is gone", id.pid, id.start_time));
  }
  return fd;
}

}  // namespace

Result<uint64_t> ProcessStartTime(int64_t pid, bool zombie_ok) {
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

Result<uint64_t> ProcessStartTime(int64_t pid) { return ProcessStartTime(pid, false); }

bool IsAlive(const ProcessId& id) {
  auto t = ProcessStartTime(id.pid);
  return t && *t == id.start_time;
}

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

std::string ProcessCmdline(int64_t pid) {
  std::ifstream in(fmt::format("/proc/{}/cmdline", pid), std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::vector<ProcessId> FindProcesses(std::string_view needle) {
  std::vector<ProcessId> found;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    int64_t pid = std::stoll(name);
    if (ProcessCmdline(pid).find(needle) == std::string::npos) continue;
    if (pid == getpid()) continue;
    if (auto start = ProcessStartTime(pid)) found.push_back({pid, *start});
  }
  return found;
}

}  // namespace hearth

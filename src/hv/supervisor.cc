#include "hv/supervisor.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "common/linux_host_system.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace hearth::hv {

std::string ExitStatus::Describe() const {
  if (!known) return "exited (status unknown: the process was adopted after a restart of hearthd)";
  if (signal != 0) return fmt::format("killed by signal {} ({})", signal, strsignal(signal));
  return fmt::format("exited with code {}", code);
}

Supervisor::Supervisor(OnExit on_exit, OnTick on_tick, std::chrono::milliseconds tick)
    : Supervisor(LinuxHost(), std::move(on_exit), std::move(on_tick), tick) {}

Supervisor::Supervisor(HostSystem& host, OnExit on_exit, OnTick on_tick,
                       std::chrono::milliseconds tick)
    : host_(host), on_exit_(std::move(on_exit)), on_tick_(std::move(on_tick)), tick_(tick) {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wake_fd_;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  watcher_ = std::thread([this] { WatchExits(); });
  reporter_ = std::thread([this] { Report(); });
}

Supervisor::~Supervisor() {
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  watcher_.join();
  reporter_.join();
  for (const auto& [fd, _] : watched_) ::close(fd);
  for (const auto& [fd, _] : exited_) ::close(fd);
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

Status Supervisor::Watch(const ProcessId& id) {
  auto fd = OpenPidfd(id);
  if (!fd) {
    if (fd.error().code != Code::kNotFound) return Fail(fd.error());
    // Gone already (or a zombie child): report it from the supervisor's thread like any exit.
    int reap_fd = static_cast<int>(eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK));
    std::lock_guard lock(mu_);
    watched_[reap_fd] = id;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = reap_fd;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, reap_fd, &ev);
    return Ok();
  }
  std::lock_guard lock(mu_);
  watched_[*fd] = id;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = *fd;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, *fd, &ev) < 0) {
    int err = errno;
    watched_.erase(*fd);
    ::close(*fd);
    return Fail(Code::kInternal, fmt::format("watching process {}: {}", id.pid, strerror(err)));
  }
  return Ok();
}

size_t Supervisor::watched() const {
  std::lock_guard lock(mu_);
  return watched_.size();
}

void Supervisor::Reap(int fd, const ProcessId& id) {
  ExitStatus status;
  siginfo_t info{};
  // Our own child: collect its status (and the zombie). Otherwise (adopted, or an eventfd stand-in
  // for a process found gone) try the pid itself, which fails with ECHILD for non-children.
  int rc = waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(fd), &info, WEXITED | WNOHANG);
  if (rc < 0) {
    info = {};
    rc = waitid(P_PID, static_cast<id_t>(id.pid), &info, WEXITED | WNOHANG);
  }
  if (rc == 0 && info.si_pid != 0) {
    status.known = true;
    if (info.si_code == CLD_EXITED) {
      status.code = info.si_status;
    } else {
      status.signal = info.si_status;
    }
  }
  on_exit_(id, status);
}

void Supervisor::WatchExits() {
  for (;;) {
    epoll_event events[16];
    int n = epoll_wait(epoll_fd_, events, 16, -1);
    if (n < 0 && errno != EINTR) {
      spdlog::error("supervisor: epoll_wait: {}", strerror(errno));
      return;
    }
    bool any = false;
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == wake_fd_) return;
      std::lock_guard lock(mu_);
      auto it = watched_.find(fd);
      if (it == watched_.end()) continue;
      exited_.emplace_back(fd, it->second);
      watched_.erase(it);
      epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
      any = true;
    }
    if (any) cv_.notify_all();
  }
}

void Supervisor::Report() {
  auto next_tick = host_.SteadyNow() + tick_;
  std::unique_lock lock(mu_);
  for (;;) {
    host_.WaitUntil(cv_, lock, next_tick, [this] { return stop_ || !exited_.empty(); });
    if (stop_) return;
    auto exited = std::move(exited_);
    exited_.clear();
    lock.unlock();
    for (const auto& [fd, id] : exited) {
      Reap(fd, id);
      ::close(fd);
    }
    if (host_.SteadyNow() >= next_tick) {
      if (on_tick_) on_tick_();
      next_tick = host_.SteadyNow() + tick_;
    }
    lock.lock();
  }
}

}  // namespace hearth::hv

// Watches VMM processes and reports each exit within milliseconds: one thread waits on a pidfd per
// process with epoll (no polling) and hands what exited to a second thread, which reports exits and
// runs the periodic tick, waiting on the HostSystem's steady clock (so a fake clock drives the tick
// in tests). Exit codes are known for processes this hearthd started (its children, reaped here); a
// process re-adopted after a restart of hearthd is not its child, so its exit is seen but its
// status is not.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/host_system.h"
#include "hv/process.h"

namespace hearth::hv {

struct ExitStatus {
  bool known = false;  // false for an adopted process
  int code = 0;        // exit code, when it exited
  int signal = 0;      // the signal that killed it, or 0
  // A normal exit with code 0 (e.g. the guest powered off).
  bool clean() const { return known && signal == 0 && code == 0; }
  std::string Describe() const;  // "exited with code 1", "killed by signal 9 (Killed)", ...
};

class Supervisor {
 public:
  using OnExit = std::function<void(const ProcessId&, const ExitStatus&)>;
  using OnTick = std::function<void()>;

  // `on_exit` runs on the supervisor's thread once per watched process; it must not block.
  // `on_tick`, if set, runs on the same thread every `tick` of `host`'s steady clock
  // (housekeeping such as capping console logs), never at the same time as `on_exit`.
  // `host` must outlive the supervisor.
  Supervisor(HostSystem& host, OnExit on_exit, OnTick on_tick = nullptr,
             std::chrono::milliseconds tick = std::chrono::seconds(5));
  // The same on this machine's clock (LinuxHost()).
  explicit Supervisor(OnExit on_exit, OnTick on_tick = nullptr,
                      std::chrono::milliseconds tick = std::chrono::seconds(5));
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Starts watching `id`. When it is already gone, on_exit is called (from the thread) at once.
  Status Watch(const ProcessId& id);
  size_t watched() const;

 private:
  void WatchExits();  // the epoll thread
  void Report();      // the callback thread
  void Reap(int fd, const ProcessId& id);

  HostSystem& host_;
  OnExit on_exit_;
  OnTick on_tick_;
  std::chrono::milliseconds tick_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: stop
  mutable std::mutex mu_;
  std::condition_variable cv_;                     // exited_ grew, or stop_
  std::map<int, ProcessId> watched_;               // by pidfd (or eventfd stand-in)
  std::vector<std::pair<int, ProcessId>> exited_;  // seen by epoll, not yet reported
  bool stop_ = false;
  std::thread watcher_;
  std::thread reporter_;
};

}  // namespace hearth::hv

// Watches VMM processes and reports each exit within milliseconds: one thread waits on a pidfd per
// process with epoll (no polling). Exit codes are known for processes this hearthd started (its
// children, reaped here); a process re-adopted after a restart of hearthd is not its child, so its
// exit is seen but its status is not.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

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
  // `on_tick`, if set, runs there every `tick` (housekeeping such as capping console logs).
  explicit Supervisor(OnExit on_exit, OnTick on_tick = nullptr,
                      std::chrono::milliseconds tick = std::chrono::seconds(5));
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Starts watching `id`. When it is already gone, on_exit is called (from the thread) at once.
  Status Watch(const ProcessId& id);
  size_t watched() const;

 private:
  void Run();
  void Reap(int fd, const ProcessId& id);

  OnExit on_exit_;
  OnTick on_tick_;
  std::chrono::milliseconds tick_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: stop
  mutable std::mutex mu_;
  std::map<int, ProcessId> watched_;  // by pidfd
  std::thread thread_;
};

}  // namespace hearth::hv

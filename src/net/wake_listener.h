// The Linux Waker: one thread, epoll over the taps of suspended VMs (see wake.h).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "net/wake.h"

namespace hearth::net {

class WakeListener final : public Waker {
 public:
  explicit WakeListener(WakeLimits limits = {});
  ~WakeListener() override;  // ends the thread, closes every watched tap

  // Returns once no callback of the previous one is under way.
  void SetOnWake(OnWake on_wake) override;
  Status Watch(const std::string& vm, int fd, WakeFilter filter) override;
  Handoff TakeOver(const std::string& vm) override;

 private:
  struct Watched {
    int fd = -1;
    size_t vnet_header = 0;
    WakeFilter filter;
    Handoff kept;
    size_t bytes = 0;
  };
  void Loop();
  // Reads what is queued on `w`'s tap; true when it holds the first waking frame.
  bool Drain(Watched& w);

  WakeLimits limits_;
  int epoll_ = -1;
  int stop_ = -1;           // eventfd
  std::mutex mu_;           // watched_
  std::mutex callback_mu_;  // on_wake_, held while it runs
  OnWake on_wake_;
  std::map<std::string, Watched> watched_;  // by VM name
  std::thread thread_;
};

}  // namespace hearth::net

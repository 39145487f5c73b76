// The taps hearthd holds open for its VMs. A VM's tap fd has one owner at a time: nobody, this
// keeper (across the VM's VMM processes, each of which is handed the fd, so frames queue on the
// tap between them), or the waker (while the VM sleeps with wake on packet: it reads the frames
// and keeps the first ones for the guest). The keeper is the only code that moves it between them.
// Not thread-safe: the node calls it under its lock.
#pragma once

#include <map>
#include <string>

#include "net/tap.h"
#include "net/wake.h"

namespace hearth::node {

class TapKeeper {
 public:
  // Null `network` or `waker`: no tap is held (VMMs open their tap by name; nothing wakes).
  TapKeeper(net::Network* network, net::Waker* waker) : network_(network), waker_(waker) {}
  ~TapKeeper();
  TapKeeper(const TapKeeper&) = delete;
  TapKeeper& operator=(const TapKeeper&) = delete;

  // The fd of VM `vm`'s tap (named `tap`), held by the keeper from now on: the one it holds, the
  // waker's (whose kept frames go to `handoff` if given, else are dropped), or a newly opened
  // one. -1 without a network or waker, or when the tap cannot be opened (the VMM then opens it
  // by name; only frames during a later sleep may be lost).
  int Hold(const std::string& vm, const std::string& tap, net::Handoff* handoff);
  // Lends the tap to the waker, which watches it for frames matching `filter` (and owns the fd
  // from then on). Fails when the tap cannot be held or watched.
  Status LendToWaker(const std::string& vm, const std::string& tap, net::WakeFilter filter);
  // Closes what anyone holds of VM `vm`'s tap: it has no VMM and will not wake.
  void Release(const std::string& vm);
  // Whether the keeper itself holds an fd for `vm` (for tests).
  bool Holds(const std::string& vm) const { return fds_.count(vm) > 0; }

 private:
  net::Network* network_;
  net::Waker* waker_;
  std::map<std::string, int> fds_;  // by VM name: held by the keeper
};

}  // namespace hearth::node

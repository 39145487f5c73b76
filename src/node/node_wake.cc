// The wake half of Node: the tap of a VM is held open by hearthd across its VMM processes (and
// handed to each), so frames that arrive while the VM is suspended queue on it; the waker reads
// them, and the first one for the guest resumes the VM (see net/wake.h).
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "net/wake.h"
#include "node/node.h"

namespace hearth::node {

int Node::HoldTap(std::unique_lock<std::mutex>&, const VmRecord& vm, net::Handoff* handoff) {
  if (!machinery_.waker || !machinery_.network || vm.ip.empty()) return -1;
  Live& live = live_[vm.name];
  if (live.tap_fd >= 0) return live.tap_fd;
  net::Handoff taken = machinery_.waker->TakeOver(vm.name);
  if (taken.fd >= 0) {
    live.tap_fd = taken.fd;
    if (handoff) {
      taken.fd = -1;
      *handoff = std::move(taken);
    }
    return live.tap_fd;
  }
  auto fd = machinery_.network->OpenTap(net::TapName(vm.id));
  if (!fd) {
    // The VMM then opens the tap by name; only frames during a later suspend may be lost.
    spdlog::warn("vm '{}': {}", vm.name, fd.error().message);
    return -1;
  }
  live.tap_fd = *fd;
  return live.tap_fd;
}

void Node::HandTap(std::unique_lock<std::mutex>& lock, const VmRecord& vm, hv::MachineSpec& machine,
                   net::Handoff* handoff) {
  if (machinery_.driver->TakesTapFd()) {
    machine.tap_fd = HoldTap(lock, vm, handoff);
    return;
  }
  // The VMM opens the tap by name: what hearthd holds (a sleeping VM's tap, and with it the frames
  // that woke it) is let go right before the VMM attaches.
  if (handoff) HoldTap(lock, vm, handoff);
  machine.release_tap = [this, name = vm.name] {
    std::lock_guard released(mu_);
    ReleaseTap(name);
  };
}

void Node::ReleaseTap(const std::string& name) {
  if (machinery_.waker) {
    net::Handoff h = machinery_.waker->TakeOver(name);
    if (h.fd >= 0) ::close(h.fd);
  }
  if (auto it = live_.find(name); it != live_.end() && it->second.tap_fd >= 0) {
    ::close(it->second.tap_fd);
    it->second.tap_fd = -1;
  }
}

void Node::WatchIfAsleep(std::unique_lock<std::mutex>& lock, const std::string& name) {
  const VmRecord* vm = Find(name);
  if (!vm || vm->state != VmState::kSuspended || vm->spec.effective_wake() != WakeMode::kOnPacket ||
      !machinery_.waker) {
    ReleaseTap(name);
    return;
  }
  const auto& pool = machinery_.pool;
  auto address = pool ? pool->FromGuest(vm->ip) : Fail(Code::kNotFound, "no pool");
  auto filter = address ? net::MakeWakeFilter(net::GuestMac(*address), vm->ip, vm->spec.wake_ports)
                        : Result<net::WakeFilter>(Fail(address.error()));
  int fd = filter ? HoldTap(lock, *vm, nullptr) : -1;
  if (fd < 0) {
    spdlog::warn("vm '{}' will not wake on a packet: {}", name,
                 filter ? "its tap cannot be held" : filter.error().message);
    return;
  }
  live_[name].tap_fd = -1;  // the waker's now
  if (auto s = machinery_.waker->Watch(name, fd, *filter); !s) {
    spdlog::error("vm '{}': {}", name, s.error().message);
  }
}

// `seen` is also in the frames the job takes over (net::Handoff::woken_at), which it measures from.
void Node::OnWake(const std::string& name, std::chrono::steady_clock::time_point /*seen*/) {
  std::unique_lock lock(mu_);
  if (shutting_down_) return;
  WaitForWrites(lock, name);
  const VmRecord* vm = Find(name);
  if (!vm || vm->state != VmState::kSuspended || live_[name].job ||
      vm->spec.effective_wake() != WakeMode::kOnPacket || !machinery_.driver) {
    return;
  }
  if (Status admitted = Admit(*vm); !admitted) {
    spdlog::warn("vm '{}': a packet arrived but it cannot wake: {}", name,
                 admitted.error().message);
    WatchIfAsleep(lock, name);  // the next packet tries again
    return;
  }
  // The snapshot is checked beside the restore, not before it: the packet waits.
  if (auto pending = BeginResume(lock, *vm, /*check_now=*/false, "woken by a packet"); !pending) {
    spdlog::warn("vm '{}': a packet arrived but it cannot wake: {}", name, pending.error().message);
    WatchIfAsleep(lock, name);
  }
}

}  // namespace hearth::node

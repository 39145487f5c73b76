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
  if (vm.ip.empty()) return -1;
  return tap_keeper_.Hold(vm.name, net::TapName(vm.id), handoff);
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

void Node::ReleaseTap(const std::string& name) { tap_keeper_.Release(name); }

void Node::WatchIfAsleep(std::unique_lock<std::mutex>& lock, const std::string& name) {
  const VmRecord* vm = Find(name);
  if (!vm || !Allows(vm->state, VmEvent::kWake) ||
      vm->spec.effective_wake() != WakeMode::kOnPacket || !machinery_.waker) {
    ReleaseTap(name);
    return;
  }
  const auto& pool = machinery_.pool;
  auto address = pool ? pool->FromGuest(vm->ip) : Fail(Code::kNotFound, "no pool");
  auto filter = address ? net::MakeWakeFilter(net::GuestMac(*address), vm->ip, vm->spec.wake_ports)
                        : Result<net::WakeFilter>(Fail(address.error()));
  Status lent = filter ? tap_keeper_.LendToWaker(name, net::TapName(vm->id), *filter)
                       : Status(Fail(filter.error()));
  if (!lent) spdlog::warn("vm '{}' will not wake on a packet: {}", name, lent.error().message);
}

// `seen` is also in the frames the job takes over (net::Handoff::woken_at), which it measures from.
void Node::OnWake(const std::string& name, std::chrono::steady_clock::time_point /*seen*/) {
  std::unique_lock lock(mu_);
  if (shutting_down_) return;
  WaitForWrites(lock, name);
  const VmRecord* vm = Find(name);
  if (!vm || !Allows(vm->state, VmEvent::kWake) || OwnedByJob(name) ||
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
  if (auto pending =
          BeginResume(lock, *vm, VmEvent::kWake, /*check_now=*/false, "woken by a packet");
      !pending) {
    spdlog::warn("vm '{}': a packet arrived but it cannot wake: {}", name, pending.error().message);
    WatchIfAsleep(lock, name);
  }
}

}  // namespace hearth::node

// Fakes of the hypervisor driver and the host network for node tests. The driver's "VMMs" are
// real processes (a sleep whose argv names the VM's QMP socket path, as a real VMM's does), so the
// node's supervision, re-adoption and leftover cleanup run for real without root or QEMU.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <vector>

#include "hv/driver.h"
#include "net/ruleset.h"
#include "net/tap.h"
#include "net/wake.h"

namespace hearth::testing {

class FakeDriver final : public hv::HypervisorDriver {
 public:
  enum class Boot { kReady, kHang, kExit };

  std::string Backend() override { return "fake"; }
  hv::BackendInfo Peek() override { return {"fake", "a test driver"}; }
  Result<hv::ProcessId> Launch(const hv::MachineSpec& spec) override;
  Status WaitReady(const hv::MachineSpec& spec, const hv::ProcessId& process,
                   std::chrono::steady_clock::time_point deadline,
                   const hv::CancelFlag& cancel) override;
  Status Adopt(const hv::MachineSpec& spec, const hv::ProcessId& process) override;
  Status RequestShutdown(const hv::MachineSpec& spec, const hv::ProcessId& process) override;
  Result<std::filesystem::path> SaveState(const hv::MachineSpec& spec, const hv::ProcessId& process,
                                          const std::filesystem::path& dir) override;
  Status Continue(const hv::MachineSpec& spec, const hv::ProcessId& process) override;
  Result<hv::ProcessId> Restore(
      const hv::MachineSpec& spec, const std::filesystem::path& dir,
      const std::function<Status(const hv::ProcessId&)>& before_running) override;
  Status SyncClock(const hv::MachineSpec& spec, const hv::ProcessId& process) override;
  Result<std::string> Version() override;
  Status Kill(const hv::ProcessId& process) override;
  Result<std::string> Describe(const hv::MachineSpec& spec, const hv::ProcessId& process) override;
  bool TakesTapFd() const override { return !opens_tap_by_name.load(); }

  // Like Firecracker: takes no tap fd, and Restore calls spec.release_tap right before its "load",
  // then `on_load` (what the load would see), then fails the load if `fail_load`.
  std::atomic<bool> opens_tap_by_name{false};
  std::atomic<bool> fail_load{false};
  std::function<void(const hv::MachineSpec&)> on_load;
  // Called at the start of every Launch, before the "VMM" runs.
  std::function<void(const hv::MachineSpec&)> on_launch;
  std::atomic<int> tap_releases{0};
  std::vector<int> restore_tap_fds;  // spec.tap_fd of each Restore (under mu)

  // How the next boots go: ready after `boot_ms`, hang until cancelled, or exit during boot.
  std::atomic<Boot> boot{Boot::kReady};
  std::atomic<int> boot_ms{20};
  // Whether RequestShutdown makes the "guest" exit (else stop has to kill).
  std::atomic<bool> obeys_shutdown{true};
  // Whether WaitReady ignores the cancel flag (a guest that comes up just as a stop arrives).
  std::atomic<bool> ignore_cancel{false};
  std::atomic<int> launches{0};
  std::atomic<bool> fail_suspend{false};
  std::atomic<bool> fail_resume{false};
  std::atomic<int> clock_syncs{0};
  // Waits until `pred` holds, checked again after every Launch, Restore and SyncClock; false if
  // it still fails after `limit`.
  bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds limit);
  std::mutex mu;
  std::map<std::string, hv::MachineSpec> launched;  // by VM id, the last spec
  std::set<int64_t> paused;                         // pids of "VMMs" with a paused guest
  std::string version = "fake 1.0";

 private:
  void Changed();
  std::mutex signal_mu_;
  std::condition_variable signal_;
  uint64_t changes_ = 0;
};

// A waker whose wakes the test triggers (through the node's OnWake) and whose watches it reads.
class FakeWaker final : public net::Waker {
 public:
  void SetOnWake(OnWake on_wake) override {}
  Status Watch(const std::string& vm, int fd, net::WakeFilter filter) override;
  net::Handoff TakeOver(const std::string& vm) override;

  bool watching(const std::string& vm) const;
  int fd(const std::string& vm) const;  // the fd watched for `vm`, or -1
  // What the next TakeOver of `vm` hands over besides the fd (as if these frames woke it).
  void Keep(const std::string& vm, std::vector<std::string> frames);

 private:
  mutable std::mutex mu_;
  std::map<std::string, int> fds_;
  std::map<std::string, std::vector<std::string>> frames_;
};

class FakeNetwork final : public net::Network {
 public:
  Status Prepare() override { return Ok(); }
  Status EnsureTap(const net::TapConfig& tap) override;
  Status RemoveTap(std::string_view name) override;
  Result<std::vector<std::string>> ListTaps() override;
  Status ApplyRules(const net::RuleSet& rules) override;
  Status RemoveRules() override;
  Result<net::TapCounters> Counters(std::string_view name) override;
  // An eventfd standing in for the tap.
  Result<int> OpenTap(std::string_view name) override;

  std::set<std::string> taps() const;
  net::RuleSet rules() const;
  // Sets a tap's counters (they start at zero); `packets` more each way by AddTraffic.
  void SetCounters(const std::string& tap, net::TapCounters counters);
  void AddTraffic(const std::string& tap, uint64_t packets = 1);

 private:
  mutable std::mutex mu_;
  std::set<std::string> taps_;
  std::map<std::string, net::TapCounters> counters_;
  net::RuleSet rules_;
};

// Kills every fake VMM process whose command line mentions `dir`.
void KillFakeVmms(const std::string& dir);

}  // namespace hearth::testing

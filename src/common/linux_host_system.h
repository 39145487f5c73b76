// The HostSystem of this machine: /proc, pidfds, fork/exec and std::chrono::steady_clock.
#pragma once

#include <string>
#include <string_view>

#include "common/host_system.h"

namespace hearth {

class LinuxHostSystem final : public HostSystem {
 public:
  std::string BootId() override;
  std::string CpuModel() override;
  std::vector<ProcessId> FindProcesses(std::string_view needle) override;
  bool IsAlive(const ProcessId& id) override;
  Result<uint64_t> ProcessStartTime(int64_t pid) override;
  bool WaitForExit(const ProcessId& id, std::chrono::milliseconds timeout) override;
  Status SignalProcess(const ProcessId& id, int signal) override;
  Result<CommandOutput> RunCommand(const std::vector<std::string>& argv,
                                   const CommandOptions& options) override;
  SteadyTime SteadyNow() override;
  bool WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                 SteadyTime deadline, const std::function<bool()>& pred) override;
};

// The LinuxHostSystem for code that is not handed one (it holds no state, so one serves all).
HostSystem& LinuxHost();

// This boot of the host (/proc/sys/kernel/random/boot_id): what survives in the page cache and in
// /run is valid only within it.
std::string ReadHostBootId();

// The CPU model a /proc/cpuinfo text describes, from its first processor: "<vendor_id> family
// <cpu family> model <model> stepping <stepping> (<model name>)", e.g. "GenuineIntel family 6
// model 85 stepping 7 (Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz)". Empty when none of
// those fields is there. A snapshot of a KVM guest restores only on the same model.
std::string ParseCpuModel(std::string_view cpuinfo);
// ParseCpuModel of this host's /proc/cpuinfo (read once).
std::string HostCpuModel();

}  // namespace hearth

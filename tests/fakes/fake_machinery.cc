#include "fakes/fake_machinery.h"

#include <csignal>
#include <filesystem>
#include <thread>

#include "hv/console_log.h"

namespace hearth::testing {

using namespace std::chrono_literals;

Result<hv::ProcessId> FakeDriver::Launch(const hv::MachineSpec& spec) {
  std::filesystem::create_directories(spec.vm_dir);
  {
    std::lock_guard lock(mu);
    launched[spec.vm_id] = spec;
  }
  ++launches;
  // exec -a puts the VM's socket path into the sleep's argv, where FindProcesses looks.
  std::string name = "fake-vmm " + spec.qmp_socket.string();
  int exit_ms = boot.load() == Boot::kExit ? 5 : 3600 * 1000;
  std::string script = "exec -a \"$0\" sleep " + std::to_string(exit_ms / 1000.0);
  return hv::Spawn({"bash", "-c", script, name}, hv::SpawnOptions{spec.vmm_log, {}});
}

Status FakeDriver::WaitReady(const hv::MachineSpec& spec, const hv::ProcessId& process,
                             std::chrono::steady_clock::time_point deadline,
                             const hv::CancelFlag& cancel) {
  auto ready_at = std::chrono::steady_clock::now() + std::chrono::milliseconds(boot_ms.load());
  for (;;) {
    if (cancel.load() && !ignore_cancel.load()) {
      return Fail(Code::kFailedPrecondition, "start cancelled");
    }
    if (!hv::IsAlive(process)) return Fail(Code::kUnavailable, "exited before the guest was up");
    auto now = std::chrono::steady_clock::now();
    if (boot.load() == Boot::kReady && now >= ready_at) {
      hv::AppendLine(spec.console_log, "hearth: guest ready");
      return Ok();
    }
    if (now >= deadline) return Fail(Code::kUnavailable, "the guest did not report ready in time");
    std::this_thread::sleep_for(2ms);
  }
}

Status FakeDriver::Adopt(const hv::MachineSpec& spec, const hv::ProcessId& process) {
  if (!hv::IsAlive(process)) return Fail(Code::kNotFound, "gone");
  for (const auto& p : hv::FindProcesses(spec.qmp_socket.string())) {
    if (p == process) return Ok();
  }
  return Fail(Code::kNotFound, "not this VM's process");
}

Status FakeDriver::RequestShutdown(const hv::MachineSpec& spec, const hv::ProcessId& process) {
  if (obeys_shutdown.load()) return hv::SignalProcess(process, SIGTERM);
  return Ok();
}

Status FakeDriver::Suspend(const hv::MachineSpec& spec, const hv::ProcessId& process,
                           const std::filesystem::path& state_file) {
  if (fail_suspend.load()) return Fail(Code::kInternal, "the fake refuses to suspend");
  if (auto s = hv::AppendLine(state_file, "fake device state " + spec.vm_id); !s) return s;
  hv::SignalProcess(process, SIGKILL);
  hv::WaitForExit(process, 2s);
  return Ok();
}

Result<hv::ProcessId> FakeDriver::Resume(const hv::MachineSpec& spec,
                                         const std::filesystem::path& state_file) {
  if (fail_resume.load()) return Fail(Code::kInternal, "the fake refuses to resume");
  if (!std::filesystem::exists(state_file)) return Fail(Code::kNotFound, "no saved state");
  Boot saved = boot.exchange(Boot::kReady);
  auto process = Launch(spec);
  boot = saved;
  return process;
}

Status FakeDriver::Kill(const hv::ProcessId& process) {
  return hv::SignalProcess(process, SIGKILL);
}

Result<std::string> FakeDriver::Describe(const hv::MachineSpec& spec,
                                         const hv::ProcessId& process) {
  return std::string(R"({"status":"running"})");
}

Status FakeNetwork::EnsureTap(const net::TapConfig& tap) {
  std::lock_guard lock(mu_);
  taps_.insert(tap.name);
  return Ok();
}

Status FakeNetwork::RemoveTap(std::string_view name) {
  std::lock_guard lock(mu_);
  taps_.erase(std::string(name));
  return Ok();
}

Result<std::vector<std::string>> FakeNetwork::ListTaps() {
  std::lock_guard lock(mu_);
  return std::vector<std::string>(taps_.begin(), taps_.end());
}

Status FakeNetwork::ApplyRules(const net::RuleSet& rules) {
  std::lock_guard lock(mu_);
  rules_ = rules;
  return Ok();
}

Status FakeNetwork::RemoveRules() {
  std::lock_guard lock(mu_);
  rules_ = {};
  return Ok();
}

Result<net::TapCounters> FakeNetwork::Counters(std::string_view name) {
  std::lock_guard lock(mu_);
  std::string tap(name);
  if (!taps_.count(tap)) return Fail(Code::kNotFound, "tap " + tap + " does not exist");
  return counters_[tap];
}

void FakeNetwork::SetCounters(const std::string& tap, net::TapCounters counters) {
  std::lock_guard lock(mu_);
  counters_[tap] = counters;
}

void FakeNetwork::AddTraffic(const std::string& tap, uint64_t packets) {
  std::lock_guard lock(mu_);
  counters_[tap].rx_packets += packets;
  counters_[tap].tx_packets += packets;
}

std::set<std::string> FakeNetwork::taps() const {
  std::lock_guard lock(mu_);
  return taps_;
}

net::RuleSet FakeNetwork::rules() const {
  std::lock_guard lock(mu_);
  return rules_;
}

void KillFakeVmms(const std::string& dir) {
  for (const auto& p : hv::FindProcesses(dir)) hv::SignalProcess(p, SIGKILL);
}

}  // namespace hearth::testing

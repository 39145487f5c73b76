#include "fakes/fake_machinery.h"

#include <fmt/format.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include "hv/console_log.h"

namespace hearth::testing {

using namespace std::chrono_literals;

Result<hv::ProcessId> FakeDriver::Launch(const hv::MachineSpec& spec) {
  // Like every driver (driver.h): a VM without a vCPU is refused before anything starts. A spec
  // without memory is not: node tests launch bare "VMMs" (leftovers) from identity-only specs.
  if (spec.vcpus < 1) {
    return Fail(Code::kInvalidArgument, fmt::format("fake: vm '{}' needs at least one vCPU, not {}",
                                                    spec.name, spec.vcpus));
  }
  if (on_launch) on_launch(spec);
  std::filesystem::create_directories(spec.vm_dir);
  {
    std::lock_guard lock(mu);
    launched[spec.vm_id] = spec;
  }
  ++launches;
  Changed();
  // exec -a puts the VM's socket path into the sleep's argv, where FindProcesses looks.
  std::string name = "fake-vmm " + spec.qmp_socket.string();
  int exit_ms = boot.load() == Boot::kExit ? 5 : 3600 * 1000;
  std::string script = "exec -a \"$0\" sleep " + std::to_string(exit_ms / 1000.0);
  auto process = hv::Spawn({"bash", "-c", script, name}, hv::SpawnOptions{spec.vmm_log, {}});
  // Returned once bash runs; wait for its exec of sleep too, during which /proc/<pid>/cmdline
  // reads empty (a scan for VMMs must not catch it in between).
  for (int i = 0; process && i < 1000; ++i) {
    std::ifstream in(fmt::format("/proc/{}/cmdline", process->pid), std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmdline.rfind("fake-vmm ", 0) == 0) break;
    std::this_thread::sleep_for(1ms);
  }
  return process;
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

Result<std::filesystem::path> FakeDriver::SaveState(const hv::MachineSpec& spec,
                                                    const hv::ProcessId& process,
                                                    const std::filesystem::path& dir) {
  if (fail_suspend.load()) return Fail(Code::kInternal, "the fake refuses to suspend");
  if (!hv::IsAlive(process)) return Fail(Code::kUnavailable, "the fake VMM is gone");
  if (auto s = hv::AppendLine(dir / "state", "fake device state " + spec.vm_id); !s) {
    return Fail(s.error());
  }
  if (!std::filesystem::exists(spec.memory_file)) {
    if (auto s = hv::AppendLine(spec.memory_file, "fake guest RAM"); !s) return Fail(s.error());
  }
  std::lock_guard lock(mu);
  paused.insert(process.pid);
  return spec.memory_file;
}

Status FakeDriver::Continue(const hv::MachineSpec&, const hv::ProcessId& process) {
  std::lock_guard lock(mu);
  paused.erase(process.pid);
  return Ok();
}

Result<hv::ProcessId> FakeDriver::Restore(
    const hv::MachineSpec& spec, const std::filesystem::path& dir,
    const std::function<Status(const hv::ProcessId&)>& before_running) {
  if (fail_resume.load()) return Fail(Code::kInternal, "the fake refuses to resume");
  if (!std::filesystem::exists(dir / "state")) return Fail(Code::kNotFound, "no saved state");
  {
    std::lock_guard lock(mu);
    restore_tap_fds.push_back(spec.tap_fd);
  }
  if (opens_tap_by_name.load()) {
    if (spec.release_tap) {
      spec.release_tap();
      ++tap_releases;
    }
    if (on_load) on_load(spec);
    if (fail_load.load()) return Fail(Code::kFailedPrecondition, "the fake's load failed");
  }
  Boot saved = boot.exchange(Boot::kReady);
  auto process = Launch(spec);
  boot = saved;
  if (!process) return process;
  {
    std::lock_guard lock(mu);
    paused.insert(process->pid);
  }
  if (auto s = before_running(*process); !s) {
    Kill(*process);
    hv::WaitForExit(*process, 2s);
    return Fail(s.error());
  }
  std::lock_guard lock(mu);
  paused.erase(process->pid);
  return process;
}

Status FakeDriver::SyncClock(const hv::MachineSpec&, const hv::ProcessId&) {
  ++clock_syncs;
  Changed();
  return Ok();
}

void FakeDriver::Changed() {
  std::lock_guard lock(signal_mu_);
  ++changes_;
  signal_.notify_all();
}

bool FakeDriver::WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  std::unique_lock lock(signal_mu_);
  while (true) {
    uint64_t seen = changes_;
    lock.unlock();
    if (pred()) return true;
    lock.lock();
    if (!signal_.wait_until(lock, deadline, [&] { return changes_ != seen; })) {
      lock.unlock();
      return pred();
    }
  }
}

Result<std::string> FakeDriver::Version() {
  std::lock_guard lock(mu);
  return version;
}

Status FakeDriver::Kill(const hv::ProcessId& process) {
  {
    std::lock_guard lock(mu);
    paused.erase(process.pid);
  }
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

Status FakeWaker::Watch(const std::string& vm, int fd, net::WakeFilter) {
  std::lock_guard lock(mu_);
  if (auto it = fds_.find(vm); it != fds_.end()) close(it->second);
  fds_[vm] = fd;
  return Ok();
}

net::Handoff FakeWaker::TakeOver(const std::string& vm) {
  std::lock_guard lock(mu_);
  net::Handoff h;
  auto it = fds_.find(vm);
  if (it == fds_.end()) return h;
  h.fd = it->second;
  fds_.erase(it);
  if (auto f = frames_.find(vm); f != frames_.end()) {
    h.frames = std::move(f->second);
    h.woken_at = std::chrono::steady_clock::now();
    frames_.erase(f);
  }
  return h;
}

bool FakeWaker::watching(const std::string& vm) const {
  std::lock_guard lock(mu_);
  return fds_.count(vm) > 0;
}

int FakeWaker::fd(const std::string& vm) const {
  std::lock_guard lock(mu_);
  auto it = fds_.find(vm);
  return it == fds_.end() ? -1 : it->second;
}

void FakeWaker::Keep(const std::string& vm, std::vector<std::string> frames) {
  std::lock_guard lock(mu_);
  frames_[vm] = std::move(frames);
}

Result<int> FakeNetwork::OpenTap(std::string_view name) {
  int fd = eventfd(0, EFD_CLOEXEC);
  if (fd < 0) return Fail(Code::kInternal, "eventfd");
  return fd;
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

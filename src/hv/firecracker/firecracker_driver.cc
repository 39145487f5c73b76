#include "hv/firecracker/firecracker_driver.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <csignal>
#include <thread>

#include "common/clock.h"
#include "hv/console_log.h"
#include "net/tun_device.h"

namespace hearth::hv::firecracker {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Names in the jail (or the VM dir) of what Firecracker reads and writes.
constexpr std::string_view kKernel = files::kKernel;
constexpr std::string_view kInitrd = files::kInitrd;
constexpr std::string_view kRootfs = files::kRootfs;
constexpr std::string_view kStateIn = files::kJailStateIn;
constexpr std::string_view kMemoryIn = files::kJailMemoryIn;
constexpr std::string_view kStateOut = files::kJailStateOut;
constexpr std::string_view kMemoryOut = files::kJailMemoryOut;

}  // namespace

FirecrackerDriver::FirecrackerDriver(FirecrackerDriverOptions options)
    : options_(std::move(options)) {}

BackendInfo FirecrackerDriver::Peek() {
  std::string note = fmt::format("Firecracker at {}", options_.binary.string());
  if (!options_.jail.jailer.empty()) {
    note += fmt::format(", jailed by {} as {}:{} under {}", options_.jail.jailer.string(),
                        options_.jail.uid, options_.jail.gid, options_.jail.chroot_base.string());
  }
  return {"firecracker", note};
}

VmmRoot FirecrackerDriver::RootFor(const MachineSpec& spec) const {
  if (options_.jail.jailer.empty()) return VmmRoot::Direct(spec.vm_dir);
  return VmmRoot::Jailed(options_.jail, spec.vm_id);
}

std::vector<std::string> FirecrackerDriver::Argv(const MachineSpec& spec) const {
  VmmRoot root = RootFor(spec);
  if (!root.jailed()) {
    return {options_.binary.string(), "--api-sock", root.Vmm(kSocketName), "--id", spec.vm_id};
  }
  const JailConfig& j = options_.jail;
  // The jailer passes --id on to Firecracker itself.
  return {j.jailer.string(),
          "--id",
          spec.vm_id,
          "--exec-file",
          j.firecracker.string(),
          "--uid",
          std::to_string(j.uid),
          "--gid",
          std::to_string(j.gid),
          "--chroot-base-dir",
          j.chroot_base.string(),
          "--",
          "--api-sock",
          root.Vmm(kSocketName)};
}

std::unique_ptr<ApiTransport> FirecrackerDriver::Transport(const VmmRoot& root) const {
  fs::path socket = root.Host(kSocketName);
  if (options_.transport) return options_.transport(socket);
  return std::make_unique<UnixSocketTransport>(socket);
}

Status FirecrackerDriver::EnsureMetrics(const MachineSpec& spec) {
  if (metrics_.attached(spec.vm_id)) return Ok();
  return metrics_.Attach(spec.vm_id, RootFor(spec).Host(kMetricsName));
}

Result<MetricsTotals> FirecrackerDriver::Metrics(const MachineSpec& spec) {
  if (auto s = EnsureMetrics(spec); !s) return Fail(s.error());
  return metrics_.Totals(spec.vm_id);
}

Status FirecrackerDriver::HandOverTap(const MachineSpec& spec, const VmmRoot& root) {
  if (spec.tap.empty()) return Ok();
  if (spec.release_tap) spec.release_tap();
  if (!root.jailed()) return Ok();
  return net::GrantTap(spec.tap, options_.jail.uid, options_.jail.gid);
}

void FirecrackerDriver::Forget(const MachineSpec& spec) {
  metrics_.Detach(spec.vm_id);
  RootFor(spec).Remove();
}

std::string FirecrackerDriver::Diagnose(const MachineSpec& spec, const VmmRoot& root) const {
  std::string out;
  for (const auto& [what, path] :
       {std::pair{"firecracker said", spec.vmm_log}, std::pair{"its log", root.Host(kLogName)},
        std::pair{"console", spec.console_log}}) {
    std::string lines = LastLines(path, 3);
    if (!lines.empty()) out += fmt::format("; {}: {}", what, lines);
  }
  return out;
}

Error FirecrackerDriver::Abandon(const MachineSpec& spec, const VmmRoot& root,
                                 const ProcessId& process, const Error& error) {
  Kill(process);
  WaitForExit(process, 5s);
  Error e = error;
  e.message += Diagnose(spec, root);
  return e;
}

Status FirecrackerDriver::Prepare(const MachineSpec& spec, const VmmRoot& root) {
  std::error_code ec;
  fs::create_directories(spec.vm_dir, ec);
  if (ec) {
    return Fail(Code::kInternal,
                fmt::format("creating {}: {}", spec.vm_dir.string(), ec.message()));
  }
  if (auto s = root.Reset(); !s) return s;
  // Firecracker refuses to bind an existing path.
  fs::remove(root.Host(kSocketName), ec);
  fs::remove(root.Host(kStateOut), ec);
  fs::remove(root.Host(kMemoryOut), ec);
  if (auto s = root.MakeFile(kLogName); !s) return s;
  if (auto s = root.MakeFifo(kMetricsName); !s) return s;
  return StampLaunch(spec.console_log, spec.vmm_log, spec.name);
}

Result<ProcessId> FirecrackerDriver::Start(const MachineSpec& spec, const VmmRoot& root,
                                           std::string_view what) {
  SpawnOptions spawn;
  spawn.output = spec.console_log;  // stdout: the guest's serial console
  spawn.error_output = spec.vmm_log;
  // The jailer creates the jail's /dev (kvm, net/tun) for the jail's uid: not with hearthd's 077.
  if (root.jailed()) spawn.umask = 022;
  auto process = Spawn(Argv(spec), spawn);
  if (!process) {
    return Fail(process.error().Wrap(fmt::format("{} vm '{}'", what, spec.name)));
  }
  spdlog::info("vm '{}': firecracker started, pid {}", spec.name, process->pid);
  if (auto s = metrics_.Attach(spec.vm_id, root.Host(kMetricsName)); !s) {
    return Fail(Abandon(spec, root, *process, s.error()));
  }
  // The socket answers once Firecracker's API thread runs.
  auto transport = Transport(root);
  auto until = std::chrono::steady_clock::now() + options_.socket_timeout;
  for (;;) {
    auto answer = transport->Send(DescribeInstance().request, 500ms);
    if (answer && answer->status == 200) return process;
    if (!IsAlive(*process)) {
      return Fail(Abandon(spec, root, *process,
                          Error{Code::kUnavailable,
                                fmt::format("{} vm '{}': firecracker (pid {}) exited before its "
                                            "API socket answered",
                                            what, spec.name, process->pid)}));
    }
    if (std::chrono::steady_clock::now() >= until) {
      return Fail(Abandon(
          spec, root, *process,
          Error{Code::kUnavailable,
                fmt::format("{} vm '{}': firecracker's API socket {} did not answer within {} ms",
                            what, spec.name, root.Host(kSocketName).string(),
                            options_.socket_timeout.count())}));
    }
    std::this_thread::sleep_for(5ms);
  }
}

Result<ProcessId> FirecrackerDriver::Launch(const MachineSpec& spec) {
  VmmRoot root = RootFor(spec);
  if (auto s = Prepare(spec, root); !s) return Fail(s.error());
  // A cold boot: the RAM of an earlier snapshot is of no use any more.
  std::error_code ec;
  fs::remove(spec.memory_file, ec);
  BootConfig boot;
  boot.log_path = root.Vmm(kLogName);
  boot.metrics_path = root.Vmm(kMetricsName);
  auto kernel = root.Import(spec.kernel, kKernel, false, true);
  if (!kernel) return Fail(kernel.error().Wrap(fmt::format("vm '{}'", spec.name)));
  boot.kernel = *kernel;
  if (!spec.initrd.empty()) {
    auto initrd = root.Import(spec.initrd, kInitrd, false, true);
    if (!initrd) return Fail(initrd.error().Wrap(fmt::format("vm '{}'", spec.name)));
    boot.initrd = *initrd;
  }
  if (!spec.rootfs.empty()) {
    auto rootfs = root.Import(spec.rootfs, kRootfs, !spec.rootfs_readonly, spec.rootfs_readonly);
    if (!rootfs) return Fail(rootfs.error().Wrap(fmt::format("vm '{}'", spec.name)));
    boot.rootfs = *rootfs;
    boot.rootfs_readonly = spec.rootfs_readonly;
  }
  boot.boot_args = BootArgs(spec.cmdline);
  boot.vcpus = spec.vcpus;
  boot.memory_mib = spec.memory.value;
  boot.tap = spec.tap;
  boot.mac = spec.mac;
  auto calls = BootCalls(boot);
  if (!calls) return Fail(calls.error().Wrap(fmt::format("vm '{}'", spec.name)));
  if (auto s = HandOverTap(spec, root); !s) {
    return Fail(s.error().Wrap(fmt::format("vm '{}'", spec.name)));
  }
  auto process = Start(spec, root, "starting");
  if (!process) return process;
  auto transport = Transport(root);
  for (const auto& call : *calls) {
    if (auto r = Execute(*transport, call, spec.name); !r) {
      return Fail(Abandon(spec, root, *process, r.error()));
    }
  }
  return process;
}

Result<fs::path> FirecrackerDriver::SaveState(const MachineSpec& spec, const ProcessId& process,
                                              const fs::path& dir) {
  VmmRoot root = RootFor(spec);
  auto transport = Transport(root);
  if (auto r = Execute(*transport, Pause(), spec.name); !r) return Fail(r.error());
  std::error_code ec;
  fs::remove(root.Host(kStateOut), ec);
  fs::remove(root.Host(kMemoryOut), ec);
  if (auto r =
          Execute(*transport, CreateSnapshot(root.Vmm(kStateOut), root.Vmm(kMemoryOut)), spec.name);
      !r) {
    fs::remove(root.Host(kStateOut), ec);
    fs::remove(root.Host(kMemoryOut), ec);
    return Fail(r.error());
  }
  LogLatency(spec, *transport, "created the snapshot", &MetricsTotals::full_create_snapshot_us);
  if (auto s = root.Export(kStateOut, dir / kStateFile); !s) return Fail(s.error());
  // A new inode under the RAM file's name: a guest restored from the old one keeps it mapped.
  if (auto s = root.Export(kMemoryOut, spec.memory_file); !s) return Fail(s.error());
  return spec.memory_file;
}

void FirecrackerDriver::LogLatency(const MachineSpec& spec, ApiTransport& transport,
                                   std::string_view what, int64_t MetricsTotals::*field) {
  ApiCall flush = FlushMetrics();
  flush.timeout = 200ms;
  if (!Execute(transport, flush, spec.name)) return;
  auto totals = metrics_.Totals(spec.vm_id);
  if (!totals) return;
  spdlog::info("vm '{}': firecracker {} in {:.1f} ms", spec.name, what, (*totals).*field / 1e3);
}

Status FirecrackerDriver::SyncClock(const MachineSpec& spec, const ProcessId& process) {
  {
    std::lock_guard lock(restored_mu_);
    if (restored_.erase({process.pid, process.start_time}) == 0) return Ok();  // a cold boot
  }
  LogLatency(spec, *Transport(RootFor(spec)), "loaded the snapshot",
             &MetricsTotals::load_snapshot_us);
  return Ok();
}

Status FirecrackerDriver::Continue(const MachineSpec& spec, const ProcessId&) {
  auto transport = Transport(RootFor(spec));
  if (auto r = Execute(*transport, Resume(), spec.name); !r) return Fail(r.error());
  return Ok();
}

Result<ProcessId> FirecrackerDriver::Restore(
    const MachineSpec& spec, const fs::path& dir,
    const std::function<Status(const ProcessId&)>& before_running) {
  VmmRoot root = RootFor(spec);
  auto context = [&](const Error& e) {
    return e.Wrap(fmt::format("restoring vm '{}'", spec.name));
  };
  if (auto s = Prepare(spec, root); !s) return Fail(context(s.error()));
  RestoreConfig config;
  config.log_path = root.Vmm(kLogName);
  config.metrics_path = root.Vmm(kMetricsName);
  config.tap = spec.tap;
  auto state = root.Import(dir / kStateFile, kStateIn, false, true);
  auto memory = state ? root.Import(spec.memory_file, kMemoryIn, false, true) : state;
  if (!memory) return Fail(context(memory.error()));
  config.snapshot_path = *state;
  config.memory_path = *memory;
  // The disk must be where the snapshot says it is (the same name in the jail).
  if (!spec.rootfs.empty()) {
    auto rootfs = root.Import(spec.rootfs, kRootfs, !spec.rootfs_readonly, spec.rootfs_readonly);
    if (!rootfs) return Fail(context(rootfs.error()));
  }
  auto process = Start(spec, root, "restoring");
  if (!process) return process;
  auto transport = Transport(root);
  auto calls = RestoreCalls(config);
  for (size_t i = 0; i < calls.size(); ++i) {
    // Firecracker attaches to the tap by name during the load, the last call.
    if (i + 1 == calls.size()) {
      if (auto s = HandOverTap(spec, root); !s) {
        return Fail(Abandon(spec, root, *process, context(s.error())));
      }
    }
    if (auto r = Execute(*transport, calls[i], spec.name); !r) {
      // A failed load ends Firecracker; make sure of it either way.
      return Fail(Abandon(spec, root, *process, r.error()));
    }
  }
  if (auto s = before_running(*process); !s) {
    return Fail(Abandon(spec, root, *process, context(s.error())));
  }
  if (auto r = Execute(*transport, Resume(), spec.name); !r) {
    return Fail(Abandon(spec, root, *process, r.error()));
  }
  std::lock_guard lock(restored_mu_);
  restored_.insert({process->pid, process->start_time});
  return process;
}

Status FirecrackerDriver::Kill(const ProcessId& process) { return SignalProcess(process, SIGKILL); }

}  // namespace hearth::hv::firecracker

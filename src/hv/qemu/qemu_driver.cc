#include "hv/qemu/qemu_driver.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <fstream>
#include <thread>

#include "common/clock.h"
#include "common/files.h"
#include "hv/console_log.h"
#include "hv/qemu/qmp_client.h"
#include "image/command.h"
#include "image/guest_init.h"

namespace hearth::hv::qemu {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// The VM's QMP connection; errors say what it was for.
Result<QmpClient> Qmp(const MachineSpec& spec, std::string_view what,
                      std::chrono::milliseconds timeout = 2s) {
  auto qmp = QmpClient::Connect(spec.qmp_socket.string(), timeout);
  if (!qmp) return Fail(qmp.error().Wrap(fmt::format("vm '{}': {}", spec.name, what)));
  return qmp;
}

// QEMU's pipe chardev uses PATH.in (to the guest) and PATH.out (from it).
fs::path AgentIn(const MachineSpec& spec) { return spec.agent_pipe.string() + ".in"; }
fs::path AgentOut(const MachineSpec& spec) { return spec.agent_pipe.string() + ".out"; }

// The FIFOs of the agent channel; QEMU opens both read-write, so neither side ever blocks on open.
Status MakeAgentPipes(const MachineSpec& spec) {
  for (const auto& path : {AgentIn(spec), AgentOut(spec)}) {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISFIFO(st.st_mode)) continue;
    std::error_code ec;
    fs::remove(path, ec);
    if (mkfifo(path.c_str(), 0600) != 0) {
      return Fail(Code::kInternal, fmt::format("mkfifo {}: {}", path.string(), strerror(errno)));
    }
  }
  return Ok();
}

// Puts the guest's wall clock right through its agent ("settime SECONDS" on the virtio-serial
// port org.hearth.agent, answered "ok SECONDS").
Status SetGuestClock(const MachineSpec& spec, std::chrono::milliseconds timeout) {
  int out = ::open(AgentOut(spec).c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  int in = ::open(AgentIn(spec).c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  auto close_both = [&] {
    if (out >= 0) ::close(out);
    if (in >= 0) ::close(in);
  };
  if (out < 0 || in < 0) {
    close_both();
    return Fail(Code::kUnavailable, fmt::format("opening the agent channel {}: {}",
                                                spec.agent_pipe.string(), strerror(errno)));
  }
  char buf[256];
  while (read(out, buf, sizeof(buf)) > 0) {
  }  // stale answers of an earlier request that timed out
  // The agent sets whole seconds: the nearest one is at most half a second off, and costs no wait
  // on the resume path.
  auto now = std::chrono::round<std::chrono::seconds>(std::chrono::system_clock::now());
  std::string expect = fmt::format("ok {}\n", now.time_since_epoch().count());
  std::string request = fmt::format("settime {}\n", now.time_since_epoch().count());
  std::string reply;
  if (write(in, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (reply.find(expect) == std::string::npos) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      pollfd p{out, POLLIN, 0};
      if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
      ssize_t n = read(out, buf, sizeof(buf));
      if (n > 0) reply.append(buf, static_cast<size_t>(n));
      if (n == 0) std::this_thread::sleep_for(5ms);  // no writer yet (POLLHUP)
    }
  }
  close_both();
  if (reply.find(expect) == std::string::npos) {
    return Fail(Code::kUnavailable,
                fmt::format("the guest agent did not confirm the clock (answer: '{}'); guests "
                            "without hearth's agent keep the time they had when suspended",
                            reply.empty() ? "none" : reply.substr(0, reply.find('\n'))));
  }
  return Ok();
}

// A new guest RAM file with every block allocated now, so that a full disk fails the launch with
// a clear error instead of killing the running VMM (SIGBUS) when the guest first touches a page.
// The blocks read as zeros and cost no write.
Status AllocateMemoryFile(const MachineSpec& spec) {
  std::error_code ec;
  fs::remove(spec.memory_file, ec);
  int fd = ::open(spec.memory_file.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Fail(Code::kInternal, fmt::format("creating the guest RAM file {}: {}",
                                             spec.memory_file.string(), strerror(errno)));
  }
  int rc = posix_fallocate(fd, 0, spec.memory.value << 20);
  ::close(fd);
  if (rc != 0) {
    fs::remove(spec.memory_file, ec);
    return Fail(
        rc == ENOSPC ? Code::kResourceExhausted : Code::kInternal,
        fmt::format("vm '{}': allocating {} MiB for guest RAM in {}: {}{}", spec.name,
                    spec.memory.value, spec.memory_file.parent_path().string(), strerror(rc),
                    rc == ENOSPC ? "; free space on the data directory's filesystem" : ""));
  }
  return Ok();
}

// The descriptors the VMM inherits: the tap, when the node hands it over.
std::vector<int> KeptFds(const MachineSpec& spec) {
  if (spec.tap_fd < 0) return {};
  return {spec.tap_fd};
}

std::string Diagnose(const MachineSpec& spec) {
  std::string vmm = LastLines(spec.vmm_log, 3);
  std::string console = LastLines(spec.console_log, 3);
  std::string out;
  if (!vmm.empty()) out += fmt::format("; qemu said: {}", vmm);
  if (!console.empty()) out += fmt::format("; console: {}", console);
  return out;
}

// True when `cmdline` of `pid` mentions the VM's directory: the process is this VM's VMM.
bool RunsVm(int64_t pid, const MachineSpec& spec) {
  std::ifstream in(fmt::format("/proc/{}/cmdline", pid), std::ios::binary);
  std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return cmdline.find(spec.qmp_socket.string()) != std::string::npos;
}

}  // namespace

QemuDriver::QemuDriver(QemuDriverOptions options) : options_(std::move(options)) {}

std::string QemuDriver::Backend() {
  return options_.accel().accel == Accel::kKvm ? "qemu-kvm" : "qemu-tcg";
}

BackendInfo QemuDriver::Peek() {
  auto choice = options_.peek_accel ? options_.peek_accel() : options_.accel();
  if (!choice) return {"", "probing whether KVM boots a guest"};
  return {choice->accel == Accel::kKvm ? "qemu-kvm" : "qemu-tcg", choice->note};
}

QemuConfig QemuDriver::ConfigFor(const MachineSpec& spec, Accel accel) const {
  QemuConfig c;
  c.binary = options_.binary;
  c.accel = accel;
  c.vcpus = spec.vcpus;
  c.memory = spec.memory;
  c.kernel = spec.kernel;
  c.initrd = spec.initrd;
  c.rootfs = spec.rootfs;
  c.rootfs_readonly = spec.rootfs_readonly;
  c.cmdline = spec.cmdline;
  c.memory_file = spec.memory_file.string();
  c.qmp_socket = spec.qmp_socket.string();
  c.console_output = spec.console_log.string();
  c.agent_pipe = spec.agent_pipe.string();
  if (spec.tap_fd >= 0) {
    c.tap_fd = spec.tap_fd;
  } else {
    c.tap_name = spec.tap;
  }
  c.mac = spec.mac;
  return c;
}

Result<ProcessId> QemuDriver::Launch(const MachineSpec& spec) {
  auto argv = BuildQemuArgv(ConfigFor(spec, options_.accel().accel));
  if (!argv) return Fail(argv.error());
  std::error_code ec;
  fs::create_directories(spec.vm_dir, ec);
  if (ec) {
    return Fail(Code::kInternal,
                fmt::format("creating {}: {}", spec.vm_dir.string(), ec.message()));
  }
  // A cold boot: no stale socket, and a fresh RAM file of the right size.
  fs::remove(spec.qmp_socket, ec);
  if (auto s = AllocateMemoryFile(spec); !s) return Fail(s.error());
  if (auto s = MakeAgentPipes(spec); !s) return Fail(s.error());
  std::string stamp =
      fmt::format("{} {} at {}", kLaunchMarker, spec.name, FormatTime(SystemClock().Now()));
  if (auto s = AppendLine(spec.console_log, stamp); !s) return Fail(s.error());
  if (auto s = AppendLine(spec.vmm_log, stamp); !s) return Fail(s.error());
  auto process = Spawn(*argv, SpawnOptions{spec.vmm_log, KeptFds(spec)});
  if (!process)
    return Fail(process.error().Wrap(fmt::format("starting qemu for vm '{}'", spec.name)));
  spdlog::info("vm '{}': qemu started, pid {}", spec.name, process->pid);
  return process;
}

Status QemuDriver::WaitReady(const MachineSpec& spec, const ProcessId& process,
                             std::chrono::steady_clock::time_point deadline,
                             const CancelFlag& cancel) {
  ConsoleWatch watch{spec.console_log, image::kGuestReadyMarker,      spec.name, "qemu",
                     process,          [&] { return Diagnose(spec); }};
  return WaitForConsole(watch, deadline, cancel);
}

Status QemuDriver::Adopt(const MachineSpec& spec, const ProcessId& process) {
  if (!IsAlive(process)) {
    return Fail(Code::kNotFound,
                fmt::format("vm '{}': process {} is gone", spec.name, process.pid));
  }
  if (!RunsVm(process.pid, spec)) {
    return Fail(Code::kNotFound,
                fmt::format("vm '{}': process {} is not its qemu", spec.name, process.pid));
  }
  auto qmp = Qmp(spec, fmt::format("adopting pid {}", process.pid));
  if (!qmp) return Fail(qmp.error());
  auto status = qmp->Execute("query-status", nlohmann::json::object(), 2s);
  if (!status) return Fail(status.error().Wrap(fmt::format("vm '{}': query-status", spec.name)));
  return Ok();
}

Status QemuDriver::RequestShutdown(const MachineSpec& spec, const ProcessId& process) {
  auto qmp = Qmp(spec, "asking the guest to power off");
  if (!qmp) return Fail(qmp.error());
  auto r = qmp->Execute("system_powerdown", nlohmann::json::object(), 2s);
  if (!r) return Fail(r.error().Wrap(fmt::format("vm '{}': system_powerdown", spec.name)));
  return Ok();
}

namespace {

// A path for QEMU's `exec:` migration URI, which runs through /bin/sh.
std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

Status IgnoreSharedMemory(QmpClient& qmp) {
  auto r = qmp.Execute("migrate-set-capabilities",
                       {{"capabilities", {{{"capability", "x-ignore-shared"}, {"state", true}}}}});
  if (!r) return Fail(r.error().Wrap("migrate-set-capabilities x-ignore-shared"));
  return Ok();
}

// Polls `command` until `done(answer)` or the deadline.
Result<nlohmann::json> PollUntil(QmpClient& qmp, const std::string& command,
                                 const std::function<bool(const nlohmann::json&)>& done,
                                 std::chrono::milliseconds limit) {
  auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    auto r = qmp.Execute(command);
    if (!r) return r;
    if (done(*r)) return r;
    if (std::chrono::steady_clock::now() >= until) {
      return Fail(Code::kUnavailable,
                  fmt::format("{} still says {} after {} ms", command, r->dump(), limit.count()));
    }
    std::this_thread::sleep_for(2ms);
  }
}

}  // namespace

Result<fs::path> QemuDriver::SaveState(const MachineSpec& spec, const ProcessId& process,
                                       const fs::path& dir) {
  auto qmp = Qmp(spec, fmt::format("saving state of pid {}", process.pid));
  if (!qmp) return Fail(qmp.error());
  if (auto s = IgnoreSharedMemory(*qmp); !s) return Fail(s.error());
  if (auto r = qmp->Execute("stop"); !r) return Fail(r.error().Wrap("stop"));
  // QEMU reports `completed` once the state is in the pipe, possibly before `cat` has written
  // it all: the file gets its name only after cat succeeded, and a marker if it failed.
  fs::path state_file = dir / kStateFile;
  fs::path partial = state_file.string() + ".part";
  fs::path failed = state_file.string() + ".failed";
  std::string uri = fmt::format("exec:cat > {0} && mv {0} {1} || : > {2}", ShellQuote(partial),
                                ShellQuote(state_file), ShellQuote(failed));
  auto started = qmp->Execute("migrate", {{"uri", uri}});
  if (!started) return Fail(started.error().Wrap("migrate"));
  auto done = PollUntil(
      *qmp, "query-migrate",
      [](const nlohmann::json& r) {
        std::string status = r.value("status", "");
        return status == "completed" || status == "failed" || status == "cancelled";
      },
      60s);
  if (!done) return Fail(done.error().Wrap(fmt::format("vm '{}': saving state", spec.name)));
  if (done->value("status", "") != "completed") {
    return Fail(Code::kInternal,
                fmt::format("vm '{}': saving state failed: {}{}", spec.name,
                            done->value("error-desc", done->dump()), Diagnose(spec)));
  }
  std::error_code ec;
  for (auto until = std::chrono::steady_clock::now() + 30s;; std::this_thread::sleep_for(1ms)) {
    if (fs::exists(state_file, ec)) break;
    if (fs::exists(failed, ec) || std::chrono::steady_clock::now() >= until) {
      return Fail(Code::kInternal, fmt::format("vm '{}': writing the state to {} failed{}",
                                               spec.name, partial.string(), Diagnose(spec)));
    }
  }
  return spec.memory_file;
}

Status QemuDriver::Continue(const MachineSpec& spec, const ProcessId& process) {
  auto qmp = Qmp(spec, fmt::format("continuing pid {}", process.pid));
  if (!qmp) return Fail(qmp.error());
  if (auto r = qmp->Execute("cont"); !r) {
    return Fail(r.error().Wrap(fmt::format("vm '{}': cont", spec.name)));
  }
  return Ok();
}

Result<ProcessId> QemuDriver::Restore(
    const MachineSpec& spec, const fs::path& dir,
    const std::function<Status(const ProcessId&)>& before_running) {
  QemuConfig config = ConfigFor(spec, options_.accel().accel);
  config.incoming = true;
  auto argv = BuildQemuArgv(config);
  if (!argv) return Fail(argv.error());
  std::error_code ec;
  fs::remove(spec.qmp_socket, ec);
  if (auto s = MakeAgentPipes(spec); !s) return Fail(s.error());
  auto process = Spawn(*argv, SpawnOptions{spec.vmm_log, KeptFds(spec)});
  if (!process) return Fail(process.error().Wrap(fmt::format("vm '{}': restoring", spec.name)));
  auto fail = [&](const Error& e) {
    Kill(*process);
    WaitForExit(*process, 5s);
    return Fail(e.Wrap(fmt::format("vm '{}': restoring", spec.name)));
  };
  auto qmp = QmpClient::Connect(spec.qmp_socket.string(), 10s);
  if (!qmp) return fail(qmp.error());
  if (auto s = IgnoreSharedMemory(*qmp); !s) return fail(s.error());
  auto incoming =
      qmp->Execute("migrate-incoming", {{"uri", "exec:cat " + ShellQuote(dir / kStateFile)}});
  if (!incoming) return fail(incoming.error());
  // The saved guest was stopped, so it arrives paused.
  auto loaded = PollUntil(
      *qmp, "query-status",
      [](const nlohmann::json& r) { return r.value("status", "") != "inmigrate"; }, 60s);
  if (!loaded) return fail(loaded.error());
  if (std::string status = loaded->value("status", ""); status != "paused") {
    return fail(Error{Code::kInternal, fmt::format("loading the state ended in status '{}'{}",
                                                   status, Diagnose(spec))});
  }
  if (auto s = before_running(*process); !s) return fail(s.error());
  if (auto r = qmp->Execute("cont"); !r) return fail(r.error().Wrap("cont"));
  return process;
}

Status QemuDriver::SyncClock(const MachineSpec& spec, const ProcessId&) {
  return SetGuestClock(spec, 2s);  // off the resume path: it may wait
}

Result<std::string> QemuDriver::Version() {
  std::lock_guard lock(version_mu_);
  if (version_.empty()) {
    auto out = image::RunCommand({options_.binary, "--version"});
    if (!out) return Fail(out.error());
    std::string first = out->out.substr(0, out->out.find('\n'));
    if (first.empty()) {
      return Fail(Code::kUnavailable, fmt::format("{} --version printed nothing", options_.binary));
    }
    version_ = first;
  }
  return version_;
}

Status QemuDriver::Kill(const ProcessId& process) { return SignalProcess(process, SIGKILL); }

Result<std::string> QemuDriver::Describe(const MachineSpec& spec, const ProcessId& process) {
  auto qmp = Qmp(spec, "describing");
  if (!qmp) return Fail(qmp.error());
  auto status = qmp->Execute("query-status", nlohmann::json::object(), 2s);
  if (!status) return Fail(status.error());
  return status->dump();
}

}  // namespace hearth::hv::qemu

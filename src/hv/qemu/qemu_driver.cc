#include "hv/qemu/qemu_driver.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>
#include <fstream>
#include <functional>
#include <future>
#include <thread>
#include <utility>

#include "common/clock.h"
#include "common/files.h"
#include "common/text.h"
#include "hv/console_log.h"
#include "hv/qemu/agent_reader.h"
#include "hv/qemu/qmp_client.h"
#include "hv/qemu/qmp_migration.h"
#include "image/command.h"
#include "image/guest_init.h"

namespace hearth::hv::qemu {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

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
// port org.hearth.agent, answered "ok SECONDS"). Gives up quietly once `superseded` says a later
// request on the same channel took over (the VM was suspended and resumed again meanwhile): two
// readers of one FIFO would take each other's answers. Returns within `timeout` (plus one poll
// interval) and reads at most kAgentReadBudget bytes, whatever the guest sends.
Status SetGuestClock(const MachineSpec& spec, std::chrono::milliseconds timeout,
                     const std::function<bool()>& superseded) {
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
  AgentReader reader(out);
  reader.Discard(kAgentReadBudget / 2);  // stale answers of an earlier request that timed out
  // To the microsecond. An agent from an image built before it took fractions refuses those:
  // it is then asked for the nearest whole second (at most half a second off).
  auto now =
      std::chrono::time_point_cast<std::chrono::microseconds>(std::chrono::system_clock::now());
  int64_t us = now.time_since_epoch().count();
  std::string arg = fmt::format("{}.{:06d}", us / 1000000, us % 1000000);
  std::string whole = std::to_string((us + 500000) / 1000000);
  std::string expect = "ok " + arg;
  std::string request = fmt::format("settime {}\n", arg);
  bool confirmed = false;
  auto on_line = [&](std::string_view line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    confirmed = confirmed || line == expect;
    if (line == "error " + arg && arg != whole) {
      arg = whole;
      expect = "ok " + whole;
      std::string again = fmt::format("settime {}\n", whole);
      if (write(in, again.data(), again.size()) != static_cast<ssize_t>(again.size())) return;
    }
  };
  if (write(in, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
    auto until = std::chrono::steady_clock::now() + timeout;
    while (!confirmed && !reader.spent()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{out, POLLIN, 0};
      int ready = poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 50)));
      if (superseded()) {  // checked before reading: what comes now is the later request's
        close_both();
        return Ok();
      }
      if (ready < 0 && errno != EINTR) break;
      if (ready <= 0) continue;
      int n = reader.Read(on_line);
      if (n < 0) break;
      if (n == 0) std::this_thread::sleep_for(5ms);  // no writer yet (POLLHUP)
    }
  }
  close_both();
  if (confirmed) return Ok();
  std::string answer = reader.first_line().empty()
                           ? "none"
                           : EscapeText(reader.first_line(), {.max_bytes = 2 * kAgentLineBytes});
  std::string flood =
      reader.spent() ? fmt::format("; it sent {} bytes, more than an answer takes: stopped reading",
                                   reader.bytes_read())
                     : "";
  return Fail(Code::kUnavailable,
              fmt::format("the guest agent did not confirm the clock (answer: '{}'{}); guests "
                          "without hearth's agent keep the time they had when suspended",
                          answer, flood));
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

// The descriptors the VMM inherits: the QMP socket, and the tap when the node hands it over.
std::vector<int> KeptFds(const MachineSpec& spec, const QmpListener& qmp) {
  std::vector<int> fds = {qmp.fd()};
  if (spec.tap_fd >= 0) fds.push_back(spec.tap_fd);
  return fds;
}

std::string Diagnose(const MachineSpec& spec) {
  std::string vmm = LastLines(spec.vmm_log, 3);
  std::string console = LastLines(spec.console_log, 3);
  std::string out;
  if (!vmm.empty()) out += fmt::format("; qemu said: {}", vmm);
  if (!console.empty()) out += fmt::format("; console: {}", console);
  return out;
}

// True when `cmdline` of `pid` names the VM's RAM file: the process is this VM's VMM.
bool RunsVm(int64_t pid, const MachineSpec& spec) {
  return ProcessCmdline(pid).find("mem-path=" + EscapeOptionValue(spec.memory_file.string()) +
                                  ",") != std::string::npos;
}

}  // namespace

// No sweep of empty VM cgroups at start: the parent (hearth.slice) is shared by every hearthd on
// the host, and a sweep removed another hearthd's cgroup between its creation and its QEMU's join
// (ENODEV). A VM's own left-over cgroup is replaced at its next start (CreateCgroups).
QemuDriver::QemuDriver(QemuDriverOptions options) : options_(std::move(options)) {
  if (!options_.qmp) options_.qmp = RealQmpConnector();
}

Result<std::unique_ptr<QmpChannel>> QemuDriver::Qmp(const MachineSpec& spec, std::string_view what,
                                                    std::chrono::milliseconds timeout) const {
  auto qmp = options_.qmp(spec.qmp_socket, timeout, /*bound_before=*/false);
  if (!qmp) return Fail(qmp.error().Wrap(fmt::format("vm '{}': {}", spec.name, what)));
  return qmp;
}

CgroupPlan QemuDriver::CgroupsOf(std::string_view vm_id, MiB memory, int vcpus, Accel accel) const {
  return PlanVmCgroup(options_.confinement.cgroups, vm_id, QemuMemoryLimitBytes(memory, accel),
                      vcpus);
}

Result<SpawnOptions> QemuDriver::Confine(const MachineSpec& spec, Accel accel,
                                         const QmpListener& qmp) {
  SpawnOptions o{spec.vmm_log, KeptFds(spec, qmp)};
  const QemuConfinement& c = options_.confinement;
  if (c.users.enabled()) {
    Result<VmmUser> user;
    {
      std::lock_guard lock(users_mu_);
      user = AssignVmmUser(c.users, spec.vm_dir.parent_path(), spec.vm_dir);
    }
    if (!user) return Fail(user.error());
    if (auto s = ApplyGrants(PlanGrants(spec, c.data_dir), *user); !s) return Fail(s.error());
    o.run_as = SpawnOptions::Credentials{user->uid, user->gid, {user->shared_gid}};
    if (accel == Accel::kKvm && c.kvm_gid != static_cast<gid_t>(-1)) {
      o.run_as->groups.push_back(c.kvm_gid);
    }
    o.must_access = QemuOpens(spec);
  }
  CgroupPlan cgroups = CgroupsOf(spec.vm_id, spec.memory, spec.vcpus, accel);
  if (!cgroups.empty()) {
    if (auto s = CreateCgroups(cgroups); !s) return Fail(s.error());
    auto fds = OpenCgroupProcs(cgroups);
    if (!fds) {
      RemoveCgroups(cgroups);
      return Fail(fds.error());
    }
    o.cgroup_procs = *fds;
  }
  return o;
}

Result<ProcessId> QemuDriver::SpawnConfined(const MachineSpec& spec, Accel accel,
                                            const std::vector<std::string>& argv,
                                            const QmpListener& qmp,
                                            std::future<Status>* join_later) {
  auto options = Confine(spec, accel, qmp);
  if (!options) return Fail(options.error());
  std::vector<int> late;
  if (join_later) std::swap(late, options->cgroup_procs);
  auto process = Spawn(argv, *options);
  for (int fd : options->cgroup_procs) ::close(fd);
  if (!process) {
    for (int fd : late) ::close(fd);
    RemoveCgroups(CgroupsOf(spec.vm_id, spec.memory, spec.vcpus, accel));
    return process;
  }
  if (join_later) {
    pid_t pid = static_cast<pid_t>(process->pid);
    *join_later = std::async(std::launch::async, [late, pid] { return JoinCgroups(late, pid); });
  }
  std::lock_guard lock(vmm_mu_);
  vmm_vm_[process->pid] = spec.vm_id;
  return process;
}

void QemuDriver::Exited(const ProcessId& process) {
  std::string vm_id;
  {
    std::lock_guard lock(vmm_mu_);
    auto it = vmm_vm_.find(process.pid);
    if (it == vmm_vm_.end()) return;
    vm_id = it->second;
    vmm_vm_.erase(it);
  }
  RemoveCgroups(CgroupsOf(vm_id, MiB{0}, 1, Accel::kTcg));
}

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
  c.tcg_cache_mib = kTcgCacheMiB;
  return c;
}

Result<ProcessId> QemuDriver::Launch(const MachineSpec& spec) {
  std::error_code ec;
  fs::create_directories(spec.vm_dir, ec);
  if (ec) {
    return Fail(Code::kInternal,
                fmt::format("creating {}: {}", spec.vm_dir.string(), ec.message()));
  }
  auto qmp = QmpListener::Open(spec.qmp_socket);
  if (!qmp) return Fail(qmp.error().Wrap(fmt::format("starting vm '{}'", spec.name)));
  Accel accel = options_.accel().accel;
  QemuConfig config = ConfigFor(spec, accel);
  config.qmp_fd = qmp->fd();
  auto argv = BuildQemuArgv(config);
  if (!argv) return Fail(argv.error());
  // A cold boot: a fresh RAM file of the right size.
  if (auto s = AllocateMemoryFile(spec); !s) return Fail(s.error());
  if (auto s = MakeAgentPipes(spec); !s) return Fail(s.error());
  if (auto s = StampLaunch(spec.console_log, spec.vmm_log, spec.name); !s) return Fail(s.error());
  auto process = SpawnConfined(spec, accel, *argv, *qmp);
  qmp->Close();
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
  auto qmp = Qmp(spec, fmt::format("adopting pid {}", process.pid), 2s);
  if (!qmp) return Fail(qmp.error());
  auto status = RunCall(**qmp, QueryStatus(2s));
  if (!status) return Fail(status.error().Wrap(fmt::format("vm '{}': query-status", spec.name)));
  std::lock_guard lock(vmm_mu_);
  vmm_vm_[process.pid] = spec.vm_id;  // its cgroups go when it exits
  return Ok();
}

Status QemuDriver::RequestShutdown(const MachineSpec& spec, const ProcessId& process) {
  auto qmp = Qmp(spec, "asking the guest to power off", 2s);
  if (!qmp) return Fail(qmp.error());
  auto r = RunCall(**qmp, SystemPowerdown());
  if (!r) return Fail(r.error().Wrap(fmt::format("vm '{}': system_powerdown", spec.name)));
  return Ok();
}

Status QemuDriver::RunSave(const MachineSpec& spec, QmpChannel& qmp, const fs::path& partial) {
  // Until `migrate` took the descriptor QEMU holds it; after, the migration must be over before
  // the caller lets the guest run on.
  bool handed_over = false;
  bool migrating = false;
  auto fail = [&](const Error& e) {
    for (const QmpCall& call : SaveAbortFlow(migrating)) {
      if (auto r = RunCall(qmp, call); !r && migrating) {
        spdlog::warn("vm '{}': cancelling the save: {}", spec.name, r.error().message);
      }
    }
    std::error_code ec;
    fs::remove(partial, ec);
    return Fail(e);
  };
  for (const QmpCall& call : SaveFlow(partial)) {
    bool answered = false;
    auto outcome = RunCall(qmp, call, &answered);
    if (!outcome && !handed_over) return Fail(outcome.error());
    if (!outcome) {
      migrating = answered && call.then_wait.has_value();
      return fail(outcome.error());
    }
    if (call.pass_file) handed_over = true;
    if (auto got = Unexpected(call, *outcome)) {  // the migration failed: QEMU says why
      auto info = RunCall(qmp, QueryMigrate());
      std::string why = *got;
      if (info && info->is_object() && info->contains("error-desc") &&
          (*info)["error-desc"].is_string()) {
        why = (*info)["error-desc"].get<std::string>();
      }
      return fail(Error{Code::kInternal, fmt::format("{}{}", why, Diagnose(spec))});
    }
  }
  // Written under a temporary name, named only once QEMU reports it whole.
  std::error_code ec;
  fs::path state_file = partial.parent_path() / kStateFile;
  fs::rename(partial, state_file, ec);
  if (ec) {
    return fail(
        Error{Code::kInternal, fmt::format("naming {}: {}", partial.string(), ec.message())});
  }
  return Ok();
}

Result<fs::path> QemuDriver::SaveState(const MachineSpec& spec, const ProcessId& process,
                                       const fs::path& dir) {
  auto qmp = Qmp(spec, fmt::format("saving state of pid {}", process.pid), 2s);
  if (!qmp) return Fail(qmp.error());
  fs::path partial = (dir / kStateFile).string() + std::string(files::kPartialSuffix);
  if (auto s = RunSave(spec, **qmp, partial); !s) {
    return Fail(s.error().Wrap(fmt::format("vm '{}': saving state", spec.name)));
  }
  return spec.memory_file;
}

Status QemuDriver::Continue(const MachineSpec& spec, const ProcessId& process) {
  auto qmp = Qmp(spec, fmt::format("continuing pid {}", process.pid), 2s);
  if (!qmp) return Fail(qmp.error());
  for (const QmpCall& call : ContinueFlow()) {
    if (auto r = RunCall(**qmp, call); !r) {
      return Fail(r.error().Wrap(fmt::format("vm '{}'", spec.name)));
    }
  }
  return Ok();
}

Result<ProcessId> QemuDriver::Restore(
    const MachineSpec& spec, const fs::path& dir,
    const std::function<Status(const ProcessId&)>& before_running) {
  auto listener = QmpListener::Open(spec.qmp_socket);
  if (!listener) return Fail(listener.error().Wrap(fmt::format("vm '{}': restoring", spec.name)));
  Accel accel = options_.accel().accel;
  QemuConfig config = ConfigFor(spec, accel);
  config.incoming = true;
  config.qmp_fd = listener->fd();
  auto argv = BuildQemuArgv(config);
  if (!argv) return Fail(argv.error());
  if (auto s = MakeAgentPipes(spec); !s) return Fail(s.error());
  // Joining cgroups overlaps QEMU's start: the guest runs only after `cont`, once it has joined.
  std::future<Status> joined;
  auto process = SpawnConfined(spec, accel, *argv, *listener, &joined);
  listener->Close();
  if (!process) return Fail(process.error().Wrap(fmt::format("vm '{}': restoring", spec.name)));
  auto fail = [&](const Error& e) {
    if (joined.valid()) joined.wait();
    Kill(*process);
    WaitForExit(*process, 5s);
    Exited(*process);
    return Fail(e.Wrap(fmt::format("vm '{}': restoring", spec.name)));
  };
  auto qmp = options_.qmp(spec.qmp_socket, 10s, /*bound_before=*/true);
  if (!qmp) return fail(Error{qmp.error().code, qmp.error().message + Diagnose(spec)});
  for (const QmpCall& call : RestoreFlow(dir / kStateFile)) {
    bool answered = false;
    auto outcome = RunCall(**qmp, call, &answered);
    if (!outcome && answered) {  // QEMU ends itself when a load fails: its log says why
      return fail(Error{outcome.error().code, outcome.error().message + Diagnose(spec)});
    }
    if (!outcome) return fail(outcome.error());
    if (auto got = Unexpected(call, *outcome)) {
      std::string what =
          call.then_wait ? fmt::format("loading the state ended '{}'", *got)
                         : fmt::format("the loaded VM is '{}', not {}", *got, call.expect->value);
      return fail(Error{Code::kInternal, what + Diagnose(spec)});
    }
  }
  if (joined.valid()) {
    if (auto s = joined.get(); !s) return fail(s.error());
  }
  if (auto s = before_running(*process); !s) return fail(s.error());
  for (const QmpCall& call : RunFlow()) {
    if (auto r = RunCall(**qmp, call); !r) return fail(r.error());
  }
  return process;
}

Status QemuDriver::SyncClock(const MachineSpec& spec, const ProcessId&) {
  uint64_t mine;
  {
    std::lock_guard lock(clock_mu_);
    mine = ++clock_requests_[spec.vm_id];
  }
  return SetGuestClock(spec, 2s, [&] {  // off the resume path: it may wait
    std::lock_guard lock(clock_mu_);
    return clock_requests_[spec.vm_id] != mine;
  });
}

void QemuDriver::Forget(const MachineSpec& spec) {
  {
    std::lock_guard lock(clock_mu_);
    clock_requests_.erase(spec.vm_id);
  }
  RemoveCgroups(CgroupsOf(spec.vm_id, MiB{0}, 1, Accel::kTcg));
}

Result<std::string> QemuDriver::Version() { return version_.Get(options_.binary); }

Status QemuDriver::Kill(const ProcessId& process) { return SignalProcess(process, SIGKILL); }

Result<std::string> QemuDriver::Describe(const MachineSpec& spec, const ProcessId& process) {
  auto qmp = Qmp(spec, "describing", 2s);
  if (!qmp) return Fail(qmp.error());
  auto status = RunCall(**qmp, QueryStatus(2s));
  if (!status) return Fail(status.error());
  return status->dump();
}

}  // namespace hearth::hv::qemu

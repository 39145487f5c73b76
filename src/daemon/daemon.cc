#include "daemon/daemon.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "hv/firecracker/firecracker_host.h"
#include "net/host_networks.h"
#include "net/linux_network.h"

namespace hearth::daemon {
namespace {

int Die(const Error& e) {
  std::fprintf(stderr, "hearthd: %s\n", e.message.c_str());
  return 1;
}

// Holds an exclusive flock on <data-dir>/hearthd.lock for the life of the process.
Result<int> LockDataDir(const Paths& paths) {
  int fd = open(paths.lock_file().c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Fail(Code::kUnavailable,
                fmt::format("opening {}: {}", paths.lock_file().string(), strerror(errno)));
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = {};
    ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
    (void)n;
    close(fd);
    return Fail(Code::kUnavailable,
                fmt::format("another hearthd (pid {}) is using {}; stop it or pick another "
                            "--data-dir",
                            strtol(pid, nullptr, 10), paths.data_dir().string()));
  }
  std::string text = fmt::format("{}\n", getpid());
  if (ftruncate(fd, 0) != 0 || pwrite(fd, text.data(), text.size(), 0) < 0) {
    spdlog::warn("could not write the pid to {}", paths.lock_file().string());
  }
  return fd;
}

// Raises the soft file limit to the hard one: every API connection, VM tap, VMM socket and log
// is a file descriptor, and the usual soft limit of 1024 runs out long before the hard one.
void RaiseFileLimit() {
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) != 0 || files.rlim_cur >= files.rlim_max) return;
  rlim_t was = files.rlim_cur;
  files.rlim_cur = files.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &files) != 0) {
    spdlog::warn("could not raise the open file limit from {} to {}: {}", was, files.rlim_max,
                 strerror(errno));
  }
}

std::string HostName() {
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  return host;
}

// The Firecracker driver `cfg` asks for, or why it cannot run on this host. `check_kvm` false
// skips the /dev/kvm check (HEARTH_TEST_NO_KVM_CHECK=1: tests against a Firecracker double).
Result<hv::firecracker::FirecrackerDriverOptions> FirecrackerOptions(
    const config::DaemonConfig& cfg, bool check_kvm) {
  const char* path_env = std::getenv("PATH");
  std::string path = path_env ? path_env : "";
  hv::firecracker::FirecrackerDriverOptions o;
  auto binary =
      hv::firecracker::FindExecutable(cfg.firecracker, "firecracker", "firecracker", path);
  if (!binary) return Fail(binary.error());
  // The jailer names the jail after the resolved binary (a release's firecracker-v1.16.1-x86_64
  // behind a symlink), so hearthd must build its paths from the same name.
  std::error_code resolved;
  o.binary = std::filesystem::canonical(*binary, resolved);
  if (resolved) o.binary = *binary;
  if (!cfg.jailer.empty()) {
    auto jailer = hv::firecracker::FindExecutable(cfg.jailer, "jailer", "jailer", path);
    if (!jailer) return Fail(jailer.error());
    o.jail.jailer = *jailer;
    o.jail.firecracker = o.binary;
    o.jail.uid = static_cast<uid_t>(cfg.jailer_uid);
    o.jail.gid = static_cast<gid_t>(cfg.jailer_gid);
    o.jail.chroot_base = cfg.jailer_chroot_base;
    if (o.binary.filename().string().find("firecracker") == std::string::npos) {
      return Fail(Code::kFailedPrecondition,
                  fmt::format("--firecracker: the jailer runs only a binary whose name contains "
                              "\"firecracker\", not {}",
                              o.binary.string()));
    }
  }
  if (check_kvm) {
    if (auto s = hv::firecracker::CheckKvmDevice(); !s) return Fail(s.error());
  }
  return o;
}

// Who QEMU runs as and in which cgroups (README, "Confinement"); what is missing is logged.
hv::qemu::QemuConfinement QemuConfinementFor(const config::DaemonConfig& cfg, const Paths& paths) {
  hv::qemu::QemuConfinement c;
  c.users.base = static_cast<uint32_t>(cfg.vmm_id_base);
  c.data_dir = paths.data_dir();
  c.cgroups = hv::FindOwnCgroupHierarchy();
  struct stat kvm {};
  if (stat("/dev/kvm", &kvm) == 0) c.kvm_gid = kvm.st_gid;
  if (!c.users.enabled()) spdlog::warn("--vmm-id-base 0: QEMU runs as root");
  if (c.cgroups.kind == hv::CgroupHierarchy::Kind::kNone) {
    spdlog::warn("QEMU runs without a memory limit or CPU weight: {}", c.cgroups.why_none);
  }
  return c;
}

}  // namespace

Daemon::Daemon(config::DaemonConfig cfg) : cfg_(std::move(cfg)), paths_(cfg_.data_dir) {}

int Daemon::Run() {
  if (int rc = CheckConfig(); rc != 0) return rc;
  spdlog::set_level(spdlog::level::from_str(cfg_.log_level));
  RaiseFileLimit();
  listen_ = *config::ParseListen(cfg_.listen);
  db_path_ = *config::SqlitePath(cfg_.store);
  for (Status (Daemon::*step)() : {&Daemon::OpenState, &Daemon::StartHypervisor, &Daemon::StartNode,
                                   &Daemon::StartMetering, &Daemon::Serve}) {
    if (auto s = (this->*step)(); !s) return Die(s.error());
  }
  WaitAndShutDown();
  return 0;
}

int Daemon::CheckConfig() {
  if (auto s = config::Validate(cfg_); !s) {
    Die(s.error());
    return 2;
  }
  // The VMs' routes must not shadow a network this host is already on.
  auto host_networks = net::HostIpv4Networks();
  if (!host_networks) return Die(host_networks.error());
  if (auto s = net::AddressPool::Parse(cfg_.network_pool)->CheckHostNetworks(*host_networks); !s) {
    Die(s.error().Wrap("--network-pool"));
    return 2;
  }
  return 0;
}

Status Daemon::OpenState() {
  std::error_code ec;
  std::filesystem::create_directories(paths_.data_dir(), ec);
  if (ec) {
    return Fail(Code::kUnavailable, fmt::format("--data-dir: creating {}: {}",
                                                paths_.data_dir().string(), ec.message()));
  }
  chmod(paths_.data_dir().c_str(), 0700);
  auto lock = LockDataDir(paths_);  // held for the life of the process
  if (!lock) return Fail(lock.error());

  auto host = ReadLinuxHostInfo();
  if (!host) return Fail(host.error());
  host_ = *host;
  // A full disk must not keep hearthd from starting: freeing the reserve gives the store room to
  // open and to delete VMs, in read-only mode (store/disk_reserve.h).
  reserve_ = std::make_unique<store::DiskReserve>(store::DiskReserve::ReserveFileFor(db_path_));
  auto store = store::SqliteStateStore::Open(db_path_);
  if (!store && IsDiskFull(store.error()) && reserve_->EnterReadOnly(store.error().message)) {
    store = store::SqliteStateStore::Open(db_path_);
  }
  if (!store && IsDiskFull(store.error())) {
    return Fail(store.error().Wrap(
        fmt::format("cannot start: there is no disk reserve ({}) left to free; free some space",
                    reserve_->file().string())));
  }
  if (!store) return Fail(store.error());
  store_ = std::move(*store);
  if (auto s = reserve_->Ensure(); !s) spdlog::warn("no disk reserve: {}", s.error().message);
  store::DiskReserve* reserve = reserve_.get();
  store_->SetOnDiskFull([reserve](const Error& e) { reserve->EnterReadOnly(e.message); });
  auto auth = api::TokenAuthenticator::Init(*store_, paths_);
  if (!auth) return Fail(auth.error());
  auth_ = std::move(*auth);
  auto usage = metering::SqliteUsageStore::Open(db_path_);
  if (!usage) return Fail(usage.error());
  usage_ = std::move(*usage);
  usage_->SetWriteGate([reserve] { return reserve->CheckWritable("metering"); });
  return Ok();
}

// The hypervisor: QEMU, or Firecracker when asked for (and able to run), or with `auto` when its
// binary is here and a probe guest really booted under KVM.
Status Daemon::StartHypervisor() {
  hv::qemu::KvmProbeOptions probe_options;
  probe_options.mode = *hv::qemu::ParseAccelMode(cfg_.accel);
  probe_options.image_dir = paths_.image_dir("default");
  probe_options.cache = Paths::kvm_probe_cache();
  probe_options.tsc_khz = host_->tsc_khz;
  probe_ = std::make_unique<hv::qemu::KvmProbe>(probe_options);
  probe_->Start();
  hv::qemu::KvmProbe* probe = probe_.get();
  hv::qemu::QemuDriverOptions qemu_options;
  qemu_options.accel = [probe] { return probe->Get(); };
  qemu_options.peek_accel = [probe] { return probe->Peek(); };
  qemu_options.confinement = QemuConfinementFor(cfg_, paths_);
  if (auto s = hv::qemu::CheckDataDirReachable(paths_.data_dir(), qemu_options.confinement.users);
      !s) {
    return s;
  }
  qemu_ = std::make_unique<hv::qemu::QemuDriver>(qemu_options);
  driver_ = qemu_.get();
  const char* no_kvm_check = std::getenv("HEARTH_TEST_NO_KVM_CHECK");
  bool check_kvm = !(no_kvm_check && std::string_view(no_kvm_check) == "1");
  if (cfg_.hypervisor == "firecracker") {
    auto options = FirecrackerOptions(cfg_, check_kvm);
    if (!options) {
      return Fail(options.error().Wrap("--hypervisor firecracker cannot run on this host"));
    }
    firecracker_ = std::make_unique<hv::firecracker::FirecrackerDriver>(*options);
  } else if (cfg_.hypervisor == "auto") {
    auto options = FirecrackerOptions(cfg_, check_kvm);
    if (options && (!check_kvm || probe_->Get().accel == hv::qemu::Accel::kKvm)) {
      firecracker_ = std::make_unique<hv::firecracker::FirecrackerDriver>(*options);
    } else {
      spdlog::info("hypervisor: qemu (firecracker not used: {})",
                   options ? probe_->Get().note : options.error().message);
    }
  }
  if (firecracker_) {
    driver_ = firecracker_.get();
    spdlog::info("hypervisor: {}", firecracker_->Peek().note);
  }
  return Ok();
}

Status Daemon::StartNode() {
  network_ = net::NewLinuxNetwork(net::NetworkOptions::ForDataDir(paths_.data_dir()));
  node::NodeOptions node_options;
  node_options.memory_ratio = cfg_.memory_ratio;
  node_options.masquerade = cfg_.nat == "on";
  node_options.allowed_paths = config::AllowedPaths(cfg_);
  node::Machinery machinery;
  machinery.driver = driver_;
  machinery.network = network_.get();
  machinery.pool = *net::AddressPool::Parse(cfg_.network_pool);
  machinery.ports = &port_holders_;
  waker_ = std::make_unique<net::WakeListener>();
  machinery.waker = waker_.get();
  node_ = std::make_unique<node::Node>(*store_, *host_, files_, clock_, paths_, node_options,
                                       machinery);
  node::Node* node = node_.get();
  waker_->SetOnWake([node](const std::string& vm, std::chrono::steady_clock::time_point seen) {
    node->OnWake(vm, seen);
  });
  if (auto s = node_->Load(); !s) return s;
  return node_->Recover();
}

// After StartNode's Recover, so that metering starts from the VMs as this hearthd found them.
Status Daemon::StartMetering() {
  reader_ = std::make_unique<metering::LinuxUsageReader>(paths_, driver_);
  if (!cfg_.clickhouse.empty()) {
    auto endpoint = *metering::ParseClickHouseUrl(cfg_.clickhouse);
    auto opened = metering::Spool::Open(paths_.clickhouse_spool(), int64_t{1} << 30);
    if (!opened) return Fail(opened.error());
    spool_ = std::move(*opened);
    clickhouse_ = std::make_unique<http::ClickHouseHttpTransport>(endpoint);
    metering::ClickHouseSinkOptions sink_options;
    sink_options.database = endpoint.database;
    sink_options.node = HostName();
    sink_ = std::make_unique<metering::ClickHouseSink>(*clickhouse_, *spool_, sink_options);
    clickhouse_usage_ = std::make_unique<metering::ClickHouseUsageSource>(
        *clickhouse_, endpoint.database, sink_options.node);
    metering::ClickHouseSink* sink = sink_.get();
    metrics_.SetSinkStats([sink] { return sink->stats(); });
  }
  metering::SamplerOptions sampler_options;
  sampler_options.interval = config::MeteringInterval(cfg_);
  sampler_options.retention = config::MeteringRetention(cfg_);
  node::Node* node = node_.get();
  sampler_ = std::make_unique<metering::Sampler>(
      *store_, *usage_, *reader_, clock_, [node] { return node->List(); }, metrics_,
      sampler_options, sink_.get());
  if (auto s = sampler_->Load(); !s) return s;
  if (sink_) sink_->Start();
  sampler_->Start();
  return Ok();
}

Status Daemon::Serve() {
  http::ServerOptions options;
  options.tcp_host = listen_.host;
  options.tcp_port = listen_.port;
  options.unix_socket = paths_.socket();
  options.max_connections = static_cast<int>(cfg_.max_connections);
  options.max_connections_per_address = static_cast<int>(cfg_.max_connections_per_address);
  options.first_byte_timeout = config::FirstByteTimeout(cfg_);
  // Handlers block on store commits; enough threads let concurrent writes share a commit while
  // reads go on. Half of them may wait for VMs to settle (`wait=`).
  options.threads = std::clamp(2 * host_->cpus, 4, 16);
  handler_ = std::make_unique<api::ApiHandler>(
      *node_, *auth_, api::MeteringApi{&metrics_, usage_.get(), clickhouse_usage_.get(), &clock_},
      options.threads / 2);
  handler_->SetDiskReserve(reserve_.get());
  server_ = std::make_unique<http::Server>(*handler_, options);
  if (auto s = server_->Start(); !s) return s;
  spdlog::info("API: at most {} TCP connections, {} per client address",
               server_->tcp_connection_cap(), cfg_.max_connections_per_address);

  std::string tcp = listen_.host.empty()
                        ? "no TCP"
                        : fmt::format("http://{}:{}", listen_.host, server_->tcp_port());
  // One line on stdout that scripts and tests wait for.
  std::printf("hearthd %s: listening on %s and unix:%s\n", HEARTH_VERSION, tcp.c_str(),
              paths_.socket().c_str());
  std::fflush(stdout);
  spdlog::info("serving {} VMs from {}; {} CPUs, {} MiB RAM, memory ratio {}", node_->List().size(),
               cfg_.store, host_->cpus, host_->memory.value, cfg_.memory_ratio);
  if (auto why = reserve_->ReadOnlyReason()) spdlog::warn("read-only: {}", *why);
  return Ok();
}

void Daemon::WaitAndShutDown() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("received {}, shutting down", strsignal(sig));
  node_->ReleaseWaiters();  // requests waiting for a VM to settle answer now: Stop joins them
  server_->Stop();
  waker_->SetOnWake({});  // no wake reaches the node from here on
  sampler_->Stop();
  if (sink_) sink_->Stop();
  node_->Shutdown();
}

}  // namespace hearth::daemon

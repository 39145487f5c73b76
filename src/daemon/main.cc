// hearthd: the node daemon. Parses and checks its configuration, takes the data directory's
// lock, opens the store, and serves the API until SIGINT or SIGTERM.
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "api/api_handler.h"
#include "api/auth.h"
#include "common/paths.h"
#include "config/daemon_config.h"
#include "http/clickhouse_http_transport.h"
#include "http/server.h"
#include "hv/firecracker/firecracker_driver.h"
#include "hv/firecracker/firecracker_host.h"
#include "hv/qemu/kvm_probe.h"
#include "hv/qemu/qemu_driver.h"
#include "metering/clickhouse_sink.h"
#include "metering/clickhouse_usage_source.h"
#include "metering/metrics.h"
#include "metering/sampler.h"
#include "metering/sqlite_usage_store.h"
#include "metering/usage_reader.h"
#include "model/host.h"
#include "model/port_holders.h"
#include "net/host_networks.h"
#include "net/linux_network.h"
#include "net/wake_listener.h"
#include "node/node.h"
#include "store/disk_reserve.h"
#include "store/sqlite_state_store.h"

namespace hearth {
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

int Run(config::DaemonConfig cfg) {
  if (auto s = config::Validate(cfg); !s) {
    Die(s.error());
    return 2;
  }
  // The VMs' routes must not shadow a network this host is already on.
  auto host_networks = net::HostIpv4Networks();
  if (!host_networks) return Die(host_networks.error());
  if (auto s = net::AddressPool::Parse(cfg.network_pool)->CheckHostNetworks(*host_networks); !s) {
    Die(s.error().Wrap("--network-pool"));
    return 2;
  }
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));
  RaiseFileLimit();
  auto listen = config::ParseListen(cfg.listen);
  auto db_path = config::SqlitePath(cfg.store);

  Paths paths(cfg.data_dir);
  std::error_code ec;
  std::filesystem::create_directories(paths.data_dir(), ec);
  if (ec) {
    return Die(Error{Code::kUnavailable, fmt::format("--data-dir: creating {}: {}",
                                                     paths.data_dir().string(), ec.message())});
  }
  chmod(paths.data_dir().c_str(), 0700);
  auto lock = LockDataDir(paths);
  if (!lock) return Die(lock.error());

  auto host = ReadLinuxHostInfo();
  if (!host) return Die(host.error());
  // A full disk must not keep hearthd from starting: freeing the reserve gives the store room to
  // open and to delete VMs, in read-only mode (store/disk_reserve.h).
  store::DiskReserve reserve(store::DiskReserve::ReserveFileFor(*db_path));
  auto store = store::SqliteStateStore::Open(*db_path);
  if (!store && IsDiskFull(store.error()) && reserve.EnterReadOnly(store.error().message)) {
    store = store::SqliteStateStore::Open(*db_path);
  }
  if (!store && IsDiskFull(store.error())) {
    return Die(store.error().Wrap(
        fmt::format("cannot start: there is no disk reserve ({}) left to free; free some space",
                    reserve.file().string())));
  }
  if (!store) return Die(store.error());
  if (auto s = reserve.Ensure(); !s) spdlog::warn("no disk reserve: {}", s.error().message);
  (*store)->SetOnDiskFull([&reserve](const Error& e) { reserve.EnterReadOnly(e.message); });
  auto auth = api::TokenAuthenticator::Init(**store, paths);
  if (!auth) return Die(auth.error());
  auto usage = metering::SqliteUsageStore::Open(*db_path);
  if (!usage) return Die(usage.error());
  (*usage)->SetWriteGate([&reserve] { return reserve.CheckWritable("metering"); });

  LinuxFileProbe files;
  SystemClock clock;
  hv::qemu::KvmProbeOptions probe_options;
  probe_options.mode = *hv::qemu::ParseAccelMode(cfg.accel);
  probe_options.image_dir = paths.image_dir("default");
  probe_options.cache = Paths::kvm_probe_cache();
  probe_options.tsc_khz = host->tsc_khz;
  hv::qemu::KvmProbe probe(probe_options);
  probe.Start();
  hv::qemu::QemuDriverOptions qemu_options;
  qemu_options.accel = [&probe] { return probe.Get(); };
  qemu_options.peek_accel = [&probe] { return probe.Peek(); };
  qemu_options.confinement = QemuConfinementFor(cfg, paths);
  if (auto s = hv::qemu::CheckDataDirReachable(paths.data_dir(), qemu_options.confinement.users);
      !s) {
    return Die(s.error());
  }
  hv::qemu::QemuDriver qemu(qemu_options);
  // The hypervisor: QEMU, or Firecracker when asked for (and able to run), or with `auto` when
  // its binary is here and a probe guest really booted under KVM.
  hv::HypervisorDriver* driver = &qemu;
  std::unique_ptr<hv::firecracker::FirecrackerDriver> firecracker;
  const char* no_kvm_check = std::getenv("HEARTH_TEST_NO_KVM_CHECK");
  bool check_kvm = !(no_kvm_check && std::string_view(no_kvm_check) == "1");
  if (cfg.hypervisor == "firecracker") {
    auto options = FirecrackerOptions(cfg, check_kvm);
    if (!options) {
      return Die(options.error().Wrap("--hypervisor firecracker cannot run on this host"));
    }
    firecracker = std::make_unique<hv::firecracker::FirecrackerDriver>(*options);
  } else if (cfg.hypervisor == "auto") {
    auto options = FirecrackerOptions(cfg, check_kvm);
    if (options && (!check_kvm || probe.Get().accel == hv::qemu::Accel::kKvm)) {
      firecracker = std::make_unique<hv::firecracker::FirecrackerDriver>(*options);
    } else {
      spdlog::info("hypervisor: qemu (firecracker not used: {})",
                   options ? probe.Get().note : options.error().message);
    }
  }
  if (firecracker) {
    driver = firecracker.get();
    spdlog::info("hypervisor: {}", firecracker->Peek().note);
  }
  std::unique_ptr<net::Network> network =
      net::NewLinuxNetwork(net::NetworkOptions::ForDataDir(paths.data_dir()));
  node::NodeOptions node_options;
  node_options.memory_ratio = cfg.memory_ratio;
  node_options.masquerade = cfg.nat == "on";
  node_options.allowed_paths = config::AllowedPaths(cfg);
  LinuxPortHolders port_holders;
  node::Machinery machinery;
  machinery.driver = driver;
  machinery.network = network.get();
  machinery.pool = *net::AddressPool::Parse(cfg.network_pool);
  machinery.ports = &port_holders;
  auto waker = std::make_unique<net::WakeListener>();
  machinery.waker = waker.get();
  node::Node node(**store, *host, files, clock, paths, node_options, machinery);
  waker->SetOnWake([&node](const std::string& vm, std::chrono::steady_clock::time_point seen) {
    node.OnWake(vm, seen);
  });
  if (auto s = node.Load(); !s) return Die(s.error());
  if (auto s = node.Recover(); !s) return Die(s.error());

  // Metering: after Recover, so that it starts from the VMs as this hearthd found them.
  metering::Metrics metrics;
  metering::LinuxUsageReader reader(paths, driver);
  std::unique_ptr<http::ClickHouseHttpTransport> clickhouse;
  std::unique_ptr<metering::Spool> spool;
  std::unique_ptr<metering::ClickHouseSink> sink;
  std::unique_ptr<metering::ClickHouseUsageSource> clickhouse_usage;
  if (!cfg.clickhouse.empty()) {
    auto endpoint = *metering::ParseClickHouseUrl(cfg.clickhouse);
    auto opened = metering::Spool::Open(paths.clickhouse_spool(), int64_t{1} << 30);
    if (!opened) return Die(opened.error());
    spool = std::move(*opened);
    clickhouse = std::make_unique<http::ClickHouseHttpTransport>(endpoint);
    metering::ClickHouseSinkOptions sink_options;
    sink_options.database = endpoint.database;
    sink_options.node = HostName();
    sink = std::make_unique<metering::ClickHouseSink>(*clickhouse, *spool, sink_options);
    clickhouse_usage = std::make_unique<metering::ClickHouseUsageSource>(
        *clickhouse, endpoint.database, sink_options.node);
    metrics.SetSinkStats([&sink] { return sink->stats(); });
  }
  metering::SamplerOptions sampler_options;
  sampler_options.interval = config::MeteringInterval(cfg);
  sampler_options.retention = config::MeteringRetention(cfg);
  metering::Sampler sampler(
      **store, **usage, reader, clock, [&node] { return node.List(); }, metrics, sampler_options,
      sink.get());
  if (auto s = sampler.Load(); !s) return Die(s.error());
  if (sink) sink->Start();
  sampler.Start();
  http::ServerOptions options;
  options.tcp_host = listen->host;
  options.tcp_port = listen->port;
  options.unix_socket = paths.socket();
  options.max_connections = static_cast<int>(cfg.max_connections);
  options.max_connections_per_address = static_cast<int>(cfg.max_connections_per_address);
  options.first_byte_timeout = config::FirstByteTimeout(cfg);
  // Handlers block on store commits; enough threads let concurrent writes share a commit while
  // reads go on. Half of them may wait for VMs to settle (`wait=`).
  options.threads = std::clamp(2 * host->cpus, 4, 16);
  api::ApiHandler handler(node, *auth, {&metrics, usage->get(), clickhouse_usage.get(), &clock},
                          options.threads / 2);
  handler.SetDiskReserve(&reserve);
  http::Server server(handler, options);
  if (auto s = server.Start(); !s) return Die(s.error());
  spdlog::info("API: at most {} TCP connections, {} per client address",
               server.tcp_connection_cap(), cfg.max_connections_per_address);

  std::string tcp = listen->host.empty()
                        ? "no TCP"
                        : fmt::format("http://{}:{}", listen->host, server.tcp_port());
  // One line on stdout that scripts and tests wait for.
  std::printf("hearthd %s: listening on %s and unix:%s\n", HEARTH_VERSION, tcp.c_str(),
              paths.socket().c_str());
  std::fflush(stdout);
  spdlog::info("serving {} VMs from {}; {} CPUs, {} MiB RAM, memory ratio {}", node.List().size(),
               cfg.store, host->cpus, host->memory.value, cfg.memory_ratio);
  if (auto why = reserve.ReadOnlyReason()) spdlog::warn("read-only: {}", *why);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("received {}, shutting down", strsignal(sig));
  node.ReleaseWaiters();  // requests waiting for a VM to settle answer now: Stop joins them
  server.Stop();
  waker->SetOnWake({});  // no wake reaches the node from here on
  sampler.Stop();
  if (sink) sink->Stop();
  node.Shutdown();
  return 0;
}

}  // namespace
}  // namespace hearth

int main(int argc, char** argv) {
  // Block the shutdown signals before any thread starts, so that only sigwait() sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  umask(077);  // state, tokens and sockets are root's alone
  spdlog::set_default_logger(spdlog::stderr_color_mt("hearthd"));

  hearth::config::DaemonConfig cfg;
  CLI::App app{
      "hearthd - the hearth node daemon: runs microVMs on this host and serves the hearth API.\n"
      "Runs as root, in the foreground; logs go to stderr.\n\n"
      "Examples:\n"
      "  hearthd                                  # data in /var/lib/hearth, API on "
      "127.0.0.1:7777\n"
      "  hearthd --data-dir /srv/hearth --listen 0.0.0.0:7777\n"
      "  hearthd --config /etc/hearth/hearthd.yaml   # YAML, same keys as the flags\n",
      "hearthd"};
  std::string config_file, data_dir;
  app.add_option("--config", config_file, "YAML file with the same keys as the long flags")
      ->check(CLI::ExistingFile);
  app.add_option("--data-dir", data_dir, "where state, sockets, VMs and images live")
      ->default_str("/var/lib/hearth");
  auto* listen = app.add_option("--listen", cfg.listen, "TCP address of the API, or none")
                     ->default_str(cfg.listen);
  auto* store = app.add_option("--store", cfg.store, "sqlite://PATH (default <data-dir>/state.db)");
  auto* clickhouse = app.add_option(
      "--clickhouse", cfg.clickhouse,
      "also send metering to ClickHouse: http://[USER[:PASSWORD]@]HOST[:PORT][/DATABASE] "
      "(port 8123, database hearth by default)");
  auto* metering_interval = app.add_option("--metering-interval", cfg.metering_interval,
                                           "how often each VM is sampled, 1s to 1h")
                                ->default_str(cfg.metering_interval);
  auto* metering_retention =
      app.add_option("--metering-retention", cfg.metering_retention,
                     "how long the local store keeps samples (hourly after a day) and events")
          ->default_str(cfg.metering_retention);
  auto* hypervisor = app.add_option("--hypervisor", cfg.hypervisor, "auto, qemu or firecracker")
                         ->default_str("auto");
  auto* firecracker = app.add_option("--firecracker", cfg.firecracker,
                                     "the firecracker binary (default: `firecracker` in PATH)");
  auto* jailer = app.add_option("--jailer", cfg.jailer,
                                "run Firecracker through this jailer binary (default: no jail)");
  auto* jailer_uid =
      app.add_option("--jailer-uid", cfg.jailer_uid, "the uid the jailer runs Firecracker as");
  auto* jailer_gid =
      app.add_option("--jailer-gid", cfg.jailer_gid, "the gid the jailer runs Firecracker as");
  auto* jailer_base = app.add_option("--jailer-chroot-base", cfg.jailer_chroot_base,
                                     "where the jailer builds each VM's chroot")
                          ->default_str(cfg.jailer_chroot_base);
  auto* vmm_ids = app.add_option("--vmm-id-base", cfg.vmm_id_base,
                                 "QEMU of each VM runs as its own uid/gid, this + 1..65535, with "
                                 "this as shared group; 0: as root")
                      ->default_str(std::to_string(cfg.vmm_id_base));
  auto* ratio = app.add_option("--memory-ratio", cfg.memory_ratio,
                               "running VMs may hold at most this x host RAM")
                    ->default_str("1.0");
  auto* level = app.add_option("--log-level", cfg.log_level, "trace, debug, info, warn, error")
                    ->default_str("info");
  auto* accel = app.add_option("--accel", cfg.accel,
                               "QEMU accelerator: auto (KVM only if a probe guest boots under "
                               "it, else TCG), kvm or tcg")
                    ->default_str("auto");
  auto* pool = app.add_option("--network-pool", cfg.network_pool,
                              "IPv4 range the VMs' /30 networks come from")
                   ->default_str(cfg.network_pool);
  auto* nat = app.add_option("--nat", cfg.nat, "egress NAT (masquerade) for the VMs: on or off")
                  ->default_str("on");
  auto* max_connections =
      app.add_option("--max-connections", cfg.max_connections,
                     "TCP API connections at once (at most half the open file limit)")
          ->default_str("1024");
  auto* max_per_address =
      app.add_option("--max-connections-per-address", cfg.max_connections_per_address,
                     "TCP API connections at once from one client address")
          ->default_str("64");
  auto* first_byte = app.add_option("--first-byte-timeout", cfg.first_byte_timeout,
                                    "close a new API connection that sends nothing for this long")
                         ->default_str(cfg.first_byte_timeout);
  auto* allowed = app.add_option("--allowed-paths", cfg.allowed_paths,
                                 "comma-separated directories that kernel, initrd and rootfs may "
                                 "be in; a block device must be listed itself")
                      ->delimiter(',')
                      ->default_str("<data-dir>/images,/srv/hearth");
  app.set_version_flag("--version", HEARTH_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::CallForVersion&) {
    std::cout << HEARTH_VERSION << "\n";
    return 0;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "hearthd: %s (see hearthd --help)\n", e.what());
    return 2;
  }
  if (!config_file.empty()) {
    // The file sets defaults; flags given on the command line win.
    hearth::config::DaemonConfig from_file;
    if (auto s = hearth::config::LoadConfigFile(config_file, from_file); !s) {
      std::fprintf(stderr, "hearthd: %s\n", s.error().message.c_str());
      return 2;
    }
    if (data_dir.empty()) data_dir = from_file.data_dir.string();
    if (listen->count() == 0) cfg.listen = from_file.listen;
    if (store->count() == 0) cfg.store = from_file.store;
    if (clickhouse->count() == 0) cfg.clickhouse = from_file.clickhouse;
    if (metering_interval->count() == 0) cfg.metering_interval = from_file.metering_interval;
    if (metering_retention->count() == 0) cfg.metering_retention = from_file.metering_retention;
    if (hypervisor->count() == 0) cfg.hypervisor = from_file.hypervisor;
    if (firecracker->count() == 0) cfg.firecracker = from_file.firecracker;
    if (jailer->count() == 0) cfg.jailer = from_file.jailer;
    if (jailer_uid->count() == 0) cfg.jailer_uid = from_file.jailer_uid;
    if (jailer_gid->count() == 0) cfg.jailer_gid = from_file.jailer_gid;
    if (jailer_base->count() == 0) cfg.jailer_chroot_base = from_file.jailer_chroot_base;
    if (vmm_ids->count() == 0) cfg.vmm_id_base = from_file.vmm_id_base;
    if (ratio->count() == 0) cfg.memory_ratio = from_file.memory_ratio;
    if (level->count() == 0) cfg.log_level = from_file.log_level;
    if (accel->count() == 0) cfg.accel = from_file.accel;
    if (pool->count() == 0) cfg.network_pool = from_file.network_pool;
    if (nat->count() == 0) cfg.nat = from_file.nat;
    if (max_connections->count() == 0) cfg.max_connections = from_file.max_connections;
    if (max_per_address->count() == 0) {
      cfg.max_connections_per_address = from_file.max_connections_per_address;
    }
    if (first_byte->count() == 0) cfg.first_byte_timeout = from_file.first_byte_timeout;
    if (allowed->count() == 0) cfg.allowed_paths = from_file.allowed_paths;
  }
  if (!data_dir.empty()) cfg.data_dir = data_dir;
  return hearth::Run(cfg);
}

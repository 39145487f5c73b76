// Daemon: hearthd once its configuration is read. Run checks the configuration against the host,
// takes the data directory's lock, opens the store, picks the hypervisor, recovers the node,
// starts metering and serves the API until SIGINT or SIGTERM, then shuts down in reverse order.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>

#include "api/api_handler.h"
#include "api/auth.h"
#include "common/clock.h"
#include "common/paths.h"
#include "config/daemon_config.h"
#include "http/clickhouse_http_transport.h"
#include "http/server.h"
#include "hv/firecracker/firecracker_driver.h"
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
#include "net/wake_listener.h"
#include "node/node.h"
#include "store/disk_reserve.h"
#include "store/sqlite_state_store.h"

namespace hearth::daemon {

class Daemon {
 public:
  explicit Daemon(config::DaemonConfig cfg);

  // The exit code: 0 after a signal, 2 for a configuration the host cannot take, 1 when starting
  // failed (the error is printed on stderr). The shutdown signals must be blocked in every thread.
  int Run();

 private:
  // The steps of Run, in order. Each starts what the later ones use.
  int CheckConfig();  // 0, or the exit code after printing why not
  Status OpenState();
  Status StartHypervisor();
  Status StartNode();
  Status StartMetering();
  Status Serve();
  void WaitAndShutDown();

  // Declared in the order they start, so that they are destroyed in reverse.
  config::DaemonConfig cfg_;
  config::ListenAddress listen_;
  std::filesystem::path db_path_;
  Paths paths_;
  std::optional<HostInfo> host_;
  std::unique_ptr<store::DiskReserve> reserve_;
  std::unique_ptr<store::SqliteStateStore> store_;
  std::optional<api::TokenAuthenticator> auth_;
  std::unique_ptr<metering::SqliteUsageStore> usage_;
  LinuxFileProbe files_;
  SystemClock clock_;
  std::unique_ptr<hv::qemu::KvmProbe> probe_;
  std::unique_ptr<hv::qemu::QemuDriver> qemu_;
  hv::HypervisorDriver* driver_ = nullptr;  // qemu_ or firecracker_
  std::unique_ptr<hv::firecracker::FirecrackerDriver> firecracker_;
  std::unique_ptr<net::Network> network_;
  LinuxPortHolders port_holders_;
  std::unique_ptr<net::WakeListener> waker_;
  std::unique_ptr<node::Node> node_;
  metering::Metrics metrics_;
  std::unique_ptr<metering::LinuxUsageReader> reader_;
  std::unique_ptr<http::ClickHouseHttpTransport> clickhouse_;
  std::unique_ptr<metering::Spool> spool_;
  std::unique_ptr<metering::ClickHouseSink> sink_;
  std::unique_ptr<metering::ClickHouseUsageSource> clickhouse_usage_;
  std::unique_ptr<metering::Sampler> sampler_;
  std::unique_ptr<api::ApiHandler> handler_;
  std::unique_ptr<http::Server> server_;
};

}  // namespace hearth::daemon

#include "config/daemon_options.h"

#include <algorithm>
#include <string>

namespace hearth::config {

std::span<const DaemonOption> DaemonOptions() {
  using C = DaemonConfig;
  static const DaemonOption kOptions[] = {
      {"data-dir", &C::data_dir, "where state, sockets, VMs and images live", "/var/lib/hearth"},
      {"listen", &C::listen, "TCP address of the API, or none", "127.0.0.1:7777"},
      {"store", &C::store, "sqlite://PATH (default <data-dir>/state.db)", ""},
      {"clickhouse", &C::clickhouse,
       "also send metering to ClickHouse: http://[USER[:PASSWORD]@]HOST[:PORT][/DATABASE] "
       "(port 8123, database hearth by default)",
       ""},
      {"metering-interval", &C::metering_interval, "how often each VM is sampled, 1s to 1h", "10s"},
      {"metering-retention", &C::metering_retention,
       "how long the local store keeps samples (hourly after a day) and events", "7d"},
      {"hypervisor", &C::hypervisor, "auto, qemu or firecracker", "auto"},
      {"firecracker", &C::firecracker, "the firecracker binary (default: `firecracker` in PATH)",
       ""},
      {"jailer", &C::jailer, "run Firecracker through this jailer binary (default: no jail)", ""},
      {"jailer-uid", &C::jailer_uid, "the uid the jailer runs Firecracker as", ""},
      {"jailer-gid", &C::jailer_gid, "the gid the jailer runs Firecracker as", ""},
      {"jailer-chroot-base", &C::jailer_chroot_base, "where the jailer builds each VM's chroot",
       "/srv/jailer"},
      {"vmm-id-base", &C::vmm_id_base,
       "QEMU of each VM runs as its own uid/gid, this + 1..65535, with this as shared group; 0: "
       "as root",
       "1900000000"},
      {"memory-ratio", &C::memory_ratio, "running VMs may hold at most this x host RAM", "1.0"},
      {"log-level", &C::log_level, "trace, debug, info, warn, error", "info"},
      {"accel", &C::accel,
       "QEMU accelerator: auto (KVM only if a probe guest boots under it, else TCG), kvm or tcg",
       "auto"},
      {"network-pool", &C::network_pool, "IPv4 range the VMs' /30 networks come from",
       "172.30.0.0/16"},
      {"nat", &C::nat, "egress NAT (masquerade) for the VMs: on or off", "on",
       /*yaml_on_off=*/true},
      {"max-connections", &C::max_connections,
       "TCP API connections at once (at most half the open file limit)", "1024"},
      {"max-connections-per-address", &C::max_connections_per_address,
       "TCP API connections at once from one client address", "64"},
      {"first-byte-timeout", &C::first_byte_timeout,
       "close a new API connection that sends nothing for this long", "5s"},
      {"allowed-paths", &C::allowed_paths,
       "comma-separated directories that kernel, initrd and rootfs may be in; a block device "
       "must be listed itself",
       "<data-dir>/images,/srv/hearth"},
  };
  return kOptions;
}

const DaemonOption* FindDaemonOption(std::string_view name) {
  for (const DaemonOption& o : DaemonOptions()) {
    if (o.name == name) return &o;
  }
  return nullptr;
}

const DaemonOption* FindDaemonOptionByKey(std::string_view key) {
  std::string name(key);
  std::replace(name.begin(), name.end(), '_', '-');
  return FindDaemonOption(name);
}

void CopyOption(const DaemonOption& option, const DaemonConfig& from, DaemonConfig& to) {
  std::visit([&](auto field) { to.*field = from.*field; }, option.field);
}

}  // namespace hearth::config

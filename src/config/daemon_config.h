// hearthd's settings: from --config FILE (YAML, keys as the long flags without "--") and then
// from flags, which win. Everything is checked before hearthd touches the host.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/result.h"

namespace hearth::config {

struct DaemonConfig {
  std::filesystem::path data_dir = "/var/lib/hearth";
  std::string listen = "127.0.0.1:7777";  // "none" disables TCP
  std::string store;                      // default sqlite://<data-dir>/state.db
  std::string clickhouse;  // metering sink: http://[USER[:PASSWORD]@]HOST[:PORT][/DB]
  std::string metering_interval = "10s";  // 1s to 1h
  std::string metering_retention = "7d";  // local samples and events; at least 1d
  std::string hypervisor = "auto";        // auto, qemu or firecracker
  // Firecracker (--hypervisor firecracker, or auto on a host where it can run).
  std::string firecracker;  // the binary; empty: `firecracker` found in PATH
  std::string jailer;       // the jailer binary; empty: no jail
  int64_t jailer_uid = -1;  // required with a jailer
  int64_t jailer_gid = -1;  // required with a jailer
  std::string jailer_chroot_base = "/srv/jailer";
  // QEMU runs as uid = gid = vmm_id_base + a slot per VM, with the shared group vmm_id_base;
  // 0: as root (README, "Confinement").
  int64_t vmm_id_base = 1'900'000'000;
  double memory_ratio = 1.0;
  std::string log_level = "info";
  std::string accel = "auto";                  // QEMU: auto (probe KVM), kvm or tcg
  std::string network_pool = "172.30.0.0/16";  // one /30 per VM
  std::string nat = "on";                      // egress masquerade for the pool: on or off
  // API connections (the HTTP server's caps; see http::ServerOptions).
  int64_t max_connections = 1024;            // TCP, at most half the file limit
  int64_t max_connections_per_address = 64;  // TCP, from one client IP address
  std::string first_byte_timeout = "5s";     // a new connection that sends nothing is closed
  // Where kernel, initrd and rootfs of VMs may be: directories (and block devices, which are
  // allowed only when listed themselves). Empty: kDefaultAllowedPaths.
  std::vector<std::string> allowed_paths;
};

// The default --allowed-paths: <data-dir>/images and this directory.
inline constexpr std::string_view kDefaultAllowedDir = "/srv/hearth";

struct ListenAddress {
  std::string host;  // empty: TCP disabled
  uint16_t port = 0;
};

// Parses "HOST:PORT", "[V6]:PORT" or "none".
Result<ListenAddress> ParseListen(std::string_view text);

// Reads a YAML config file onto `config`. Unknown keys and wrong types are errors.
Status LoadConfigFile(const std::filesystem::path& path, DaemonConfig& config);

// Checks every value; fills the default store URL. Errors name the flag and the value.
Status Validate(DaemonConfig& config);

// The allowed paths of a validated config, resolved (symlinks, "..") as far as they exist.
std::vector<std::filesystem::path> AllowedPaths(const DaemonConfig& config);

// The metering interval and retention of a validated config.
Duration MeteringInterval(const DaemonConfig& config);
Duration MeteringRetention(const DaemonConfig& config);
// The first-byte timeout of a validated config.
std::chrono::milliseconds FirstByteTimeout(const DaemonConfig& config);

// The SQLite path of a "sqlite://PATH" store URL.
Result<std::filesystem::path> SqlitePath(std::string_view store_url);

}  // namespace hearth::config

#include "config/daemon_config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <map>
#include <set>
#include <type_traits>
#include <variant>

#include "common/text.h"
#include "config/daemon_options.h"
#include "hv/qemu/kvm_probe.h"
#include "metering/clickhouse_transport.h"
#include "net/address_pool.h"

namespace hearth::config {
namespace {

tl::unexpected<Error> Bad(std::string_view flag, std::string message) {
  return Fail(Code::kInvalidArgument, fmt::format("--{}: {}", flag, message), std::string(flag));
}

// "data-dir, listen, ...": every key a config file may have.
std::string KnownKeys() {
  std::string out;
  for (const DaemonOption& o : DaemonOptions()) {
    out += fmt::format("{}{}", out.empty() ? "" : ", ", o.name);
  }
  return out;
}

// Sets `option` in `config` from its value in a config file; throws YAML::Exception when the
// value is not of the option's type.
void SetFromYaml(const DaemonOption& option, const YAML::Node& v, DaemonConfig& config) {
  if (option.yaml_on_off) {
    config.*std::get<std::string DaemonConfig::*>(option.field) = v.as<bool>() ? "on" : "off";
    return;
  }
  std::visit(
      [&](auto field) {
        using T = std::remove_reference_t<decltype(config.*field)>;
        if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          config.*field = v.IsSequence() ? v.as<std::vector<std::string>>()
                                         : std::vector<std::string>{v.as<std::string>()};
        } else if constexpr (std::is_same_v<T, std::filesystem::path>) {
          config.*field = v.as<std::string>();
        } else {
          config.*field = v.as<T>();
        }
      },
      option.field);
}

}  // namespace

Result<ListenAddress> ParseListen(std::string_view text) {
  if (text == "none") return ListenAddress{};
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return Bad("listen", fmt::format("'{}' is not HOST:PORT (e.g. 127.0.0.1:7777) or none", text));
  }
  std::string host(text.substr(0, colon));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  std::string_view port_text = text.substr(colon + 1);
  int port = -1;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || end != port_text.data() + port_text.size() || port < 0 || port > 65535) {
    return Bad("listen", fmt::format("'{}': port must be 0-65535", text));
  }
  return ListenAddress{host, static_cast<uint16_t>(port)};
}

Status LoadConfigFile(const std::filesystem::path& path, DaemonConfig& config) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path.string());
  } catch (const YAML::Exception& e) {
    return Bad("config", fmt::format("{}: {}", path.string(), e.what()));
  }
  if (root.IsNull()) return Ok();
  if (!root.IsMap())
    return Bad("config", fmt::format("{}: expected a mapping of keys", path.string()));
  // yaml-cpp keeps duplicate keys, and the last would silently win; `data-dir` and `data_dir`
  // are the same key. Option name -> the key as written.
  std::map<std::string_view, std::string> seen;
  for (const auto& item : root) {
    // A key that is not a scalar (`? [a, b]`) would throw from as<std::string>().
    if (!item.first.IsScalar()) {
      return Bad("config", fmt::format("{}: line {}: a key is not a name; keys are the long flags "
                                       "without \"--\", e.g. data-dir",
                                       path.string(), item.first.Mark().line + 1));
    }
    std::string key = item.first.Scalar();
    const DaemonOption* option = FindDaemonOptionByKey(key);
    if (!option) {
      return Bad("config", fmt::format("{}: unknown key '{}'; known: {} (or the same with '_' "
                                       "for '-')",
                                       path.string(), Printable(key), KnownKeys()));
    }
    if (auto [it, fresh] = seen.emplace(option->name, key); !fresh) {
      std::string again = it->second == key ? fmt::format("key '{}' is given twice", Printable(key))
                                            : fmt::format("keys '{}' and '{}' are the same option",
                                                          Printable(it->second), Printable(key));
      return Bad("config", fmt::format("{}: {} (again on line {}); give each key once",
                                       path.string(), again, item.first.Mark().line + 1));
    }
    try {
      SetFromYaml(*option, item.second, config);
    } catch (const YAML::Exception&) {
      return Bad("config",
                 fmt::format("{}: key '{}' has a value of the wrong type", path.string(), key));
    }
  }
  return Ok();
}

Result<std::filesystem::path> SqlitePath(std::string_view url) {
  constexpr std::string_view kScheme = "sqlite://";
  if (url.substr(0, kScheme.size()) != kScheme || url.size() == kScheme.size()) {
    return Bad("store", fmt::format("'{}' is not sqlite://PATH", url));
  }
  return std::filesystem::path(url.substr(kScheme.size()));
}

Duration MeteringInterval(const DaemonConfig& config) {
  return ParseDuration(config.metering_interval).value_or(std::chrono::seconds(10));
}

Duration MeteringRetention(const DaemonConfig& config) {
  return ParseDuration(config.metering_retention).value_or(std::chrono::hours(24 * 7));
}

std::chrono::milliseconds FirstByteTimeout(const DaemonConfig& config) {
  auto d = ParseDuration(config.first_byte_timeout).value_or(std::chrono::seconds(5));
  return std::chrono::duration_cast<std::chrono::milliseconds>(d);
}

std::vector<std::filesystem::path> AllowedPaths(const DaemonConfig& config) {
  std::vector<std::filesystem::path> out;
  for (const std::string& entry : config.allowed_paths) {
    std::error_code ec;
    std::filesystem::path resolved = std::filesystem::weakly_canonical(entry, ec);
    out.push_back(ec ? std::filesystem::path(entry).lexically_normal() : resolved);
  }
  return out;
}

namespace {

// The text of every option, the data dir and the allowed paths (filled in when not given).
Status CheckPaths(DaemonConfig& config) {
  // Every string below may reach a path, an argv, a log line or a terminal.
  for (auto [flag, value] :
       {std::pair{"data-dir", config.data_dir.string()}, std::pair{"listen", config.listen},
        std::pair{"store", config.store}, std::pair{"clickhouse", config.clickhouse},
        std::pair{"firecracker", config.firecracker}, std::pair{"jailer", config.jailer},
        std::pair{"jailer-chroot-base", config.jailer_chroot_base}}) {
    if (FindControl(value)) return Bad(flag, DescribeControl(value));
  }
  if (config.data_dir.empty() || !config.data_dir.is_absolute()) {
    return Bad("data-dir", fmt::format("'{}' is not an absolute path", config.data_dir.string()));
  }
  if (config.allowed_paths.empty()) {
    config.allowed_paths = {(config.data_dir / "images").string(), std::string(kDefaultAllowedDir)};
  }
  for (const std::string& entry : config.allowed_paths) {
    if (FindControl(entry)) return Bad("allowed-paths", DescribeControl(entry));
    if (entry.empty() || entry[0] != '/') {
      return Bad("allowed-paths",
                 fmt::format("'{}' is not an absolute path; list directories such as {}", entry,
                             kDefaultAllowedDir));
    }
  }
  return Ok();
}

// Where hearthd listens, stores and sends metering, and how often it samples.
Status CheckEndpoints(DaemonConfig& config) {
  if (auto l = ParseListen(config.listen); !l) return Fail(l.error());
  if (config.store.empty()) config.store = "sqlite://" + (config.data_dir / "state.db").string();
  if (config.store.rfind("postgresql://", 0) == 0) {
    return Bad("store", "PostgreSQL is not supported by this build yet; use sqlite://PATH");
  }
  if (auto p = SqlitePath(config.store); !p) return Fail(p.error());
  if (!config.clickhouse.empty()) {
    if (auto e = metering::ParseClickHouseUrl(config.clickhouse); !e) return Fail(e.error());
  }
  auto interval = ParseDuration(config.metering_interval);
  if (!interval || *interval < std::chrono::seconds(1) || *interval > std::chrono::hours(1) ||
      interval->count() % 1000 != 0) {
    return Bad("metering-interval", fmt::format("'{}' is not whole seconds from 1s to 1h, e.g. "
                                                "10s",
                                                config.metering_interval));
  }
  auto retention = ParseDuration(config.metering_retention);
  if (!retention || *retention < std::chrono::hours(24)) {
    return Bad("metering-retention", fmt::format("'{}' is not a duration of at least 1d, e.g. 7d",
                                                 config.metering_retention));
  }
  return Ok();
}

// The hypervisor and what confines it.
Status CheckHypervisor(DaemonConfig& config) {
  if (config.hypervisor != "auto" && config.hypervisor != "qemu" &&
      config.hypervisor != "firecracker") {
    return Bad("hypervisor",
               fmt::format("'{}' is not one of auto, qemu, firecracker", config.hypervisor));
  }
  if (!config.jailer.empty()) {
    if (config.jailer_uid < 0 || config.jailer_gid < 0) {
      return Bad("jailer", fmt::format("'{}' needs --jailer-uid and --jailer-gid: the unprivileged "
                                       "user and group Firecracker runs as (e.g. a dedicated "
                                       "`firecracker` system user)",
                                       config.jailer));
    }
  }
  for (auto [flag, id] :
       {std::pair{"jailer-uid", config.jailer_uid}, std::pair{"jailer-gid", config.jailer_gid}}) {
    if (id > 65534) return Bad(flag, fmt::format("{} is not a uid/gid from 0 to 65534", id));
  }
  if (config.jailer_chroot_base.empty() || config.jailer_chroot_base[0] != '/') {
    return Bad("jailer-chroot-base",
               fmt::format("'{}' is not an absolute path", config.jailer_chroot_base));
  }
  if (config.vmm_id_base != 0 &&
      (config.vmm_id_base < 1000 || config.vmm_id_base > 4'294'967'294LL - 65'535)) {
    return Bad("vmm-id-base",
               fmt::format("{} is not 0 (QEMU runs as root) or a uid from 1000 to {} (QEMU runs "
                           "as this + 1..65535)",
                           config.vmm_id_base, 4'294'967'294LL - 65'535));
  }
  if (auto a = hv::qemu::ParseAccelMode(config.accel); !a) {
    return Bad("accel", fmt::format("'{}' is not one of auto, kvm, tcg", config.accel));
  }
  return Ok();
}

// The network, the API's connection limits, admission and logging.
Status CheckLimits(DaemonConfig& config) {
  if (auto p = net::AddressPool::Parse(config.network_pool); !p) {
    return Bad("network-pool", p.error().message);
  }
  if (config.nat != "on" && config.nat != "off") {
    return Bad("nat", fmt::format("'{}' is not on or off", config.nat));
  }
  for (auto [flag, n] :
       {std::pair{"max-connections", config.max_connections},
        std::pair{"max-connections-per-address", config.max_connections_per_address}}) {
    if (n < 1 || n > 1000000) {
      return Bad(flag, fmt::format("{} is not a number of connections from 1 to 1000000", n));
    }
  }
  auto first_byte = ParseDuration(config.first_byte_timeout);
  if (!first_byte || *first_byte < std::chrono::milliseconds(10) ||
      *first_byte > std::chrono::minutes(10)) {
    return Bad("first-byte-timeout", fmt::format("'{}' is not a duration from 10ms to 10m, e.g. 5s",
                                                 config.first_byte_timeout));
  }
  if (!(config.memory_ratio > 0 && config.memory_ratio <= 100)) {
    return Bad("memory-ratio", fmt::format("{} is out of range; allowed (0, 100], e.g. 1.0 or 1.5",
                                           config.memory_ratio));
  }
  static const char* kLevels[] = {"trace", "debug", "info", "warn", "error"};
  if (std::find(std::begin(kLevels), std::end(kLevels), config.log_level) == std::end(kLevels)) {
    return Bad("log-level",
               fmt::format("'{}' is not one of trace, debug, info, warn, error", config.log_level));
  }
  return Ok();
}

}  // namespace

Status Validate(DaemonConfig& config) {
  for (Status (*check)(DaemonConfig&) :
       {CheckPaths, CheckEndpoints, CheckHypervisor, CheckLimits}) {
    if (auto s = check(config); !s) return s;
  }
  return Ok();
}

}  // namespace hearth::config

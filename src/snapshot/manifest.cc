#include "snapshot/manifest.h"

#include <fmt/format.h>

#include <cstdint>
#include <limits>
#include <stdexcept>

namespace hearth::snapshot {

using nlohmann::json;

namespace {

// A member that is not an integer in T's range; a float in particular would be converted with
// undefined behaviour by get<T>().
struct BadInteger : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <class T>
T IntegerAt(const json& j, const char* key) {
  const json& v = j.at(key);
  if (v.is_number_unsigned() && v.get<uint64_t>() <= uint64_t(std::numeric_limits<T>::max())) {
    return static_cast<T>(v.get<uint64_t>());
  }
  if (v.is_number_integer() && !v.is_number_unsigned() &&
      v.get<int64_t>() >= std::numeric_limits<T>::min() &&
      v.get<int64_t>() <= std::numeric_limits<T>::max()) {
    return static_cast<T>(v.get<int64_t>());
  }
  throw BadInteger(fmt::format("{}: {} is not an integer from {} to {}", key, v.dump(),
                               std::numeric_limits<T>::min(), std::numeric_limits<T>::max()));
}

json OriginJson(const Origin& o) {
  return {{"backend", o.backend},       {"hypervisor_version", o.hypervisor_version},
          {"cpu_model", o.cpu_model},   {"vcpus", o.vcpus},
          {"memory_mib", o.memory_mib}, {"kernel", o.kernel},
          {"initrd", o.initrd},         {"rootfs", o.rootfs},
          {"cmdline", o.cmdline},       {"mac", o.mac}};
}

Origin OriginFrom(const json& j) {
  Origin o;
  o.backend = j.at("backend").get<std::string>();
  o.hypervisor_version = j.at("hypervisor_version").get<std::string>();
  o.cpu_model = j.value("cpu_model", "");  // absent before it was recorded (same format)
  o.vcpus = IntegerAt<int>(j, "vcpus");
  o.memory_mib = IntegerAt<int64_t>(j, "memory_mib");
  o.kernel = j.at("kernel").get<std::string>();
  o.initrd = j.at("initrd").get<std::string>();
  o.rootfs = j.at("rootfs").get<std::string>();
  o.cmdline = j.at("cmdline").get<std::string>();
  o.mac = j.at("mac").get<std::string>();
  return o;
}

}  // namespace

json ToJson(const Manifest& m) {
  json files = json::array();
  for (const auto& f : m.files) {
    files.push_back({{"name", f.name}, {"bytes", f.bytes}, {"sha256", f.sha256}});
  }
  return {{"format", m.format},
          {"vm_id", m.vm_id},
          {"vm_version", m.vm_version},
          {"taken_at", FormatTime(m.taken_at)},
          {"host_boot_id", m.host_boot_id},
          {"origin", OriginJson(m.origin)},
          {"files", files},
          {"memory_file", m.memory_file},
          {"memory_bytes", m.memory_bytes},
          {"synced", m.synced}};
}

Result<Manifest> ManifestFromJson(const json& j) {
  try {
    Manifest m;
    m.format = IntegerAt<int>(j, "format");
    if (m.format != kFormatVersion) {
      return Fail(Code::kFailedPrecondition,
                  fmt::format("snapshot format {} is not the format this hearth writes ({})",
                              m.format, kFormatVersion));
    }
    m.vm_id = j.at("vm_id").get<std::string>();
    m.vm_version = IntegerAt<int64_t>(j, "vm_version");
    auto taken = ParseTime(j.at("taken_at").get<std::string>());
    if (!taken) return Fail(taken.error().Wrap("taken_at"));
    m.taken_at = *taken;
    m.host_boot_id = j.at("host_boot_id").get<std::string>();
    m.origin = OriginFrom(j.at("origin"));
    for (const auto& f : j.at("files")) {
      m.files.push_back({f.at("name").get<std::string>(), IntegerAt<int64_t>(f, "bytes"),
                         f.at("sha256").get<std::string>()});
    }
    m.memory_file = j.at("memory_file").get<std::string>();
    m.memory_bytes = IntegerAt<int64_t>(j, "memory_bytes");
    m.synced = j.at("synced").get<bool>();
    return m;
  } catch (const json::exception& e) {
    return Fail(Code::kInternal, fmt::format("snapshot manifest: {}", e.what()));
  } catch (const BadInteger& e) {
    return Fail(Code::kInternal, fmt::format("snapshot manifest: {}", e.what()));
  }
}

Status CheckOrigin(const Origin& taken, const Origin& now, std::string_view vm_name) {
  auto differ = [&](std::string_view what, const auto& then, const auto& current) {
    return Fail(Code::kFailedPrecondition,
                fmt::format("the snapshot was taken with {} {} and the VM now has {}: restoring "
                            "it would break the guest; start it with --fresh to discard the "
                            "snapshot and cold-boot (`hearth vm start --fresh {}`)",
                            what, then, current, vm_name));
  };
  if (taken.backend != now.backend) return differ("backend", taken.backend, now.backend);
  if (taken.hypervisor_version != now.hypervisor_version) {
    return differ("hypervisor", fmt::format("'{}'", taken.hypervisor_version),
                  fmt::format("'{}'", now.hypervisor_version));
  }
  if (!taken.cpu_model.empty() && taken.cpu_model != now.cpu_model) {
    return differ("host CPU", fmt::format("'{}'", taken.cpu_model),
                  fmt::format("'{}'", now.cpu_model));
  }
  if (taken.vcpus != now.vcpus) return differ("vcpus", taken.vcpus, now.vcpus);
  if (taken.memory_mib != now.memory_mib) {
    return differ("memory", fmt::format("{} MiB", taken.memory_mib),
                  fmt::format("{} MiB", now.memory_mib));
  }
  if (taken.kernel != now.kernel) return differ("kernel", taken.kernel, now.kernel);
  if (taken.initrd != now.initrd) return differ("initrd", taken.initrd, now.initrd);
  if (taken.rootfs != now.rootfs) return differ("rootfs", taken.rootfs, now.rootfs);
  if (taken.cmdline != now.cmdline) {
    return differ("kernel command line", fmt::format("'{}'", taken.cmdline),
                  fmt::format("'{}'", now.cmdline));
  }
  if (taken.mac != now.mac) return differ("MAC address", taken.mac, now.mac);
  return Ok();
}

}  // namespace hearth::snapshot

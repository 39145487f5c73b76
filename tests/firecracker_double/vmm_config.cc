// The configuration calls of Vmm: logger, metrics, boot source, machine config, drives, network
// interfaces, vsock, actions and PATCH /vm.
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#include "firecracker_double/vmm.h"

namespace hearth::fcdouble {
namespace {

using nlohmann::json;

bool ValidMac(const std::string& mac) {
  if (mac.size() != 17) return false;
  for (size_t i = 0; i < mac.size(); ++i) {
    if (i % 3 == 2) {
      if (mac[i] != ':') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(mac[i]))) {
      return false;
    }
  }
  return true;
}

}  // namespace

Status Vmm::ConfigureLogger(const std::string& path, const std::string& level) {
  static const std::set<std::string> levels = {"Error", "Warning", "Info", "Debug", "Trace", "Off"};
  if (!levels.contains(level)) {
    return Fail(Code::kInvalidArgument, fmt::format("Invalid value for logger level: {}", level));
  }
  // Like Firecracker: the file or FIFO must exist; O_NONBLOCK so a FIFO never blocks the VMM.
  int fd = ::open(options_.paths.Resolve(path).c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    return Fail(Code::kFailedPrecondition,
                fmt::format("Logger error: Failed to open target file: {}", OsError(errno)));
  }
  log_file_ = Fd(fd);
  logger_set_ = true;
  logger_config_ = json{{"log_path", path}, {"level", level}};
  Log("Running Firecracker v" + std::string(kFirecrackerVersion));
  return Ok();
}

Status Vmm::ConfigureMetrics(const std::string& path) {
  if (auto s = metrics_.Open(options_.paths.Resolve(path)); !s) return s;
  metrics_set_ = true;
  metrics_config_ = json{{"metrics_path", path}};
  FlushMetricsLocked();
  StartMetricsTimer();
  return Ok();
}

ApiResponse Vmm::PutLogger(const json& body) {
  if (logger_set_) return Fault("Logger error: Reinitialization of logger not allowed.");
  if (!body.contains("log_path") || body["log_path"].is_null()) {
    // Firecracker accepts a logger without a path (it keeps logging to stderr).
    logger_set_ = true;
    logger_config_ = body;
    return NoContent();
  }
  auto s = ConfigureLogger(body["log_path"], body.value("level", std::string("Info")));
  if (!s) return Fault(s.error().message);
  logger_config_ = body;
  return NoContent();
}

ApiResponse Vmm::PutMetrics(const json& body) {
  if (metrics_set_) return Fault("Reinitialization of metrics not allowed.");
  auto s = ConfigureMetrics(body["metrics_path"]);
  if (!s) return Fault(s.error().message);
  return NoContent();
}

ApiResponse Vmm::PutBootSource(const json& body) {
  std::vector<Fd> files;
  auto kernel = OpenFile(options_.paths.Resolve(body["kernel_image_path"]), false);
  if (!kernel) {
    return Fault("Boot source error: The kernel file cannot be opened: " + kernel.error().message);
  }
  files.push_back(std::move(*kernel));
  if (body.contains("initrd_path") && body["initrd_path"].is_string()) {
    auto initrd = OpenFile(options_.paths.Resolve(body["initrd_path"]), false);
    if (!initrd) {
      return Fault(
          "Boot source error: The initrd file cannot be opened due to invalid path or "
          "invalid permissions. " +
          initrd.error().message);
    }
    files.push_back(std::move(*initrd));
  }
  boot_source_ = body;
  boot_files_ = std::move(files);
  return NoContent();
}

ApiResponse Vmm::PutMachineConfig(const json& body, bool patch) {
  json next = patch ? machine_config_
                    : json{{"smt", false}, {"track_dirty_pages", false}, {"huge_pages", "None"}};
  for (const auto& [k, v] : body.items()) {
    if (!v.is_null()) next[k] = v;
  }
  const int64_t vcpus = next.value("vcpu_count", 0);
  if (next.value("smt", false) && vcpus > 1 && vcpus % 2 != 0) {
    return Fault(
        "Machine config error: The vCPU number is invalid! The vCPU number can only be 1 "
        "or an even number when SMT is enabled.");
  }
  if (next.value("mem_size_mib", 0) == 0) {
    return Fault(
        "Machine config error: The memory size (MiB) is either 0, or not a multiple of "
        "the configured page size.");
  }
  if (next.value("huge_pages", "None") == "2M" && next.value("mem_size_mib", 0) % 2 != 0) {
    return Fault(
        "Machine config error: The memory size (MiB) is either 0, or not a multiple of "
        "the configured page size.");
  }
  machine_config_ = next;
  return NoContent();
}

ApiResponse Vmm::PutDrive(const json& body) {
  const std::string id = body["drive_id"];
  const bool has_path = body.contains("path_on_host") && body["path_on_host"].is_string();
  const bool has_socket = body.contains("socket") && body["socket"].is_string();
  if (has_socket) {
    return Fault(
        "Unable to create the block device: vhost-user drives are not emulated by the "
        "firecracker double");
  }
  if (!has_path) return Fault("Unable to create the block device: missing path_on_host");
  if (body.value("is_root_device", false)) {
    for (const auto& [other, d] : drives_) {
      if (other != id && d.config.value("is_root_device", false)) {
        return Fault("A root block device already exists!");
      }
    }
  }
  const bool read_only = body.value("is_read_only", false);
  auto file = OpenFile(options_.paths.Resolve(body["path_on_host"]), !read_only);
  if (!file) {
    return Fault(
        fmt::format("Unable to create the block device: Virtio backend error: Error "
                    "manipulating the backing file: {} {}",
                    file.error().message, body["path_on_host"].get<std::string>()));
  }
  for (auto& [other, d] : drives_) {
    if (other == id) {
      d = Drive{body, std::move(*file)};
      return NoContent();
    }
  }
  drives_.emplace_back(id, Drive{body, std::move(*file)});
  return NoContent();
}

ApiResponse Vmm::PatchDrive(const json& body) {
  for (auto& [id, d] : drives_) {
    if (id != body["drive_id"]) continue;
    if (body.contains("path_on_host") && body["path_on_host"].is_string()) {
      auto file = OpenFile(options_.paths.Resolve(body["path_on_host"]),
                           !d.config.value("is_read_only", false));
      if (!file) {
        return Fault("Drive config error: Unable to patch the block device: " +
                     file.error().message);
      }
      d.file = std::move(*file);
      d.config["path_on_host"] = body["path_on_host"];
    }
    if (body.contains("rate_limiter")) d.config["rate_limiter"] = body["rate_limiter"];
    return NoContent();
  }
  return Fault("Drive config error: Invalid block device ID: " +
               body["drive_id"].get<std::string>());
}

ApiResponse Vmm::PutNic(const json& body) {
  const std::string id = body["iface_id"];
  const std::string tap = body["host_dev_name"];
  if (body.contains("guest_mac") && body["guest_mac"].is_string() && !ValidMac(body["guest_mac"])) {
    return Fault(
        fmt::format("An error occurred when deserializing the json body of a request: "
                    "invalid MAC address: {}.",
                    body["guest_mac"].get<std::string>()));
  }
  for (const auto& [other, n] : nics_) {
    if (other == id) continue;
    if (n.config["host_dev_name"] == tap) {
      return Fault(
          fmt::format("Could not create the network device: The host device name {} is "
                      "already in use.",
                      tap));
    }
    if (body.contains("guest_mac") && n.config.contains("guest_mac") &&
        n.config["guest_mac"] == body["guest_mac"]) {
      return Fault(
          "Could not create the network device: The guest MAC address is already in "
          "use.");
    }
  }
  // A device with the same id is replaced: its tap is released before the new one is opened.
  for (auto it = nics_.begin(); it != nics_.end(); ++it) {
    if (it->first == id) {
      nics_.erase(it);
      break;
    }
  }
  auto fd = OpenTap(options_.paths.Resolve("/dev/net/tun"), tap);
  if (!fd) return Fault("Could not create the network device: " + fd.error().message);
  nics_.emplace_back(id, Nic{body, std::move(*fd)});
  return NoContent();
}

ApiResponse Vmm::PutVsock(const json& body) {
  vsock_listener_.Reset();
  if (vsock_) ::unlink(options_.paths.Resolve((*vsock_)["uds_path"]).c_str());
  auto fd = ListenUnix(options_.paths.Resolve(body["uds_path"]));
  if (!fd) {
    vsock_.reset();
    return Fault("Vsock config error: Cannot create backend for vsock device: " +
                 fd.error().message);
  }
  vsock_listener_ = std::move(*fd);
  vsock_ = body;
  return NoContent();
}

ApiResponse Vmm::Action(const json& body) {
  const std::string type = body["action_type"];
  if (type == "FlushMetrics") {
    FlushMetricsLocked();
    return NoContent();
  }
  if (type == "InstanceStart") {
    if (booted())
      return Fault(
          "The requested operation is not supported after starting the "
          "microVM.");
    if (!boot_source_) {
      return Fault("Start microvm error: Cannot start microvm without kernel configuration.");
    }
    state_ = State::kRunning;
    Log("Successfully started microvm that was configured from one single json");
    StartVcpus();
    BootGuest();
    return NoContent();
  }
  // SendCtrlAltDel
  if (!booted())
    return Fault(
        "The requested operation is not supported before starting the "
        "microVM.");
  PowerOff();
  return NoContent();
}

ApiResponse Vmm::PatchVm(const json& body) {
  const auto start = std::chrono::steady_clock::now();
  if (body["state"] == "Paused") {
    if (state_ == State::kRunning) {
      state_ = State::kPaused;
      pause_us_ = MicrosSince(start);
    }
  } else if (state_ == State::kPaused) {
    state_ = State::kRunning;
    resume_us_ = MicrosSince(start);
  }
  return NoContent();
}

void Vmm::FlushMetricsLocked() {
  if (!metrics_.is_open()) return;
  MetricsInput in;
  in.utc_timestamp_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  in.running = state_ == State::kRunning;
  in.vcpu_count = machine_config_.value("vcpu_count", 1);
  for (const auto& [id, n] : nics_) in.iface_ids.push_back(id);
  for (const auto& [id, d] : drives_) in.drive_ids.push_back(id);
  in.full_create_snapshot_us = create_snapshot_us_;
  in.load_snapshot_us = load_snapshot_us_;
  in.pause_vm_us = pause_us_;
  in.resume_vm_us = resume_us_;
  in.missed_metrics_count = missed_metrics_;
  if (metrics_.Write(MetricsLine(in))) {
    missed_metrics_ = 0;
  } else {
    ++missed_metrics_;
  }
}

}  // namespace hearth::fcdouble

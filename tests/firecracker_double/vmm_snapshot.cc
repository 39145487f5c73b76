// Snapshots of the Firecracker double. The state file is a small JSON document:
//   {"magic": "hearth-firecracker-double-snapshot", "snapshot_version": "10.0.0",
//    "format_major": 10, "mem_size_mib": N, "snapshot_type": "Full",
//    "vm": {"machine-config": ..., "drives": [...], "network-interfaces": [...], "vsock": ...,
//           "balloon": ..., "mmds-config": ..., "entropy": ...}}
// and the memory file is exactly mem_size_mib MiB (sparse, with a marker at both ends).
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <sstream>

#include "firecracker_double/vmm.h"

namespace hearth::fcdouble {
namespace {

using nlohmann::json;

constexpr const char* kMagic = "hearth-firecracker-double-snapshot";
constexpr std::string_view kMemMarker = "FCDOUBLE";

Status WriteMemoryFile(const std::string& path, uint64_t bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) return Fail(Code::kFailedPrecondition, OsError(errno));
  Fd owner(fd);
  if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0 ||
      ::pwrite(fd, kMemMarker.data(), kMemMarker.size(), 0) < 0 ||
      ::pwrite(fd, kMemMarker.data(), kMemMarker.size(),
               static_cast<off_t>(bytes - kMemMarker.size())) < 0) {
    return Fail(Code::kFailedPrecondition, OsError(errno));
  }
  return Ok();
}

}  // namespace

ApiResponse Vmm::CreateSnapshot(const json& body) {
  if (state_ != State::kPaused) {
    return Fault(
        "Create snapshot error: Cannot save the microVM state: The microVM is not "
        "paused. Pause it with PATCH /vm {\"state\": \"Paused\"} first.");
  }
  const auto start = std::chrono::steady_clock::now();
  // The devices a restore needs: the parts of GET /vm/config the state file keeps.
  const json config = VmConfig();
  json vm = json::object();
  for (const char* key : {"machine-config", "drives", "network-interfaces", "vsock", "balloon",
                          "mmds-config", "entropy"}) {
    vm[key] = config[key];
  }
  const int64_t mib = machine_config_.value("mem_size_mib", 128);
  json state = {{"magic", kMagic},
                {"snapshot_version", kSnapshotVersion},
                {"format_major", kSnapshotMajor},
                {"mem_size_mib", mib},
                {"snapshot_type", body.value("snapshot_type", std::string("Full"))},
                {"vm", vm}};
  const std::string state_path = options_.paths.Resolve(body["snapshot_path"]);
  {
    std::ofstream out(state_path, std::ios::trunc);
    out << state.dump() << "\n";
    out.close();
    if (!out) {
      return Fault(
          fmt::format("Create snapshot error: Cannot write the microVM state to file: "
                      "Failed to open snapshot file {}: {}",
                      body["snapshot_path"].get<std::string>(), OsError(errno)));
    }
  }
  const std::string mem_path = options_.paths.Resolve(body["mem_file_path"]);
  if (auto s = WriteMemoryFile(mem_path, static_cast<uint64_t>(mib) << 20); !s) {
    return Fault(fmt::format("Create snapshot error: Cannot write memory file {}: {}",
                             body["mem_file_path"].get<std::string>(), s.error().message));
  }
  create_snapshot_us_ = MicrosSince(start);
  Log("Snapshot created.");
  return ApiResponse{};
}

ApiResponse Vmm::FailLoad(const std::string& message) {
  ApiResponse r = Fault("Load snapshot error: Failed to restore from snapshot: " + message);
  // Firecracker cannot go on after a failed restore: the process ends after the answer.
  r.exit_after = 1;
  return r;
}

ApiResponse Vmm::LoadSnapshot(const json& body) {
  if (boot_specific_) {
    return Fault(
        "Load snapshot error: Loading a microVM snapshot not allowed after configuring "
        "boot-specific resources.");
  }
  const auto start = std::chrono::steady_clock::now();
  const bool has_backend = body.contains("mem_backend") && !body["mem_backend"].is_null();
  const bool has_file = body.contains("mem_file_path") && !body["mem_file_path"].is_null();
  if (has_backend == has_file) {
    return Fault(
        "An error occurred when deserializing the json body of a request: exactly one of "
        "`mem_backend` or `mem_file_path` must be given.");
  }
  std::string mem_path;
  if (has_backend) {
    if (body["mem_backend"]["backend_type"] == "Uffd") {
      return FailLoad("the Uffd memory backend is not emulated by the firecracker double");
    }
    mem_path = body["mem_backend"]["backend_path"];
  } else {
    mem_path = body["mem_file_path"];
  }
  const std::string snapshot_path = body["snapshot_path"];
  json state;
  {
    std::ifstream in(options_.paths.Resolve(snapshot_path));
    if (!in) {
      return FailLoad(
          fmt::format("Failed to open snapshot file {}: {}", snapshot_path, OsError(errno)));
    }
    std::stringstream text;
    text << in.rdbuf();
    try {
      state = json::parse(text.str());
    } catch (const json::exception&) {
      return FailLoad("Snapshot state file is corrupted: " + snapshot_path);
    }
  }
  if (!state.is_object() || state.value("magic", "") != kMagic) {
    return FailLoad("Snapshot state file is corrupted: " + snapshot_path);
  }
  if (state.value("format_major", 0) != kSnapshotMajor) {
    return FailLoad(
        fmt::format("Snapshot version mismatch: file has v{}, this Firecracker "
                    "supports v{}",
                    state.value("snapshot_version", std::string("?")), kSnapshotVersion));
  }
  const uint64_t want = static_cast<uint64_t>(state.value("mem_size_mib", 0)) << 20;
  struct stat st {};
  if (::stat(options_.paths.Resolve(mem_path).c_str(), &st) != 0) {
    return FailLoad(fmt::format("Failed to load guest memory: {}: {}", mem_path, OsError(errno)));
  }
  if (static_cast<uint64_t>(st.st_size) != want) {
    return FailLoad(
        fmt::format("Failed to load guest memory: {} has {} bytes, the snapshot "
                    "needs {}",
                    mem_path, st.st_size, want));
  }
  const json& vm = state["vm"];
  // Drives: the paths saved in the snapshot must resolve again.
  std::vector<std::pair<std::string, Drive>> drives;
  for (const auto& d : vm.value("drives", json::array())) {
    auto file =
        OpenFile(options_.paths.Resolve(d["path_on_host"]), !d.value("is_read_only", false));
    if (!file) {
      return FailLoad(fmt::format("Failed to restore block device {}: {} {}",
                                  d["drive_id"].get<std::string>(), file.error().message,
                                  d["path_on_host"].get<std::string>()));
    }
    drives.emplace_back(d["drive_id"], Drive{d, std::move(*file)});
  }
  // Network interfaces: the saved tap names, or the overrides; the taps are opened now.
  json nic_configs = vm.value("network-interfaces", json::array());
  for (const auto& o : body.value("network_overrides", json::array())) {
    bool found = false;
    for (auto& n : nic_configs) {
      if (n["iface_id"] == o["iface_id"]) {
        n["host_dev_name"] = o["host_dev_name"];
        found = true;
      }
    }
    if (!found) {
      return FailLoad(
          fmt::format("Invalid network override: the snapshot has no network "
                      "interface {}",
                      o["iface_id"].get<std::string>()));
    }
  }
  std::vector<std::pair<std::string, Nic>> nics;
  for (const auto& n : nic_configs) {
    auto fd = OpenTap(options_.paths.Resolve("/dev/net/tun"), n["host_dev_name"]);
    if (!fd) {
      return FailLoad("Failed to restore network device: Could not create the network device: " +
                      fd.error().message);
    }
    nics.emplace_back(n["iface_id"], Nic{n, std::move(*fd)});
  }
  std::optional<json> vsock;
  if (vm.contains("vsock") && !vm["vsock"].is_null()) vsock = vm["vsock"];
  if (body.contains("vsock_override") && !body["vsock_override"].is_null()) {
    if (!vsock) return FailLoad("Invalid vsock override: the snapshot has no vsock device");
    (*vsock)["uds_path"] = body["vsock_override"]["uds_path"];
  }
  if (vsock) {
    auto fd = ListenUnix(options_.paths.Resolve((*vsock)["uds_path"]));
    if (!fd) return FailLoad("Failed to restore vsock device: " + fd.error().message);
    vsock_listener_ = std::move(*fd);
  }
  machine_config_ = vm["machine-config"];
  if (body.contains("track_dirty_pages") && body["track_dirty_pages"].is_boolean()) {
    machine_config_["track_dirty_pages"] = body["track_dirty_pages"];
  }
  drives_ = std::move(drives);
  nics_ = std::move(nics);
  vsock_ = vsock;
  if (vm.contains("balloon") && !vm["balloon"].is_null()) balloon_ = vm["balloon"];
  if (vm.contains("mmds-config") && !vm["mmds-config"].is_null()) mmds_config_ = vm["mmds-config"];
  if (vm.contains("entropy") && !vm["entropy"].is_null()) entropy_ = vm["entropy"];
  restored_ = true;
  boot_specific_ = true;
  state_ = body.value("resume_vm", false) ? State::kRunning : State::kPaused;
  StartVcpus();
  load_snapshot_us_ = MicrosSince(start);
  Log("Snapshot loaded.");
  return ApiResponse{};
}

}  // namespace hearth::fcdouble

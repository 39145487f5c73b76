// Vmm: the Firecracker double's state machine. Every API request goes through Handle, which
// checks it against the spec (SwaggerSpec) and then against the VM's state, the way Firecracker's
// API server and its pre-boot / runtime controllers do. The rules it enforces:
//   - Logger and metrics: pre-boot, once each.
//   - Pre-boot only (400 "The requested operation is not supported after starting the microVM."
//     afterwards): boot-source, machine-config (PUT and PATCH), cpu-config, PUT drives, PUT pmem,
//     PUT network-interfaces, vsock, entropy, PUT balloon, mmds/config, serial, PUT
//     hotplug/memory, InstanceStart, snapshot/load.
//   - Post-boot only ("... not supported before starting the microVM."): PATCH drives, PATCH
//     network-interfaces, PATCH pmem, PATCH vm, snapshot/create, SendCtrlAltDel, balloon
//     statistics and hinting, PATCH hotplug/memory.
//   - Files are opened when configured, as Firecracker does: the kernel and initrd at
//     PUT /boot-source, a drive's path_on_host at PUT /drives (read-write unless is_read_only),
//     the tap at PUT /network-interfaces, the vsock uds_path is bound at PUT /vsock.
//   - InstanceStart needs a boot source; snapshot/create needs the VM Paused; snapshot/load needs
//     a fresh process (nothing but logger and metrics configured) and a failed load ends the
//     process (exit code 1) after the 400 is sent.
// Thread-safety: Handle and the periodic/exit paths lock one mutex.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "firecracker_double/api_server.h"
#include "firecracker_double/host.h"
#include "firecracker_double/metrics.h"
#include "firecracker_double/swagger_spec.h"

namespace hearth::fcdouble {

inline constexpr std::string_view kFirecrackerVersion = "1.16.1";
// The snapshot data format version Firecracker v1.16 writes and accepts (major 10).
inline constexpr std::string_view kSnapshotVersion = "10.0.0";
inline constexpr int kSnapshotMajor = 10;

// The empty 204 answer of a configuration call.
ApiResponse NoContent();
// Microseconds since `start` for the latency metrics; at least 1.
uint64_t MicrosSince(std::chrono::steady_clock::time_point start);

struct VmmOptions {
  std::string instance_id = "anonymous-instance";
  PathResolver paths;
  std::string journal_path;         // FC_DOUBLE_JOURNAL: "METHOD PATH STATUS" per request
  std::set<std::string> fail;       // FC_DOUBLE_FAIL: "PUT /snapshot/load", ...
  int delay_ms = 0;                 // FC_DOUBLE_DELAY_MS
  int metrics_interval_ms = 60000;  // FC_DOUBLE_METRICS_INTERVAL_MS
  int boot_delay_ms = 50;           // from InstanceStart to the console lines
  bool boot_timer = false;          // --boot-timer
};

class Vmm {
 public:
  Vmm(const SwaggerSpec& spec, VmmOptions options);

  ApiResponse Handle(const ApiRequest& request);

  // --log-path / --metrics-path at start-up; the error is the message to print.
  Status ConfigureLogger(const std::string& path, const std::string& level);
  Status ConfigureMetrics(const std::string& path);

 private:
  enum class State { kNotStarted, kRunning, kPaused };
  struct Drive {
    nlohmann::json config;
    Fd file;
  };
  struct Nic {
    nlohmann::json config;
    Fd tap;
  };

  ApiResponse Dispatch(const Route& route, const nlohmann::json& body);
  ApiResponse Get(const Route& route);
  ApiResponse PutDrive(const nlohmann::json& body);
  ApiResponse PatchDrive(const nlohmann::json& body);
  ApiResponse PutNic(const nlohmann::json& body);
  ApiResponse PutBootSource(const nlohmann::json& body);
  ApiResponse PutMachineConfig(const nlohmann::json& body, bool patch);
  ApiResponse PutVsock(const nlohmann::json& body);
  ApiResponse PutLogger(const nlohmann::json& body);
  ApiResponse PutMetrics(const nlohmann::json& body);
  ApiResponse Action(const nlohmann::json& body);
  ApiResponse PatchVm(const nlohmann::json& body);
  ApiResponse CreateSnapshot(const nlohmann::json& body);  // vmm_snapshot.cc
  ApiResponse LoadSnapshot(const nlohmann::json& body);    // vmm_snapshot.cc
  ApiResponse FailLoad(const std::string& message);        // vmm_snapshot.cc

  bool booted() const { return state_ != State::kNotStarted; }
  nlohmann::json MachineConfig() const;
  nlohmann::json VmConfig() const;
  // guest.cc: the serial's serial_out_path on the host, or "" for stdout.
  std::string SerialPath() const;
  void StartVcpus();         // guest.cc
  void BootGuest();          // guest.cc: console lines after boot_delay_ms
  void PowerOff();           // guest.cc: SendCtrlAltDel
  void StartMetricsTimer();  // guest.cc
  void FlushMetricsLocked();
  void Log(const std::string& message);
  void Journal(const ApiRequest& request, int status);

  const SwaggerSpec& spec_;
  VmmOptions options_;
  std::mutex mu_;
  State state_ = State::kNotStarted;
  bool boot_specific_ = false;  // anything but logger/metrics configured: no snapshot load
  bool restored_ = false;
  bool logger_set_ = false;
  bool metrics_set_ = false;
  bool metrics_timer_ = false;
  Fd log_file_;
  MetricsSink metrics_;
  uint64_t missed_metrics_ = 0;
  std::optional<nlohmann::json> boot_source_;
  std::vector<Fd> boot_files_;
  nlohmann::json machine_config_;
  std::optional<nlohmann::json> cpu_config_;
  std::vector<std::pair<std::string, Drive>> drives_;
  std::vector<std::pair<std::string, Nic>> nics_;
  std::vector<std::pair<std::string, nlohmann::json>> pmem_;
  std::optional<nlohmann::json> vsock_;
  Fd vsock_listener_;
  std::optional<nlohmann::json> balloon_;
  std::optional<nlohmann::json> entropy_;
  std::optional<nlohmann::json> serial_;
  std::optional<nlohmann::json> mmds_config_;
  std::optional<nlohmann::json> memory_hotplug_;
  std::optional<nlohmann::json> logger_config_;
  std::optional<nlohmann::json> metrics_config_;
  nlohmann::json mmds_ = nlohmann::json::object();
  uint64_t create_snapshot_us_ = 0, load_snapshot_us_ = 0, pause_us_ = 0, resume_us_ = 0;
};

}  // namespace hearth::fcdouble

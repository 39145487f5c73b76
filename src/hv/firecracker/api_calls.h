// The Firecracker API requests hearth sends, built as plain data with no I/O (in the order the
// v1.16.1 API requires), and the one function that executes such a call and turns a refusal into
// a hearth error with context. Every body follows the spec's definitions (BootSource,
// MachineConfiguration, Drive, NetworkInterface, SnapshotCreateParams, SnapshotLoadParams, ...).
//
// Ordering (SUMMARY.md, "Ordering"): logger and metrics first (each settable once), then
// boot-source, machine-config, drives, network interfaces, and InstanceStart last; a restore is
// logger, metrics and then /snapshot/load on a fresh process (nothing else may be configured).
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "hv/firecracker/api_transport.h"

namespace hearth::hv::firecracker {

struct ApiCall {
  ApiRequest request;
  std::string what;  // what the call does, for errors: "configuring the boot source"
  std::chrono::milliseconds timeout = std::chrono::seconds(5);
  bool operator==(const ApiCall&) const = default;
};

// The interface and drive ids hearth gives Firecracker.
inline constexpr std::string_view kIfaceId = "eth0";
inline constexpr std::string_view kRootDriveId = "rootfs";

// One VM as Firecracker is to run it. Every path is as the Firecracker process sees it (inside
// its jail when there is one; see jail.h).
struct BootConfig {
  std::string log_path;      // a regular file hearth created
  std::string metrics_path;  // the metrics FIFO
  std::string kernel;        // ELF vmlinux
  std::string initrd;        // optional
  std::string boot_args;     // see BootArgs
  int vcpus = 1;
  int64_t memory_mib = 0;
  std::string rootfs;  // optional: the first virtio-blk disk
  bool rootfs_readonly = false;
  std::string tap;  // optional: the host tap, opened by Firecracker by name
  std::string mac;
};

// The kernel command line for Firecracker from the one the node built (for QEMU's microvm): kept
// as is, plus what Firecracker's own default line has and hearth relies on: the serial console
// (console=ttyS0, the readiness marker comes from it), reboot=k (a guest reboot makes Firecracker
// exit, so hearthd's supervision sees it), panic=1, pci=off (devices are virtio-mmio, found through
// ACPI on x86), and the i8042 options Firecracker recommends (SendCtrlAltDel goes through the
// emulated i8042 keyboard). A parameter already on the line is not added again.
std::string BootArgs(std::string_view cmdline);

// logger, metrics, boot-source, machine-config, [drives/rootfs], [network-interfaces/eth0],
// InstanceStart. invalid_argument for a missing or impossible value (no kernel, vcpus out of
// 1..32, no memory, a tap without a MAC).
Result<std::vector<ApiCall>> BootCalls(const BootConfig& config);

struct RestoreConfig {
  std::string log_path;
  std::string metrics_path;
  std::string snapshot_path;  // the state file
  std::string memory_path;    // guest RAM, loaded with the File backend (mapped MAP_PRIVATE)
  std::string tap;            // the same tap, by name (network_overrides); empty: no network
};

// logger, metrics, snapshot/load {File backend, resume_vm false, clock_realtime true,
// network_overrides eth0 -> tap}. The guest stays paused until Resume().
std::vector<ApiCall> RestoreCalls(const RestoreConfig& config);

ApiCall Pause();
ApiCall Resume();
// A Full snapshot (VM paused). Writing guest RAM takes long: a generous timeout.
ApiCall CreateSnapshot(std::string_view snapshot_path, std::string_view memory_path);
ApiCall SendCtrlAltDel();
ApiCall FlushMetrics();
ApiCall DescribeInstance();
// The "id" of DescribeInstance's answer (InstanceInfo); empty when the answer has no string id.
std::string InstanceId(const nlohmann::json& info);

// Executes `call`. A 2xx answer returns its JSON body (null for 204). A refusal becomes
// failed_precondition "<what> of vm '<name>': Firecracker said: <fault_message>" (the HTTP status
// when there is no fault_message); a transport failure, unavailable with the same context.
Result<nlohmann::json> Execute(ApiTransport& transport, const ApiCall& call,
                               std::string_view vm_name);

}  // namespace hearth::hv::firecracker

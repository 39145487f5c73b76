// The VM as hearth stores it: the user's spec (what to run) and the record around it (identity,
// state, version). Plain data; validation lives in validator.h, JSON in vm_json.h.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/result.h"

namespace hearth {

// Memory size in mebibytes.
struct MiB {
  int64_t value = 0;
  auto operator<=>(const MiB&) const = default;
};

enum class Protocol { kTcp, kUdp };
enum class TimerAction { kSuspend, kStop };
enum class WakeMode { kOnPacket, kNever };
enum class RestartPolicy { kNever, kOnFailure, kAlways };

enum class VmState {
  kCreated,
  kStarting,
  kRunning,
  kSuspending,
  kSuspended,
  kResuming,
  kStopping,
  kStopped,
  kFailed,
  kDeleting,
};

std::string_view ToString(Protocol p);
std::string_view ToString(TimerAction a);
std::string_view ToString(WakeMode w);
std::string_view ToString(RestartPolicy r);
std::string_view ToString(VmState s);
Result<Protocol> ParseProtocol(std::string_view text);
Result<TimerAction> ParseTimerAction(std::string_view text);
Result<WakeMode> ParseWakeMode(std::string_view text);
Result<RestartPolicy> ParseRestartPolicy(std::string_view text);
Result<VmState> ParseVmState(std::string_view text);

// A host port forwarded to a guest port ("--publish 8080:80/tcp", "127.0.0.1:8080:80").
struct PortMapping {
  int host_port = 0;
  int guest_port = 0;
  Protocol protocol = Protocol::kTcp;
  std::string host_ip;  // one IPv4 address of the host (dotted quad); empty: all its addresses
  bool operator==(const PortMapping&) const = default;
};
// Parses docker's "[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp]"; HOSTIP is IPv4 (0.0.0.0: all
// addresses, stored empty). Range checks, and whether HOSTIP is the host's, are the validator's.
Result<PortMapping> ParsePortMapping(std::string_view text);
// "8080:80/tcp", or "127.0.0.1:8080:80/tcp" with a host address.
std::string FormatPortMapping(const PortMapping& p);
// A publish host address in canonical dotted-quad form, "" for 0.0.0.0 (all addresses); an error
// naming `text` when it is not an IPv4 address (IPv6 is refused as such).
Result<std::string> ParsePublishHostIp(std::string_view text);
// Whether two mappings claim the same host socket: same port and protocol, on the same address
// or one of them on all addresses.
bool PublishOverlaps(const PortMapping& a, const PortMapping& b);

// A protocol/port that may wake a suspended VM ("tcp:80").
struct WakePort {
  Protocol protocol = Protocol::kTcp;
  int port = 0;
  bool operator==(const WakePort&) const = default;
};
Result<WakePort> ParseWakePort(std::string_view text);
std::string FormatWakePort(const WakePort& p);

struct Timers {
  std::optional<Timestamp> stop_at;      // stop or suspend at this wall-clock time
  std::optional<Duration> stop_after;    // ... after this much running time since start/resume
  std::optional<Duration> idle_timeout;  // ... after this long with no packets on the tap
  TimerAction on_timer = TimerAction::kSuspend;
  bool operator==(const Timers&) const = default;
};

// What the user asked for. Every field can be edited, subject to the VM's state.
struct VmSpec {
  int vcpus = 1;
  MiB memory{256};
  std::string kernel;  // path on the host; empty when `image` provides it
  std::string initrd;  // optional
  std::string rootfs;  // optional disk image or block device
  bool rootfs_readonly = false;
  std::string image;  // optional image name (kernel + rootfs bundle)
  std::string cmdline;
  // The user's own key=value tags (`--label env=prod`), for filtering `vm ls`; rule in
  // validator.h (ValidateLabel).
  std::map<std::string, std::string> labels;
  std::vector<PortMapping> publish;
  Timers timers;
  std::optional<WakeMode> wake;      // unset: on-packet
  std::vector<WakePort> wake_ports;  // empty: any IP packet for the VM wakes it
  RestartPolicy restart = RestartPolicy::kOnFailure;
  bool operator==(const VmSpec&) const = default;

  WakeMode effective_wake() const { return wake.value_or(WakeMode::kOnPacket); }
};

// Saved VM state on disk (filled in by the snapshot work).
struct SnapshotInfo {
  Timestamp taken_at;
  int64_t bytes = 0;
  bool operator==(const SnapshotInfo&) const = default;
};

struct VmRecord {
  std::string name;
  std::string id;
  VmSpec spec;
  VmState state = VmState::kCreated;
  std::string state_reason;  // why the VM is failed, or empty
  int64_t version = 1;       // increases on every change of the record (state included)
  int64_t generation = 1;    // increases when the spec changes (an edit); If-Match compares it
  Timestamp created_at;
  Timestamp updated_at;
  // When the VM last became running (start, resume, automatic restart); unset unless it is
  // running or suspending. Timers count from it (model/timers.h).
  std::optional<Timestamp> running_since;
  // Runtime facts, set by the hypervisor and network layers while the VM exists.
  std::optional<int64_t> pid;
  uint64_t pid_start = 0;  // the VMM's start time (clock ticks since boot): pid + this identify it
  std::string ip;
  std::string backend;
  std::optional<SnapshotInfo> snapshot;
  bool operator==(const VmRecord&) const = default;
};

// What a state means outside the lifecycle table (both defined in model/lifecycle.cc):
// true while the VM holds host memory for its guest RAM (counts against admission);
bool HoldsMemory(VmState s);
// true for states on the way from one settled state to another (a job of the node owns the VM).
bool IsTransitional(VmState s);

// Something that happened to a VM, kept for `hearth vm events`.
struct Event {
  int64_t seq = 0;  // assigned by the store
  std::string vm_id;
  std::string vm_name;
  Timestamp time;
  std::string type;  // "created", "edited", "deleted", "started", ...
  std::string message;
  // Named numbers about the event, kept with it for metering: e.g. a wake's latency and its
  // stages in milliseconds ({"latency_ms": 183.2, "restore_ms": 45.1, ...}). Optional.
  std::map<std::string, double> measures;
  bool operator==(const Event&) const = default;
};

}  // namespace hearth

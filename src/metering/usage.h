// What metering records: samples (one VM over one interval) and metering events (one per
// lifecycle event, with what was derived from the event stream). Plain data shared by the
// sampler, the local store, the ClickHouse sink and the reports.
//
// Units: times in ms since the Unix epoch; durations in ms; sizes in bytes unless the name says
// otherwise. Network counters are the guest's view: rx is what the guest received (the tap's tx).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "model/lifecycle.h"
#include "model/vm.h"

namespace hearth::metering {

// The four classes of time a VM's life is split into (model/lifecycle.h decides which state
// counts as which); every ms of a sample is in exactly one.
using ::hearth::Classify;
using ::hearth::kStateClasses;
using ::hearth::StateClass;
std::string_view ToString(StateClass c);

// Additive resource use: what a sample, an hourly roll-up and a report row sum up.
struct Usage {
  std::array<int64_t, kStateClasses> state_ms{};  // by StateClass
  int64_t cpu_ms = 0;                             // VMM user + system
  int64_t vcpu_ms = 0;                            // the part on vCPU threads (0 if unknown)
  int64_t ram_mib_ms = 0;                         // guest MiB x ms running
  int64_t snapshot_kib_ms = 0;                    // saved-state KiB x ms suspended
  int64_t net_rx_bytes = 0, net_tx_bytes = 0, net_rx_packets = 0, net_tx_packets = 0;
  int64_t disk_read_bytes = 0, disk_write_bytes = 0, disk_read_ops = 0, disk_write_ops = 0;

  int64_t& ms(StateClass c) { return state_ms[static_cast<int>(c)]; }
  int64_t ms(StateClass c) const { return state_ms[static_cast<int>(c)]; }
  Usage& operator+=(const Usage& o);
  bool operator==(const Usage&) const = default;
};

// One VM over (start, end]. The sum of state_ms equals end - start.
struct Sample {
  std::string vm_id, vm_name;
  Timestamp start, end;
  VmState state = VmState::kCreated;  // at `end`
  // Gauges at `end`.
  int vcpus = 0;
  int64_t memory_mib = 0;
  int64_t rss_bytes = 0;  // the VMM's resident memory; 0 without a process
  int64_t snapshot_bytes = 0;
  Usage usage;
  bool operator==(const Sample&) const = default;
};

// A lifecycle event as metering records it.
struct UsageEvent {
  int64_t seq = 0;  // the event's seq in the node's store: unique per node
  std::string vm_id, vm_name;
  Timestamp time;
  std::string type;   // the node's event type: created, started, suspended, woken, ...
  std::string state;  // the VM's state after it ("deleted" after a deletion, "" if unchanged)
  // For an event that ends a transition (started, stopped, suspended, resumed, woken, failed,
  // ...): how long since the VM entered the transitional state; else 0.
  int64_t duration_ms = 0;
  // resumed and woken: the measured latency (measures["latency_ms"]) or else duration_ms.
  double latency_ms = 0;
  int64_t memory_mib = 0;
  int64_t snapshot_bytes = 0;
  std::string reason;                      // failed, exited: the message
  std::map<std::string, double> measures;  // as the node recorded them
  bool operator==(const UsageEvent&) const = default;
};

// The event types metering records (the node's others only move state time).
bool IsMeteredEventType(std::string_view type);
// The event type of a wake on packet ("woken", from the wake work).
inline constexpr std::string_view kWokenEvent = "woken";

}  // namespace hearth::metering

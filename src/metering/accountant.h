// Accountant: turns the node's event stream and readings of the host into samples and metering
// events. Pure logic (no I/O, no clock): the sampler feeds it and stores what it returns.
//
// Each VM has a Tracker: its open sample, which starts where the VM's last written sample ended.
// State time is split at every event that changes the VM's record, at the event's time: the
// transition closes one segment and opens the next, so every millisecond of a sample is in
// exactly one state class and none is counted twice. An event is never placed before the open
// sample's start or before the VM's previous event (an event whose commit raced with the previous
// tick lands at that tick's end: shifted by the commit's latency, never lost or doubled).
//
// Counters (CPU, tap, disks) become deltas against the baselines at the open sample's start. A
// VMM that is not the one of the baseline is new: all it used counts. A tap counter that went
// down was reset (the tap was re-created): its new value counts. What a VMM used between the last
// reading and its exit is not seen (at most one interval).
//
// Trackers are persisted with the samples (the sampler commits both in one transaction), so a
// new hearthd goes on from the last sample with the events after it: the time while no hearthd
// ran is attributed by the events in the store, whose times are the transitions' own.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "metering/usage.h"
#include "metering/usage_reader.h"
#include "store/state_store.h"

namespace hearth::metering {

struct Tracker {
  std::string vm_id, vm_name;
  VmState state = VmState::kCreated;
  int vcpus = 0;
  int64_t memory_mib = 0;
  int64_t snapshot_bytes = 0;
  Timestamp open_start;  // the open sample's start
  Timestamp seg_start;   // the current state segment's start (>= open_start)
  // When the VM entered its current transitional state (the event's own time), for durations.
  std::optional<Timestamp> transition_start;
  Usage acc;  // state_ms, ram_mib_ms, snapshot_kib_ms of the open sample before seg_start
  // Baselines at open_start. An unset tap: the next reading is the baseline (counts nothing).
  std::optional<TapStats> tap;
  std::optional<hv::ProcessId> process;  // the VMM the baselines below are of
  int64_t cpu_ms = 0, vcpu_ms = 0;
  hv::DiskCounters disks;
  // The next readings are only baselines: the VM was found running when metering began, and
  // what its VMM used before is not known to be unmetered.
  bool adopt = false;
  bool operator==(const Tracker&) const = default;
};

// JSON for the store (usage_trackers.tracker); the parse is forgiving of missing members.
std::string TrackerToJson(const Tracker& t);
Result<Tracker> TrackerFromJson(std::string_view text);

struct TickResult {
  std::vector<Sample> samples;
  std::vector<UsageEvent> events;
  std::map<std::string, Tracker> trackers;  // every tracker after the tick, by VM id
  std::set<std::string> changed;            // trackers to write (their VM had a sample)
  std::set<std::string> removed;            // trackers to delete (the VM was deleted)
};

struct AccountantOptions {
  // A VM that has no VMM, no traffic and no events gets a sample at least this often.
  Duration quiet_flush = std::chrono::seconds(60);
};

class Accountant {
 public:
  explicit Accountant(AccountantOptions options = {}) : options_(options) {}

  // The trackers as last stored (by VM id).
  void Load(std::map<std::string, Tracker> trackers) { trackers_ = std::move(trackers); }
  // For a node metered for the first time: trackers for its VMs as they are at `now`, with no
  // baselines (what they used before is not this node's to count).
  void Begin(const std::vector<VmRecord>& vms, Timestamp now);
  const std::map<std::string, Tracker>& trackers() const { return trackers_; }

  // One tick at `now`: applies `events` (from the store's stream, in order), then samples each
  // tracked VM from `readings` (by VM id; VMs without one have no VMM and no tap reading).
  // Returns the result without changing the accountant; Accept it once it is stored.
  TickResult Tick(const std::vector<store::RecordedEvent>& events, Timestamp now,
                  const std::map<std::string, VmReading>& readings) const;
  void Accept(TickResult& result) { trackers_ = std::move(result.trackers); }

 private:
  AccountantOptions options_;
  std::map<std::string, Tracker> trackers_;
};

// Adds the time from t.seg_start to `at` (clamped) to the open sample and starts a new segment.
void CloseSegment(Tracker& t, Timestamp at);

}  // namespace hearth::metering

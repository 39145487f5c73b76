#include "metering/accountant.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace hearth::metering {
namespace {

using nlohmann::json;

int64_t Ms(Timestamp t) { return t.time_since_epoch().count(); }
Timestamp At(int64_t ms) { return Timestamp{Duration{ms}}; }

// A counter's growth from `base` to `now`; a counter that went down was reset and counts whole.
int64_t Grown(int64_t base, int64_t now) { return now >= base ? now - base : now; }

bool EndsTransition(VmState before, VmState after) {
  return IsTransitional(before) && after != before;
}

bool HasReason(const store::RecordedEvent& e) {
  return e.event.type == "failed" || e.event.type == "exited" || e.event.type == "suspend_failed" ||
         (e.state && *e.state == VmState::kFailed);
}

// Starts a tracker for a VM first seen in the stream.
Tracker NewTracker(const store::RecordedEvent& e, Timestamp at) {
  Tracker t;
  t.vm_id = e.event.vm_id;
  t.vm_name = e.event.vm_name;
  t.state = e.state.value_or(VmState::kCreated);
  t.open_start = t.seg_start = at;
  // A VM created now has a tap (when it gets one) whose counters start at zero; one that existed
  // before (missed by Begin in a race) has a history that is not this sample's.
  if (e.event.type == "created") {
    t.tap = TapStats{};
  } else {
    t.adopt = true;
  }
  return t;
}

// The open sample of `t` up to `end` with the counters of `reading`; resets `t` to a new open
// sample at `end` with the reading's counters as baselines.
Sample Emit(Tracker& t, Timestamp end, const VmReading* reading) {
  Sample s;
  s.vm_id = t.vm_id;
  s.vm_name = t.vm_name;
  s.start = t.open_start;
  s.end = end;
  s.state = t.state;
  s.vcpus = t.vcpus;
  s.memory_mib = t.memory_mib;
  s.snapshot_bytes = t.snapshot_bytes;
  s.usage = t.acc;
  Usage& u = s.usage;
  if (reading && reading->tap) {
    const TapStats& now = *reading->tap;
    if (t.tap) {
      // The guest's view: it received what the host sent into the tap.
      u.net_rx_bytes = Grown(t.tap->tx_bytes, now.tx_bytes);
      u.net_tx_bytes = Grown(t.tap->rx_bytes, now.rx_bytes);
      u.net_rx_packets = Grown(t.tap->tx_packets, now.tx_packets);
      u.net_tx_packets = Grown(t.tap->rx_packets, now.rx_packets);
    }
    t.tap = now;
  }
  if (!reading || !reading->process) {
    t.process.reset();
    t.cpu_ms = t.vcpu_ms = 0;
    t.disks = {};
  } else {
    bool same = t.process && *t.process == *reading->process;
    if (!same) {
      // A new VMM: from zero, unless its past is not ours to count (adopt).
      t.process = reading->process;
      t.cpu_ms = t.vcpu_ms = 0;
      t.disks = {};
    }
    bool count = same || !t.adopt;
    if (reading->stats) {
      s.rss_bytes = reading->stats->rss_bytes;
      int64_t vcpu = 0;
      for (int64_t v : reading->stats->vcpu_cpu_ms) vcpu += v;
      if (count) {
        u.cpu_ms = Grown(t.cpu_ms, reading->stats->cpu_ms);
        u.vcpu_ms = Grown(t.vcpu_ms, vcpu);
      }
      t.cpu_ms = reading->stats->cpu_ms;
      t.vcpu_ms = vcpu;
    }
    if (reading->disks) {
      const hv::DiskCounters& d = *reading->disks;
      if (count) {
        u.disk_read_bytes = Grown(t.disks.read_bytes, d.read_bytes);
        u.disk_write_bytes = Grown(t.disks.write_bytes, d.write_bytes);
        u.disk_read_ops = Grown(t.disks.read_ops, d.read_ops);
        u.disk_write_ops = Grown(t.disks.write_ops, d.write_ops);
      }
      t.disks = d;
    }
  }
  t.adopt = false;
  t.open_start = t.seg_start = end;
  t.acc = Usage{};
  return s;
}

UsageEvent MakeUsageEvent(const store::RecordedEvent& e, const Tracker* before) {
  UsageEvent u;
  u.seq = e.event.seq;
  u.vm_id = e.event.vm_id;
  u.vm_name = e.event.vm_name;
  u.time = e.event.time;
  u.type = e.event.type;
  u.state = e.deleted ? "deleted" : e.state ? std::string(ToString(*e.state)) : "";
  u.memory_mib = e.memory.value;
  u.snapshot_bytes = e.snapshot_bytes;
  u.measures = e.event.measures;
  if (HasReason(e)) u.reason = e.event.message;
  if (before && before->transition_start) {
    VmState after = e.state.value_or(VmState::kDeleting);
    if (e.deleted || EndsTransition(before->state, after)) {
      u.duration_ms = std::max<int64_t>(0, Ms(e.event.time) - Ms(*before->transition_start));
    }
  }
  if (u.type == "resumed" || u.type == kWokenEvent) {
    auto it = u.measures.find("latency_ms");
    u.latency_ms = it != u.measures.end() ? it->second : static_cast<double>(u.duration_ms);
  }
  return u;
}

}  // namespace

std::string_view ToString(StateClass c) {
  switch (c) {
    case StateClass::kRunning:
      return "running";
    case StateClass::kSuspended:
      return "suspended";
    case StateClass::kStopped:
      return "stopped";
    case StateClass::kTransition:
      return "transition";
  }
  return "unknown";
}

Usage& Usage::operator+=(const Usage& o) {
  for (int i = 0; i < kStateClasses; ++i) state_ms[i] += o.state_ms[i];
  cpu_ms += o.cpu_ms;
  vcpu_ms += o.vcpu_ms;
  ram_mib_ms += o.ram_mib_ms;
  snapshot_kib_ms += o.snapshot_kib_ms;
  net_rx_bytes += o.net_rx_bytes;
  net_tx_bytes += o.net_tx_bytes;
  net_rx_packets += o.net_rx_packets;
  net_tx_packets += o.net_tx_packets;
  disk_read_bytes += o.disk_read_bytes;
  disk_write_bytes += o.disk_write_bytes;
  disk_read_ops += o.disk_read_ops;
  disk_write_ops += o.disk_write_ops;
  return *this;
}

bool IsMeteredEventType(std::string_view type) {
  for (std::string_view t : {"created", "edited", "started", "stopped", "suspended", "resumed",
                             "woken", "failed", "deleted", "exited", "suspend_failed"}) {
    if (type == t) return true;
  }
  return false;
}

void CloseSegment(Tracker& t, Timestamp at) {
  at = std::max(at, t.seg_start);
  int64_t d = Ms(at) - Ms(t.seg_start);
  StateClass c = Classify(t.state);
  t.acc.ms(c) += d;
  if (c == StateClass::kRunning) t.acc.ram_mib_ms += d * t.memory_mib;
  if (c == StateClass::kSuspended) t.acc.snapshot_kib_ms += d * ((t.snapshot_bytes + 1023) / 1024);
  t.seg_start = at;
}

void Accountant::Begin(const std::vector<VmRecord>& vms, Timestamp now) {
  trackers_.clear();
  for (const auto& vm : vms) {
    Tracker t;
    t.vm_id = vm.id;
    t.vm_name = vm.name;
    t.state = vm.state;
    t.vcpus = vm.spec.vcpus;
    t.memory_mib = vm.spec.memory.value;
    t.snapshot_bytes = vm.snapshot ? vm.snapshot->bytes : 0;
    t.open_start = t.seg_start = now;
    if (IsTransitional(vm.state)) t.transition_start = vm.updated_at;
    t.adopt = true;
    trackers_.emplace(vm.id, std::move(t));
  }
}

TickResult Accountant::Tick(const std::vector<store::RecordedEvent>& events, Timestamp now,
                            const std::map<std::string, VmReading>& readings) const {
  TickResult r;
  r.trackers = trackers_;
  std::set<std::string> touched;
  for (const auto& e : events) {
    // Events that change no record (a timer's note) move no time.
    if (!e.state && !e.deleted) continue;
    const std::string& id = e.event.vm_id;
    auto it = r.trackers.find(id);
    if (it == r.trackers.end()) {
      if (e.deleted) {
        if (IsMeteredEventType(e.event.type)) r.events.push_back(MakeUsageEvent(e, nullptr));
        continue;
      }
      it = r.trackers.emplace(id, NewTracker(e, std::min(e.event.time, now))).first;
    }
    Tracker& t = it->second;
    Timestamp at = std::clamp(e.event.time, t.seg_start, std::max(now, t.seg_start));
    CloseSegment(t, at);
    if (IsMeteredEventType(e.event.type)) r.events.push_back(MakeUsageEvent(e, &t));
    if (e.deleted) {
      // The last sample ends with the VM; it has no VMM or tap left to read.
      if (at > t.open_start) r.samples.push_back(Emit(t, at, nullptr));
      r.trackers.erase(it);
      r.removed.insert(id);
      touched.erase(id);
      continue;
    }
    VmState next = *e.state;
    if (IsTransitional(next) && next != t.state) t.transition_start = e.event.time;
    if (!IsTransitional(next)) t.transition_start.reset();
    t.state = next;
    t.vm_name = e.event.vm_name;
    t.vcpus = e.vcpus;
    t.memory_mib = e.memory.value;
    t.snapshot_bytes = e.snapshot_bytes;
    touched.insert(id);
    r.removed.erase(id);
  }
  for (auto& [id, t] : r.trackers) {
    auto found = readings.find(id);
    const VmReading* reading = found == readings.end() ? nullptr : &found->second;
    bool vmm = reading && reading->process;
    bool vmm_gone = !vmm && t.process;
    bool traffic = reading && reading->tap && (!t.tap || *reading->tap != *t.tap);
    bool due = touched.count(id) || vmm || vmm_gone || traffic ||
               now - t.open_start >= options_.quiet_flush;
    if (touched.count(id)) r.changed.insert(id);
    // A clock that stood still or went back gives no interval to sample.
    if (!due || now <= t.open_start) continue;
    CloseSegment(t, now);
    r.samples.push_back(Emit(t, now, reading));
    r.changed.insert(id);
  }
  return r;
}

std::string TrackerToJson(const Tracker& t) {
  json acc = {{"state_ms", t.acc.state_ms},
              {"ram_mib_ms", t.acc.ram_mib_ms},
              {"snapshot_kib_ms", t.acc.snapshot_kib_ms}};
  json j = {
      {"vm_id", t.vm_id},
      {"vm_name", t.vm_name},
      {"state", ToString(t.state)},
      {"vcpus", t.vcpus},
      {"memory_mib", t.memory_mib},
      {"snapshot_bytes", t.snapshot_bytes},
      {"open_start_ms", Ms(t.open_start)},
      {"seg_start_ms", Ms(t.seg_start)},
      {"acc", acc},
      {"cpu_ms", t.cpu_ms},
      {"vcpu_ms", t.vcpu_ms},
      {"disks", {t.disks.read_bytes, t.disks.write_bytes, t.disks.read_ops, t.disks.write_ops}},
      {"adopt", t.adopt}};
  if (t.transition_start) j["transition_start_ms"] = Ms(*t.transition_start);
  if (t.tap) j["tap"] = {t.tap->rx_bytes, t.tap->tx_bytes, t.tap->rx_packets, t.tap->tx_packets};
  if (t.process) j["process"] = {t.process->pid, t.process->start_time};
  return j.dump();
}

Result<Tracker> TrackerFromJson(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return Fail(Code::kInternal, "metering tracker: not a JSON object");
  try {
    Tracker t;
    t.vm_id = j.at("vm_id").get<std::string>();
    t.vm_name = j.value("vm_name", "");
    auto state = ParseVmState(j.value("state", "created"));
    if (!state) return Fail(state.error().Wrap("metering tracker"));
    t.state = *state;
    t.vcpus = j.value("vcpus", 0);
    t.memory_mib = j.value("memory_mib", int64_t{0});
    t.snapshot_bytes = j.value("snapshot_bytes", int64_t{0});
    t.open_start = At(j.at("open_start_ms").get<int64_t>());
    t.seg_start = At(j.value("seg_start_ms", Ms(t.open_start)));
    if (j.contains("transition_start_ms")) {
      t.transition_start = At(j["transition_start_ms"].get<int64_t>());
    }
    if (j.contains("acc")) {
      const json& a = j["acc"];
      t.acc.state_ms = a.value("state_ms", std::array<int64_t, kStateClasses>{});
      t.acc.ram_mib_ms = a.value("ram_mib_ms", int64_t{0});
      t.acc.snapshot_kib_ms = a.value("snapshot_kib_ms", int64_t{0});
    }
    if (j.contains("tap")) {
      auto v = j["tap"].get<std::vector<int64_t>>();
      if (v.size() == 4) t.tap = TapStats{v[0], v[1], v[2], v[3]};
    }
    if (j.contains("process")) {
      t.process = hv::ProcessId{j["process"][0].get<int64_t>(), j["process"][1].get<uint64_t>()};
    }
    t.cpu_ms = j.value("cpu_ms", int64_t{0});
    t.vcpu_ms = j.value("vcpu_ms", int64_t{0});
    auto d = j.value("disks", std::vector<int64_t>{});
    if (d.size() == 4) t.disks = hv::DiskCounters{d[0], d[1], d[2], d[3]};
    t.adopt = j.value("adopt", false);
    return t;
  } catch (const json::exception& e) {
    return Fail(Code::kInternal, std::string("metering tracker: ") + e.what());
  }
}

}  // namespace hearth::metering

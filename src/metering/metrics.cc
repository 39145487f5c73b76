#include "metering/metrics.h"

#include <fmt/format.h>

#include <algorithm>

namespace hearth::metering {
namespace {

// Latencies: 1 ms to 60 s.
const std::vector<double> kLatencyBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                            0.5,   1,      2.5,   5,    10,    30,   60};
constexpr std::string_view kStateClassNames[] = {"running", "suspended", "stopped", "transition"};

std::string Escape(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// The label of an HTTP method: one of a fixed set.
std::string_view MethodLabel(std::string_view method) {
  for (std::string_view known : {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}) {
    if (method == known) return known;
  }
  return "other";
}

std::string Number(double v) {
  if (v == static_cast<double>(static_cast<int64_t>(v)) && std::abs(v) < 1e15) {
    return fmt::format("{}", static_cast<int64_t>(v));
  }
  return fmt::format("{}", v);
}

void Head(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void Line(std::string& out, std::string_view name, std::string_view labels, double value) {
  if (labels.empty()) {
    out += fmt::format("{} {}\n", name, Number(value));
  } else {
    out += fmt::format("{}{{{}}} {}\n", name, labels, Number(value));
  }
}

// The counters of a Usage, as (name, help, value in the unit the name says).
struct Counter {
  std::string_view name, help;
  double value;
};
std::vector<Counter> Counters(const Usage& u) {
  return {
      {"cpu_seconds_total", "CPU time of the VMM (user + system)",
       static_cast<double>(u.cpu_ms) / 1e3},
      {"network_receive_bytes_total", "bytes received by the guest", double(u.net_rx_bytes)},
      {"network_transmit_bytes_total", "bytes sent by the guest", double(u.net_tx_bytes)},
      {"network_receive_packets_total", "packets received by the guest", double(u.net_rx_packets)},
      {"network_transmit_packets_total", "packets sent by the guest", double(u.net_tx_packets)},
      {"disk_read_bytes_total", "bytes the guest read from its disks", double(u.disk_read_bytes)},
      {"disk_written_bytes_total", "bytes the guest wrote to its disks",
       double(u.disk_write_bytes)},
      {"disk_reads_total", "read requests of the guest's disks", double(u.disk_read_ops)},
      {"disk_writes_total", "write requests of the guest's disks", double(u.disk_write_ops)},
  };
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size(), 0) {}

void Histogram::Observe(double value) {
  auto it = std::lower_bound(bounds_.begin(), bounds_.end(), value);
  if (it != bounds_.end()) ++counts_[static_cast<size_t>(it - bounds_.begin())];
  sum_ += value;
  ++count_;
}

void Histogram::Render(std::string& out, std::string_view name, std::string_view labels) const {
  std::string prefix = labels.empty() ? "" : std::string(labels) + ",";
  int64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    Line(out, fmt::format("{}_bucket", name), fmt::format("{}le=\"{}\"", prefix, bounds_[i]),
         static_cast<double>(cumulative));
  }
  Line(out, fmt::format("{}_bucket", name), prefix + "le=\"+Inf\"", static_cast<double>(count_));
  Line(out, fmt::format("{}_sum", name), labels, sum_);
  Line(out, fmt::format("{}_count", name), labels, static_cast<double>(count_));
}

Metrics::Metrics() : wake_latency_(kLatencyBounds) {}

void Metrics::ObserveRequest(std::string_view method, std::string_view route, int status,
                             double seconds) {
  std::string label(MethodLabel(method));
  std::lock_guard lock(mu_);
  ++requests_[{label, std::string(route), std::to_string(status)}];
  request_seconds_.try_emplace({label, std::string(route)}, kLatencyBounds)
      .first->second.Observe(seconds);
}

void Metrics::ObserveTick(const TickResult& tick, const std::map<std::string, VmReading>& readings,
                          double seconds) {
  std::lock_guard lock(mu_);
  ++ticks_;
  last_tick_seconds_ = seconds;
  samples_ += static_cast<int64_t>(tick.samples.size());
  events_ += static_cast<int64_t>(tick.events.size());
  for (const Sample& s : tick.samples) {
    node_usage_ += s.usage;
    if (!tick.removed.count(s.vm_id)) vms_[s.vm_id].usage += s.usage;
  }
  for (const UsageEvent& e : tick.events) {
    if (e.type == kWokenEvent) {
      ++node_wakes_;
      if (!tick.removed.count(e.vm_id)) ++vms_[e.vm_id].wakes;
      wake_latency_.Observe(e.latency_ms / 1e3);
      for (const auto& [stage, ms] : e.measures) {
        if (stage == "latency_ms" || !stage.ends_with("_ms")) continue;
        wake_stages_.try_emplace(stage.substr(0, stage.size() - 3), kLatencyBounds)
            .first->second.Observe(ms / 1e3);
      }
    }
    if (e.duration_ms > 0 || e.type == kWokenEvent || e.type == "resumed") {
      transitions_.try_emplace(e.type, kLatencyBounds)
          .first->second.Observe(static_cast<double>(e.duration_ms) / 1e3);
    }
  }
  for (const auto& id : tick.removed) vms_.erase(id);
  for (const auto& [id, t] : tick.trackers) {
    Vm& vm = vms_[id];
    vm.name = t.vm_name;
    vm.state = t.state;
    vm.memory_bytes = t.memory_mib << 20;
    vm.snapshot_bytes = t.state == VmState::kSuspended ? t.snapshot_bytes : 0;
    auto r = readings.find(id);
    bool has_stats = r != readings.end() && r->second.stats;
    vm.rss_bytes = has_stats ? r->second.stats->rss_bytes : 0;
    vm.vcpu_ms = has_stats ? r->second.stats->vcpu_cpu_ms : std::vector<int64_t>{};
  }
}

void Metrics::ObserveTickError() {
  std::lock_guard lock(mu_);
  ++tick_errors_;
}

void Metrics::SetSinkStats(std::function<SinkStats()> stats) {
  std::lock_guard lock(mu_);
  sink_stats_ = std::move(stats);
}

std::string Metrics::Render() const {
  std::lock_guard lock(mu_);
  std::string out;
  RenderVms(out);
  RenderNode(out);
  RenderLifecycle(out);
  RenderApi(out);
  RenderMetering(out);
  if (sink_stats_) RenderSink(out, sink_stats_());
  return out;
}

void Metrics::RenderVms(std::string& out) const {
  auto vm_label = [](const Vm& vm) { return fmt::format("vm=\"{}\"", Escape(vm.name)); };

  Head(out, "hearth_vm_state", "gauge", "1 for the state each VM is in");
  for (const auto& [_, vm] : vms_) {
    Line(out, "hearth_vm_state", fmt::format("{},state=\"{}\"", vm_label(vm), ToString(vm.state)),
         1);
  }
  Head(out, "hearth_vm_state_seconds_total", "counter", "time in each class of state");
  for (const auto& [_, vm] : vms_) {
    for (int c = 0; c < kStateClasses; ++c) {
      Line(out, "hearth_vm_state_seconds_total",
           fmt::format("{},state=\"{}\"", vm_label(vm), kStateClassNames[c]),
           static_cast<double>(vm.usage.state_ms[c]) / 1e3);
    }
  }
  for (const auto& c : Counters(Usage{})) {
    std::string name = fmt::format("hearth_vm_{}", c.name);
    Head(out, name, "counter", c.help);
    for (const auto& [_, vm] : vms_) {
      for (const auto& v : Counters(vm.usage)) {
        if (v.name == c.name) Line(out, name, vm_label(vm), v.value);
      }
    }
  }
  Head(out, "hearth_vm_vcpu_seconds_total", "counter", "CPU time of each vCPU of the VMM");
  for (const auto& [_, vm] : vms_) {
    for (size_t i = 0; i < vm.vcpu_ms.size(); ++i) {
      Line(out, "hearth_vm_vcpu_seconds_total", fmt::format("{},vcpu=\"{}\"", vm_label(vm), i),
           static_cast<double>(vm.vcpu_ms[i]) / 1e3);
    }
  }
  struct Gauge {
    std::string_view name, help;
    int64_t Vm::*field;
  };
  for (const Gauge& g :
       {Gauge{"memory_bytes", "guest memory size", &Vm::memory_bytes},
        Gauge{"rss_bytes", "resident memory of the VMM", &Vm::rss_bytes},
        Gauge{"snapshot_bytes", "saved state on disk while suspended", &Vm::snapshot_bytes}}) {
    std::string name = fmt::format("hearth_vm_{}", g.name);
    Head(out, name, "gauge", g.help);
    for (const auto& [_, vm] : vms_) Line(out, name, vm_label(vm), double(vm.*g.field));
  }
  Head(out, "hearth_vm_wakes_total", "counter", "wakes on packet");
  for (const auto& [_, vm] : vms_)
    Line(out, "hearth_vm_wakes_total", vm_label(vm), double(vm.wakes));
}

void Metrics::RenderNode(std::string& out) const {
  std::map<std::string, int> by_state;
  int64_t memory = 0, rss = 0, snapshots = 0;
  for (const auto& [_, vm] : vms_) {
    ++by_state[std::string(ToString(vm.state))];
    if (HoldsMemory(vm.state)) memory += vm.memory_bytes;
    rss += vm.rss_bytes;
    snapshots += vm.snapshot_bytes;
  }
  Head(out, "hearth_node_vms", "gauge", "VMs by state");
  for (const auto& [state, n] : by_state) {
    Line(out, "hearth_node_vms", fmt::format("state=\"{}\"", state), n);
  }
  Head(out, "hearth_node_memory_bytes", "gauge", "guest memory of the VMs that hold RAM");
  Line(out, "hearth_node_memory_bytes", "", double(memory));
  Head(out, "hearth_node_rss_bytes", "gauge", "resident memory of every VMM");
  Line(out, "hearth_node_rss_bytes", "", double(rss));
  Head(out, "hearth_node_snapshot_bytes", "gauge", "saved state of suspended VMs");
  Line(out, "hearth_node_snapshot_bytes", "", double(snapshots));
  for (const auto& c : Counters(node_usage_)) {
    std::string name = fmt::format("hearth_node_{}", c.name);
    Head(out, name, "counter", std::string(c.help) + ", every VM");
    Line(out, name, "", c.value);
  }
  Head(out, "hearth_node_wakes_total", "counter", "wakes on packet, every VM");
  Line(out, "hearth_node_wakes_total", "", double(node_wakes_));
}

void Metrics::RenderLifecycle(std::string& out) const {
  Head(out, "hearth_wake_latency_seconds", "histogram", "packet seen to guest running again");
  wake_latency_.Render(out, "hearth_wake_latency_seconds", "");
  Head(out, "hearth_wake_stage_seconds", "histogram", "the measured stages of wakes");
  for (const auto& [stage, h] : wake_stages_) {
    h.Render(out, "hearth_wake_stage_seconds", fmt::format("stage=\"{}\"", Escape(stage)));
  }
  Head(out, "hearth_transition_seconds", "histogram",
       "how long transitions took, by the event that ended them");
  for (const auto& [event, h] : transitions_) {
    h.Render(out, "hearth_transition_seconds", fmt::format("event=\"{}\"", Escape(event)));
  }
}

void Metrics::RenderApi(std::string& out) const {
  Head(out, "hearth_api_requests_total", "counter", "API requests by route and status");
  for (const auto& [k, n] : requests_) {
    Line(out, "hearth_api_requests_total",
         fmt::format("method=\"{}\",route=\"{}\",code=\"{}\"", Escape(k[0]), Escape(k[1]), k[2]),
         double(n));
  }
  Head(out, "hearth_api_request_duration_seconds", "histogram", "API request latency");
  for (const auto& [k, h] : request_seconds_) {
    h.Render(out, "hearth_api_request_duration_seconds",
             fmt::format("method=\"{}\",route=\"{}\"", Escape(k[0]), Escape(k[1])));
  }
}

void Metrics::RenderMetering(std::string& out) const {
  Head(out, "hearth_metering_ticks_total", "counter", "metering intervals sampled");
  Line(out, "hearth_metering_ticks_total", "", double(ticks_));
  Head(out, "hearth_metering_errors_total", "counter", "metering intervals that failed to store");
  Line(out, "hearth_metering_errors_total", "", double(tick_errors_));
  Head(out, "hearth_metering_samples_total", "counter", "samples written");
  Line(out, "hearth_metering_samples_total", "", double(samples_));
  Head(out, "hearth_metering_events_total", "counter", "metering events written");
  Line(out, "hearth_metering_events_total", "", double(events_));
  Head(out, "hearth_metering_tick_seconds", "gauge", "how long the last interval's work took");
  Line(out, "hearth_metering_tick_seconds", "", last_tick_seconds_);
}

void Metrics::RenderSink(std::string& out, const SinkStats& s) {
  for (auto [name, type, help, value] :
       {std::tuple{"rows_sent_total", "counter", "rows ClickHouse accepted", s.rows_sent},
        std::tuple{"inserts_total", "counter", "INSERT statements that succeeded", s.inserts},
        std::tuple{"errors_total", "counter", "failed requests to ClickHouse", s.errors},
        std::tuple{"rejected_rows_total", "counter", "rows ClickHouse refused for good",
                   s.rejected_rows},
        std::tuple{"dropped_rows_total", "counter", "rows dropped from a full spool",
                   s.dropped_rows},
        std::tuple{"spool_rows", "gauge", "rows waiting in the spool", s.spool_rows},
        std::tuple{"spool_bytes", "gauge", "bytes waiting in the spool", s.spool_bytes}}) {
    std::string metric = fmt::format("hearth_clickhouse_{}", name);
    Head(out, metric, type, help);
    Line(out, metric, "", double(value));
  }
  Head(out, "hearth_clickhouse_up", "gauge", "1 when the last request to ClickHouse succeeded");
  Line(out, "hearth_clickhouse_up", "", s.last_error.empty() && s.schema_ready ? 1 : 0);
}

}  // namespace hearth::metering

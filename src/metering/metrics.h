// Metrics: what GET /metrics shows, in the Prometheus text format (version 0.0.4).
//
//   per VM (label vm):     hearth_vm_state{vm,state} 1, hearth_vm_cpu_seconds_total,
//                          hearth_vm_vcpu_seconds_total{vcpu},
//                          hearth_vm_state_seconds_total{state}, hearth_vm_memory_bytes,
//                          hearth_vm_rss_bytes, hearth_vm_snapshot_bytes,
//                          hearth_vm_network_{receive,transmit}_{bytes,packets}_total,
//                          hearth_vm_disk_{read,written}_bytes_total,
//                          hearth_vm_disk_{reads,writes}_total, hearth_vm_wakes_total
//   node totals:           hearth_node_vms{state}, hearth_node_memory_bytes (guest RAM held),
//                          hearth_node_rss_bytes, hearth_node_snapshot_bytes, and the _total
//                          counters above summed over every VM (deleted ones included)
//   lifecycle:             hearth_wake_latency_seconds (histogram),
//   hearth_wake_stage_seconds{stage}
//                          (histograms of a wake's measured stages),
//                          hearth_transition_seconds{event}
//   API:                   hearth_api_requests_total{method,route,code},
//                          hearth_api_request_duration_seconds{method,route} (histogram)
//   metering itself:       hearth_metering_*, hearth_clickhouse_* (spool, rows sent, errors)
// Counters count from this hearthd's start. Thread-safe.
#pragma once

#include <array>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "metering/accountant.h"
#include "metering/clickhouse_sink.h"

namespace hearth::metering {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);
  // Appends the _bucket, _sum and _count lines of `name` with `labels` ("a=\"b\"" or "").
  void Render(std::string& out, std::string_view name, std::string_view labels) const;

 private:
  std::vector<double> bounds_;
  std::vector<int64_t> counts_;  // per bound, not cumulative
  double sum_ = 0;
  int64_t count_ = 0;
};

class Metrics {
 public:
  Metrics();

  // One API request, by its route's OpenAPI path ("/v1/vms/{name}", or "other" for what no route
  // serves), status and duration. A method outside the standard HTTP ones is labelled "other",
  // so that made-up methods cannot add series.
  void ObserveRequest(std::string_view method, std::string_view route, int status, double seconds);
  // A committed metering tick: its samples and events, every tracker after it and the readings.
  void ObserveTick(const TickResult& tick, const std::map<std::string, VmReading>& readings,
                   double seconds);
  void ObserveTickError();
  // Where the ClickHouse sink's numbers come from (unset: no sink).
  void SetSinkStats(std::function<SinkStats()> stats);

  std::string Render() const;

 private:
  struct Vm {
    std::string name;
    VmState state = VmState::kCreated;
    int64_t memory_bytes = 0, rss_bytes = 0, snapshot_bytes = 0;
    std::vector<int64_t> vcpu_ms;
    Usage usage;  // since this hearthd started
    int64_t wakes = 0;
  };
  struct Api {
    int64_t count = 0;
  };

  // The sections of Render, in the order they appear; mu_ is held.
  void RenderVms(std::string& out) const;                        // hearth_vm_*
  void RenderNode(std::string& out) const;                       // hearth_node_*
  void RenderLifecycle(std::string& out) const;                  // wakes and transitions
  void RenderApi(std::string& out) const;                        // hearth_api_*
  void RenderMetering(std::string& out) const;                   // hearth_metering_*
  static void RenderSink(std::string& out, const SinkStats& s);  // hearth_clickhouse_*

  mutable std::mutex mu_;
  std::map<std::string, Vm> vms_;  // by VM id
  Usage node_usage_;
  int64_t node_wakes_ = 0;
  Histogram wake_latency_;
  std::map<std::string, Histogram> wake_stages_;                     // by stage
  std::map<std::string, Histogram> transitions_;                     // by event type
  std::map<std::array<std::string, 3>, int64_t> requests_;           // method, route, code
  std::map<std::array<std::string, 2>, Histogram> request_seconds_;  // method, route
  int64_t ticks_ = 0, tick_errors_ = 0, samples_ = 0, events_ = 0;
  double last_tick_seconds_ = 0;
  std::function<SinkStats()> sink_stats_;
};

}  // namespace hearth::metering

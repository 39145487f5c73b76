// Firecracker's metrics, kept drained and summed. Firecracker writes one JSON object per line to
// the metrics FIFO (at start, every 60 s, on FlushMetrics): its counters are deltas since the
// previous line, so they are summed here per VM; `latencies_us.*` are current values and are kept
// as the last non-zero value seen. A full FIFO makes Firecracker drop lines, so one thread reads
// every attached FIFO as soon as it is readable. Thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <thread>

#include "common/result.h"

namespace hearth::hv::firecracker {

// Firecracker's metrics lines are a few KiB. A longer line is not its output: it is skipped whole
// (up to its newline, however long) and counted as bad, and no more of it is held in memory.
inline constexpr size_t kMaxMetricsLineBytes = 64 << 10;
// The most one read of a FIFO takes in before the reader turns to other work: a FIFO that never
// runs dry cannot hold the reader's thread or its lock.
inline constexpr size_t kMaxDrainBytes = 1 << 20;

// What one Firecracker process has reported since it started.
struct MetricsTotals {
  int64_t net_rx_bytes = 0, net_tx_bytes = 0, net_rx_packets = 0, net_tx_packets = 0;  // eth0
  int64_t block_read_bytes = 0, block_write_bytes = 0, block_read_ops = 0, block_write_ops = 0;
  int64_t full_create_snapshot_us = 0;  // the last snapshot's creation, as Firecracker timed it
  int64_t load_snapshot_us = 0;         // the load of the snapshot this process was restored from
  int64_t lines = 0;                    // metrics lines read
  int64_t bad_lines = 0;  // lines that were not a JSON object, or longer than kMaxMetricsLineBytes
  bool operator==(const MetricsTotals&) const = default;

  // Adds one metrics line.
  void Add(std::string_view line);
  nlohmann::json ToJson() const;
};

class MetricsReader {
 public:
  MetricsReader();
  ~MetricsReader();
  MetricsReader(const MetricsReader&) = delete;
  MetricsReader& operator=(const MetricsReader&) = delete;

  // Starts reading `fifo` for VM `vm_id` (for a new Firecracker process: totals start at zero).
  // Replaces an earlier attachment of the VM.
  Status Attach(const std::string& vm_id, const std::filesystem::path& fifo);
  // Stops reading the VM's FIFO and forgets its totals.
  void Detach(const std::string& vm_id);
  bool attached(const std::string& vm_id) const;
  // Reads what is in the VM's FIFO now (up to kMaxDrainBytes), then returns its totals;
  // not_found when not attached.
  Result<MetricsTotals> Totals(const std::string& vm_id);
  // The bytes held for the VM's line not yet complete: at most kMaxMetricsLineBytes.
  size_t pending_bytes(const std::string& vm_id) const;

 private:
  struct Source {
    int fd = -1;
    std::filesystem::path path;
    std::string partial;    // a line not yet complete
    bool skipping = false;  // the line under way is too long: ignored up to its newline
    MetricsTotals totals;
  };
  void Run();
  static void Drain(Source& source);
  static void Split(Source& source, std::string_view chunk);

  mutable std::mutex mu_;
  std::map<std::string, Source> sources_;
  int wake_fd_ = -1;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace hearth::hv::firecracker

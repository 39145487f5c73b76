// Metrics of the Firecracker double: the lines it writes and the file or FIFO it writes them to.
//
// Like Firecracker, the metrics path (from PUT /metrics or --metrics-path) must already exist; it
// is opened O_RDWR|O_NONBLOCK without O_CREAT, so opening a FIFO never blocks, and a line that does
// not fit into a full FIFO is dropped (counted in logger.missed_metrics_count of the next line).
// One JSON object per line, written when metrics are configured, every
// FC_DOUBLE_METRICS_INTERVAL_MS (default 60000), on PUT /actions FlushMetrics and when the process
// ends on SendCtrlAltDel.
//
// The numbers are deterministic so tests can check sums. Counters are deltas since the previous
// line. For every line written while the VM is Running (booted or restored with resume, and not
// paused), each network interface reports
//     rx_bytes_count 1000, tx_bytes_count 500, rx_packets_count 10, tx_packets_count 5
// and each drive
//     read_bytes 4096, write_bytes 8192, read_count 1, write_count 2, flush_count 0;
// the aggregates `net` and `block` are the sums over interfaces and drives, and `vcpu` reports
// exit_io_in 1 and exit_mmio_write 1 per vCPU. While Not started or Paused every counter is 0.
// `latencies_us` holds current values (not deltas): the duration of the last full_create_snapshot,
// load_snapshot, pause_vm and resume_vm (0 until the operation ran).
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/result.h"

namespace hearth::fcdouble {

struct MetricsInput {
  int64_t utc_timestamp_ms = 0;
  bool running = false;
  int vcpu_count = 1;
  std::vector<std::string> iface_ids;
  std::vector<std::string> drive_ids;
  uint64_t full_create_snapshot_us = 0;
  uint64_t load_snapshot_us = 0;
  uint64_t pause_vm_us = 0;
  uint64_t resume_vm_us = 0;
  uint64_t missed_metrics_count = 0;
};

// One metrics line (without the newline) for `in`, following the rule in the header comment.
nlohmann::json MetricsLine(const MetricsInput& in);

class MetricsSink {
 public:
  // Opens `path` as Firecracker does; failed_precondition with the OS error when it cannot.
  Status Open(const std::string& path);
  bool is_open() const { return fd_ >= 0; }
  // Writes one line; false when it was dropped (a full FIFO) or could not be written.
  bool Write(const nlohmann::json& line);

 private:
  std::mutex mu_;
  int fd_ = -1;
};

}  // namespace hearth::fcdouble

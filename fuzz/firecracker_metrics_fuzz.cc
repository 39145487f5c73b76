// firecracker_metrics_fuzz: the lines Firecracker writes to its metrics FIFO, each through
// MetricsTotals::Add as MetricsReader feeds them, then ToJson. An input is the FIFO's bytes
// (lines separated by '\n'). Findings besides the sanitizers' (signed overflow and out-of-range
// float conversions are undefined behaviour, so UBSan reports them): an exception, a line
// counted neither as a line nor as a bad line, and a negative total.
#include <exception>

#include "fuzz_support.h"
#include "hv/firecracker/metrics_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hearth;
  hv::firecracker::MetricsTotals totals;
  int64_t fed = 0;
  try {
    fuzz::ForEachLine(fuzz::AsText(data, size), [&](std::string_view line) {
      totals.Add(line);
      ++fed;
    });
    (void)totals.ToJson().dump();
  } catch (const std::exception& e) {
    fuzz::Crash("reading a metrics line threw", e.what());
  }
  if (totals.lines + totals.bad_lines != fed) fuzz::Crash("lines lost", std::to_string(fed));
  for (int64_t v : {totals.net_rx_bytes, totals.net_tx_bytes, totals.net_rx_packets,
                    totals.net_tx_packets, totals.block_read_bytes, totals.block_write_bytes,
                    totals.block_read_ops, totals.block_write_ops}) {
    if (v < 0) fuzz::Crash("a negative total", totals.ToJson().dump());
  }
  return 0;
}

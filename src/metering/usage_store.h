// UsageStore: metering's local, durable store (the embedded SQLite database by default). It keeps
// samples, metering events, each VM's open sample (Tracker) and the positions metering has
// reached, and answers reports without ClickHouse. Thread-safe.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "metering/accountant.h"
#include "metering/report.h"

namespace hearth::metering {

// What metering reached, stored with the samples it wrote.
struct MeteringState {
  bool begun = false;                       // false on a node never metered before
  int64_t cursor = 0;                       // the last event seq accounted for
  std::map<std::string, Tracker> trackers;  // by VM id
};

// One tick's writes, committed atomically.
struct TickWrite {
  int64_t cursor = 0;
  const TickResult* result = nullptr;
};

// A sample with the local seq it was stored under.
struct StoredSample {
  int64_t seq = 0;
  Sample sample;
};

class UsageStore : public UsageSource {
 public:
  virtual Result<MeteringState> LoadState() = 0;
  // Writes the tick; returns the seqs given to result->samples, in order.
  virtual Result<std::vector<int64_t>> Commit(const TickWrite& write) = 0;
  // Samples with a seq above `after` and events with an event seq above `after`, in order (for
  // handing to the spool what a crash kept from it).
  virtual Result<std::vector<StoredSample>> SamplesAfter(int64_t after, int limit) = 0;
  virtual Result<std::vector<UsageEvent>> EventsAfter(int64_t after, int limit) = 0;
  // The highest sample seq stored so far (0 if none).
  virtual Result<int64_t> LastSampleSeq() = 0;
  // Rolls samples that ended before now - raw_keep up into hourly sums and deletes hourly sums and
  // events older than now - retention.
  virtual Status Maintain(Timestamp now, Duration raw_keep, Duration retention) = 0;
};

}  // namespace hearth::metering

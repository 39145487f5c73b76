// ClickHouseSink: gets every sample and metering event into ClickHouse exactly once.
//
// The sampler hands it each tick's rows after committing them locally (Write); they go to the
// on-disk spool first, and a sender thread inserts the spool's batches, oldest first, several at
// a time (INSERT ... FORMAT JSONEachRow), removing them once ClickHouse answered 200. While
// ClickHouse is down or slow the spool grows and the sender retries with backoff (0.5 s doubling
// to 10 s). Exactly once:
//   - no loss: a batch leaves the spool only after ClickHouse accepted it; after a crash,
//     CatchUp hands the spool what the local store has beyond the spool's marks;
//   - no duplicates: an insert that got no answer may have happened, so before its batches are
//     sent again the sender asks ClickHouse which of them arrived (by the rows' `batch`) and sends
//     only the others; and every row has a key (vm_id with end_ms or seq) in a ReplacingMergeTree,
//     read with FINAL, so a row that still arrives twice is counted once.
// The tables are created (or migrated) before the first insert, and again if they vanish.
#pragma once

#include <condition_variable>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "metering/clickhouse_transport.h"
#include "metering/spool.h"
#include "metering/usage_store.h"

namespace hearth::metering {

struct ClickHouseSinkOptions {
  std::string database = "hearth";
  std::string node;  // this node's name in the rows (its host name)
  int64_t max_batch_rows = 100'000;
  int64_t max_batch_bytes = int64_t{32} << 20;
  // Between inserts into one table when there is no backlog: ClickHouse prefers few, large ones.
  Duration min_insert_interval = std::chrono::seconds(1);
  Duration retry_min = std::chrono::milliseconds(500);
  Duration retry_max = std::chrono::seconds(10);
};

struct SinkStats {
  int64_t rows_sent = 0;      // rows ClickHouse accepted (or had already, found by a check)
  int64_t inserts = 0;        // successful INSERT statements
  int64_t errors = 0;         // failed requests
  int64_t rejected_rows = 0;  // rows of batches ClickHouse refused for good
  int64_t spool_rows = 0, spool_bytes = 0, dropped_rows = 0;
  bool schema_ready = false;
  std::string last_error;
};

class ClickHouseSink {
 public:
  ClickHouseSink(ClickHouseTransport& transport, Spool& spool, ClickHouseSinkOptions options);
  ~ClickHouseSink();  // Stop()

  // Hands the spool the rows of `local` past the spool's marks (samples by seq, events up to
  // `events_cursor`); on a spool without marks, only sets them. Call before the first Write.
  Status CatchUp(UsageStore& local, int64_t events_cursor);
  // Spools a tick's rows durably and wakes the sender.
  Status Write(const std::vector<StoredSample>& samples, const std::vector<UsageEvent>& events);

  void Start();
  void Stop();  // ends the sender thread; what is spooled stays for the next start
  // Waits until the spool is empty (true) or `timeout` passes.
  bool Drain(Duration timeout);
  SinkStats stats() const;

  // One round of the sender: creates the schema if needed and inserts the oldest batches. Ok
  // when there was nothing to do or it succeeded. (The thread's work; exposed for tests.)
  Status SendOnce();

 private:
  Status SendRound();
  Status EnsureSchema();
  Status SendGroup(std::vector<SpoolBatch> group);
  void Loop();
  void Failed(const Error& e);

  ClickHouseTransport& transport_;
  Spool& spool_;
  ClickHouseSinkOptions options_;
  std::mutex write_mu_;  // Write and CatchUp: marks move forward only

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool schema_ready_ = false;
  std::set<std::string> uncertain_;  // batches whose insert got no answer
  std::string single_until_;         // send batches one at a time up to this name
  SinkStats stats_;
  std::thread thread_;
};

}  // namespace hearth::metering

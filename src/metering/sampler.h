// Sampler: metering's thread. Every interval it reads the node's event stream from where it left
// off, reads the host's counters for each VM (UsageReader), lets the Accountant turn both into
// samples and metering events, and commits them with its position in one transaction of the local
// store; then it hands them to the ClickHouse sink (if any) and the metrics.
//
// It needs nothing from the node but its committed records (for pids, taps and disks) and the
// store's event stream, which holds every transition with its time and the record's facts: so the
// node calls nothing of metering, and a transition that happens while metering is behind (or while
// no hearthd runs) is still accounted at its own time.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

#include "metering/accountant.h"
#include "metering/clickhouse_sink.h"
#include "metering/metrics.h"
#include "metering/usage_reader.h"
#include "metering/usage_store.h"
#include "store/state_store.h"

namespace hearth::metering {

struct SamplerOptions {
  Duration interval = std::chrono::seconds(10);  // --metering-interval, at least 1 s
  Duration raw_keep = std::chrono::hours(24);    // then samples are rolled up to hours
  Duration retention = std::chrono::hours(24 * 7);
  Duration maintain_every = std::chrono::minutes(10);
  AccountantOptions accountant;
};

class Sampler {
 public:
  // `vms` returns the node's committed records (Node::List). `sink` may be null.
  Sampler(store::StateStore& events, UsageStore& local, UsageReader& reader, const Clock& clock,
          std::function<std::vector<VmRecord>()> vms, Metrics& metrics, SamplerOptions options,
          ClickHouseSink* sink = nullptr);
  ~Sampler();  // Stop()

  // Takes up where metering left off (a node never metered begins with its VMs as they are now)
  // and hands the sink what it missed. Call once, after the node recovered, before Start.
  Status Load();
  // One interval's work at the clock's now. (The thread's; exposed for tests.)
  Status Tick();
  // Runs Tick every interval on a thread until Stop.
  void Start();
  void Stop();

  int64_t cursor() const;

 private:
  void Loop();

  store::StateStore& events_;
  UsageStore& local_;
  UsageReader& reader_;
  const Clock& clock_;
  std::function<std::vector<VmRecord>()> vms_;
  Metrics& metrics_;
  SamplerOptions options_;
  ClickHouseSink* sink_;

  mutable std::mutex tick_mu_;  // one Tick at a time
  Accountant accountant_;
  int64_t cursor_ = 0;
  bool sink_behind_ = false;  // a Write failed: catch up from the local store first
  std::optional<Timestamp> maintained_;
  std::string last_error_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace hearth::metering

// The local metering store on a real SQLite file (migrated by the state store): ticks commit
// atomically with the trackers and cursor, reports sum by bucket, roll-up keeps every sum by
// hour and day, and retention drops what is older.
#include <gtest/gtest.h>

#include <fstream>

#include "metering/sqlite_usage_store.h"
#include "store/sqlite_state_store.h"
#include "support/temp_dir.h"

namespace hearth::metering {
namespace {

using namespace std::chrono_literals;

const Timestamp kDay{Duration{1'700'006'400'000}};  // a midnight (UTC)

class UsageStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto state = store::SqliteStateStore::Open(dir_ / "state.db");
    ASSERT_TRUE(state) << state.error().message;
    state_ = std::move(*state);
    auto usage = SqliteUsageStore::Open(dir_ / "state.db");
    ASSERT_TRUE(usage) << usage.error().message;
    usage_ = std::move(*usage);
  }

  static Sample S(const std::string& vm, Timestamp end, int64_t cpu_ms, int64_t running_ms) {
    Sample s;
    s.vm_id = "id-" + vm;
    s.vm_name = vm;
    s.start = end - Duration{running_ms};
    s.end = end;
    s.state = VmState::kRunning;
    s.memory_mib = 256;
    s.rss_bytes = 100;
    s.usage.cpu_ms = cpu_ms;
    s.usage.ms(StateClass::kRunning) = running_ms;
    s.usage.ram_mib_ms = 256 * running_ms;
    s.usage.net_rx_bytes = 10;
    return s;
  }
  static UsageEvent Woken(const std::string& vm, int64_t seq, Timestamp at, double latency) {
    UsageEvent e;
    e.seq = seq;
    e.vm_id = "id-" + vm;
    e.vm_name = vm;
    e.time = at;
    e.type = "woken";
    e.state = "running";
    e.latency_ms = latency;
    e.measures = {{"latency_ms", latency}};
    return e;
  }

  Result<std::vector<int64_t>> Commit(std::vector<Sample> samples,
                                      std::vector<UsageEvent> events = {}, int64_t cursor = 0) {
    TickResult r;
    r.samples = std::move(samples);
    r.events = std::move(events);
    return usage_->Commit(TickWrite{cursor, &r});
  }

  Report Query(Timestamp since, Timestamp until, std::optional<Bucket> by, std::string vm = "") {
    ReportQuery q{since, until, by, std::move(vm)};
    auto data = usage_->Fetch(q);
    EXPECT_TRUE(data) << data.error().message;
    return BuildReport(q, data ? *data : UsageData{}, "local");
  }

  testing::TempDir dir_;
  std::unique_ptr<store::SqliteStateStore> state_;
  std::unique_ptr<SqliteUsageStore> usage_;
};

TEST_F(UsageStoreTest, RefusesADatabaseWithoutTheMeteringTables) {
  testing::TempDir other;
  { std::ofstream(other / "empty.db"); }
  auto s = SqliteUsageStore::Open(other / "empty.db");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kFailedPrecondition);
}

TEST_F(UsageStoreTest, TicksCommitWithTheirTrackersAndCursor) {
  auto fresh = usage_->LoadState();
  ASSERT_TRUE(fresh);
  EXPECT_FALSE(fresh->begun);

  TickResult r;
  r.samples = {S("a", kDay + 10s, 5, 10000), S("b", kDay + 10s, 7, 10000)};
  r.events = {Woken("a", 42, kDay + 5s, 180)};
  Tracker t;
  t.vm_id = "id-a";
  t.vm_name = "a";
  t.state = VmState::kRunning;
  t.open_start = t.seg_start = kDay + 10s;
  t.process = hv::ProcessId{12, 34};
  t.tap = TapStats{1, 2, 3, 4};
  r.trackers = {{"id-a", t}};
  r.changed = {"id-a"};
  auto seqs = usage_->Commit(TickWrite{42, &r});
  ASSERT_TRUE(seqs) << seqs.error().message;
  ASSERT_EQ(seqs->size(), 2u);
  EXPECT_LT((*seqs)[0], (*seqs)[1]);

  auto state = usage_->LoadState();
  ASSERT_TRUE(state);
  EXPECT_TRUE(state->begun);
  EXPECT_EQ(state->cursor, 42);
  ASSERT_EQ(state->trackers.count("id-a"), 1u);
  EXPECT_EQ(state->trackers.at("id-a"), t);

  auto after = usage_->SamplesAfter((*seqs)[0], 10);
  ASSERT_TRUE(after);
  ASSERT_EQ(after->size(), 1u);
  EXPECT_EQ((*after)[0].sample, r.samples[1]);
  auto events = usage_->EventsAfter(0, 10);
  ASSERT_TRUE(events);
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0], r.events[0]);

  // A tick that deletes the tracker; an event seen again is kept once.
  TickResult del;
  del.removed = {"id-a"};
  del.events = r.events;
  ASSERT_TRUE(usage_->Commit(TickWrite{43, &del}));
  state = usage_->LoadState();
  EXPECT_TRUE(state->trackers.empty());
  EXPECT_EQ(usage_->EventsAfter(0, 10)->size(), 1u);

  // Two samples of one VM with the same end are refused, and nothing of the tick is kept.
  auto dup = Commit({S("b", kDay + 20s, 1, 10000), S("b", kDay + 20s, 1, 10000)}, {}, 99);
  EXPECT_FALSE(dup);
  EXPECT_EQ(usage_->LoadState()->cursor, 43);
  EXPECT_EQ(*usage_->LastSampleSeq(), (*seqs)[1]);
}

TEST_F(UsageStoreTest, ReportsSumPerBucketAndVm) {
  ASSERT_TRUE(Commit({S("a", kDay + 30s, 100, 30000), S("b", kDay + 30s, 10, 30000)},
                     {Woken("a", 1, kDay + 20s, 100), Woken("a", 2, kDay + 61s, 300)}));
  ASSERT_TRUE(Commit({S("a", kDay + 60s, 200, 30000)}));
  ASSERT_TRUE(Commit({S("a", kDay + 90s, 400, 30000), S("b", kDay + 2h, 20, 30000)}));

  Report all = Query(kDay, kDay + 24h, std::nullopt);
  ASSERT_EQ(all.vms.size(), 2u);
  EXPECT_EQ(all.vms[0].vm_name, "a");
  EXPECT_EQ(all.vms[0].usage.cpu_ms, 700);
  EXPECT_EQ(all.vms[0].wakes, 2);
  EXPECT_EQ(all.vms[0].wake_p50_ms, 100);
  EXPECT_EQ(all.vms[0].wake_p99_ms, 300);
  EXPECT_EQ(all.vms[1].usage.cpu_ms, 30);
  EXPECT_EQ(all.total.usage.cpu_ms, 730);
  EXPECT_EQ(all.total.usage.ms(StateClass::kRunning), 150000);
  EXPECT_TRUE(all.rows.empty());

  Report minutes = Query(kDay, kDay + 1h, Bucket::kMinute);
  ASSERT_EQ(minutes.rows.size(), 3u);  // a@0, b@0, a@1 (the sample ending at :60 is minute 1)
  EXPECT_EQ(*minutes.rows[0].bucket, kDay);
  EXPECT_EQ(minutes.rows[0].usage.cpu_ms, 100);
  EXPECT_EQ(*minutes.rows[2].bucket, kDay + 1min);
  EXPECT_EQ(minutes.rows[2].usage.cpu_ms, 600);
  EXPECT_EQ(minutes.rows[2].wakes, 1);
  EXPECT_EQ(minutes.total.usage.cpu_ms, 710);  // b's sample at 2h is outside

  Report only_b = Query(kDay, kDay + 24h, Bucket::kHour, "b");
  ASSERT_EQ(only_b.rows.size(), 2u);
  EXPECT_EQ(*only_b.rows[1].bucket, kDay + 2h);
  EXPECT_EQ(only_b.total.wakes, 0);
  EXPECT_FALSE(only_b.total.wake_p50_ms);
}

TEST_F(UsageStoreTest, RollUpKeepsHourlyAndDailySumsAndRetentionDrops) {
  std::vector<Sample> samples;
  for (int m = 0; m < 180; ++m)
    samples.push_back(S("a", kDay + std::chrono::minutes(m + 1), m, 60000));
  ASSERT_TRUE(Commit(samples, {Woken("a", 1, kDay + 5min, 120)}));
  Report hours = Query(kDay, kDay + 24h, Bucket::kHour);
  Report days = Query(kDay, kDay + 48h, Bucket::kDay);

  // A day later the samples are hourly sums: the same by hour and by day.
  ASSERT_TRUE(usage_->Maintain(kDay + 28h, 24h, 7 * 24h));
  EXPECT_TRUE(usage_->SamplesAfter(0, 10)->empty());
  Report hours_after = Query(kDay, kDay + 24h, Bucket::kHour);
  Report days_after = Query(kDay, kDay + 48h, Bucket::kDay);
  ASSERT_EQ(hours_after.rows.size(), hours.rows.size());
  for (size_t i = 0; i < hours.rows.size(); ++i) {
    EXPECT_EQ(hours_after.rows[i].usage, hours.rows[i].usage) << i;
  }
  EXPECT_EQ(days_after.total.usage, days.total.usage);
  EXPECT_EQ(days_after.total.wakes, 1);

  // A second roll-up adds to the hour rather than replacing it.
  ASSERT_TRUE(Commit({S("a", kDay + 2h + 30min + 1s, 1000, 1000)}));
  ASSERT_TRUE(usage_->Maintain(kDay + 28h, 24h, 7 * 24h));
  EXPECT_EQ(Query(kDay, kDay + 24h, std::nullopt).total.usage.cpu_ms,
            days.total.usage.cpu_ms + 1000);

  ASSERT_TRUE(usage_->Maintain(kDay + 8 * 24h, 24h, 7 * 24h));
  Report gone = Query(kDay, kDay + 48h, std::nullopt);
  EXPECT_TRUE(gone.vms.empty());
  EXPECT_EQ(gone.total.wakes, 0);
}

}  // namespace
}  // namespace hearth::metering

// Metering against a real ClickHouse server (Debian's 18.16 here): the schema and queries work on
// it, every row arrives exactly once while the server is killed and restarted under load, and the
// usage report from ClickHouse is the local store's.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>

#include "http/clickhouse_http_transport.h"
#include "metering/clickhouse_sink.h"
#include "metering/clickhouse_usage_source.h"
#include "metering/sqlite_usage_store.h"
#include "store/sqlite_state_store.h"
#include "support/clickhouse_server.h"
#include "support/scope_guard.h"
#include "support/temp_dir.h"

namespace hearth::metering {
namespace {

using namespace std::chrono_literals;
using testing::ClickHouseServer;

class MeteringClickHouseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = ClickHouseServer::Start();
    ASSERT_TRUE(server) << server.error().message;
    server_ = std::move(*server);
    auto endpoint = ParseClickHouseUrl(server_->Url("metering_test"));
    ASSERT_TRUE(endpoint);
    transport_ = std::make_unique<http::ClickHouseHttpTransport>(*endpoint, 5s);
    spool_ = std::move(*Spool::Open(dir_ / "spool", int64_t{1} << 30));
    ClickHouseSinkOptions o;
    o.database = "metering_test";
    o.node = "node-1";
    o.min_insert_interval = 200ms;
    o.retry_max = 2s;
    sink_ = std::make_unique<ClickHouseSink>(*transport_, *spool_, o);
  }

  int64_t Number(const std::string& sql) {
    auto r = server_->Query(sql);
    EXPECT_TRUE(r) << r.error().message;
    return r ? std::stoll(*r) : -1;
  }

  testing::TempDir dir_;
  std::unique_ptr<ClickHouseServer> server_;
  std::unique_ptr<http::ClickHouseHttpTransport> transport_;
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<ClickHouseSink> sink_;
};

// Killed (SIGKILL, as in a crash) for a minute while about 1,600 rows a second arrive: the sender
// fails and backs off many times (0.5 s doubling to 2 s here, 10 s by default) and ~90,000 rows in
// ~2,400 batches pile up in the spool.
TEST_F(MeteringClickHouseTest, EveryRowArrivesExactlyOnceAcrossAnOutageUnderLoad) {
  sink_->Start();
  std::atomic<bool> stop{false};
  std::atomic<int64_t> samples{0}, events{0};
  std::atomic<int64_t> max_spool{0};
  const Timestamp base{Duration{1'700'000'000'000}};
  std::thread producer([&] {
    int64_t tick = 0;
    while (!stop) {
      ++tick;
      std::vector<StoredSample> rows;
      for (int vm = 0; vm < 40; ++vm) {
        Sample s;
        s.vm_id = fmt::format("vm-{:02}", vm);
        s.vm_name = fmt::format("n{}", vm);
        s.end = base + std::chrono::seconds(tick);
        s.start = s.end - 1s;
        s.usage.cpu_ms = tick;
        rows.push_back(StoredSample{++samples, s});
      }
      UsageEvent e;
      e.seq = ++events;
      e.vm_id = "vm-00";
      e.time = base + std::chrono::seconds(tick);
      e.type = "edited";
      auto written = sink_->Write(rows, {e});
      EXPECT_TRUE(written) << written.error().message;
      max_spool = std::max<int64_t>(max_spool, spool_->rows());
      std::this_thread::sleep_for(25ms);
    }
  });
  // However the test ends, the producer is stopped and joined (a joinable thread would abort).
  testing::Guard join([&] {
    stop = true;
    if (producer.joinable()) producer.join();
  });
  std::this_thread::sleep_for(3s);
  server_->Stop(/*kill=*/true);
  int64_t before_outage = samples;
  std::this_thread::sleep_for(60s);
  int64_t piled = spool_->rows();
  int64_t during_outage = samples - before_outage;  // however fast a loaded machine produced
  auto started = server_->StartAgain();
  ASSERT_TRUE(started) << started.error().message;
  std::this_thread::sleep_for(3s);
  stop = true;
  producer.join();
  ASSERT_TRUE(sink_->Drain(120s)) << spool_->rows() << " rows left; " << sink_->stats().last_error;

  EXPECT_GT(during_outage, 0);
  EXPECT_GE(piled, during_outage * 9 / 10) << "the outage held back what was written meanwhile";
  EXPECT_GT(sink_->stats().errors, 0);
  int64_t n = samples;
  // Physically once (no retried insert duplicated a batch), and once by key.
  EXPECT_EQ(Number("SELECT count() FROM metering_test.samples"), n);
  EXPECT_EQ(Number("SELECT count() FROM metering_test.samples FINAL"), n);
  EXPECT_EQ(Number("SELECT uniqExact(vm_id, end_ms) FROM metering_test.samples"), n);
  EXPECT_EQ(Number("SELECT count() FROM metering_test.events"), events.load());
  EXPECT_EQ(Number("SELECT uniqExact(vm_id, seq) FROM metering_test.events"), events.load());
  EXPECT_EQ(Number("SELECT max(version) FROM metering_test.schema_versions"),
            kClickHouseSchemaVersion);
  std::printf(
      "exactly-once: %lld samples and %lld events; %lld rows held in the spool during the "
      "outage; %lld failed requests\n",
      static_cast<long long>(n), static_cast<long long>(events.load()),
      static_cast<long long>(piled), static_cast<long long>(sink_->stats().errors));
}

// The same samples and wakes, committed locally and sent to ClickHouse, give the same report from
// both: by minute, hour and day, per VM and in total, with and without a VM filter.
TEST_F(MeteringClickHouseTest, ReportsFromClickHouseAndTheLocalStoreAgree) {
  ASSERT_TRUE(store::SqliteStateStore::Open(dir_ / "state.db"));
  auto local = SqliteUsageStore::Open(dir_ / "state.db");
  ASSERT_TRUE(local);
  std::mt19937_64 rng(7);
  auto r = [&](int64_t hi) { return static_cast<int64_t>(rng() % static_cast<uint64_t>(hi)); };
  Timestamp start = std::chrono::floor<std::chrono::hours>(SystemClock().Now()) - 4h;
  int64_t event_seq = 0;
  for (int tick = 1; tick <= 3 * 360; ++tick) {  // 3 hours of 10 s ticks
    TickResult t;
    for (int vm = 0; vm < 4; ++vm) {
      if (vm == 3 && tick > 500) continue;  // deleted
      Sample s;
      s.vm_id = fmt::format("vm-{}", vm);
      s.vm_name = fmt::format("web{}", vm);
      s.end = start + std::chrono::seconds(10 * tick) + std::chrono::milliseconds(vm * 7);
      s.start = s.end - 10s;
      StateClass c = static_cast<StateClass>(r(4));
      s.usage.ms(c) = 10'000;
      s.usage.cpu_ms = r(10'000);
      s.usage.vcpu_ms = s.usage.cpu_ms / 2;
      s.usage.ram_mib_ms = c == StateClass::kRunning ? 512 * 10'000 : 0;
      s.usage.snapshot_kib_ms = c == StateClass::kSuspended ? int64_t{524'288} * 10'000 : 0;
      s.usage.net_rx_bytes = r(1 << 20);
      s.usage.net_tx_bytes = r(1 << 20);
      s.usage.net_rx_packets = r(1000);
      s.usage.net_tx_packets = r(1000);
      s.usage.disk_read_bytes = r(1 << 24);
      s.usage.disk_write_ops = r(100);
      t.samples.push_back(s);
      if (r(20) == 0) {
        UsageEvent e;
        e.seq = ++event_seq;
        e.vm_id = s.vm_id;
        e.vm_name = s.vm_name;
        e.time = s.end - 3s;
        e.type = r(2) ? "woken" : "resumed";
        e.latency_ms = static_cast<double>(r(500'000)) / 1000.0;
        t.events.push_back(e);
      }
    }
    auto seqs = (*local)->Commit(TickWrite{event_seq, &t});
    ASSERT_TRUE(seqs) << seqs.error().message;
    std::vector<StoredSample> stored;
    for (size_t i = 0; i < t.samples.size(); ++i) stored.push_back({(*seqs)[i], t.samples[i]});
    ASSERT_TRUE(sink_->Write(stored, t.events));
  }
  sink_->Start();
  ASSERT_TRUE(sink_->Drain(60s)) << sink_->stats().last_error;

  ClickHouseUsageSource clickhouse(*transport_, "metering_test", "node-1");
  int compared = 0;
  for (std::optional<Bucket> by :
       {std::optional<Bucket>(), std::optional<Bucket>(Bucket::kMinute),
        std::optional<Bucket>(Bucket::kHour), std::optional<Bucket>(Bucket::kDay)}) {
    for (const std::string vm : {"", "web1", "web3"}) {
      for (auto [since, until] :
           {std::pair{start, start + 4h}, std::pair{start + 17min + 3s, start + 2h + 1s}}) {
        ReportQuery q{since, until, by, vm};
        SCOPED_TRACE(ReportToJson(BuildReport(q, {}, "")).dump() + " vm " + vm);
        auto from_local = (*local)->Fetch(q);
        auto from_clickhouse = clickhouse.Fetch(q);
        ASSERT_TRUE(from_local) << from_local.error().message;
        ASSERT_TRUE(from_clickhouse) << from_clickhouse.error().message;
        nlohmann::json a = ReportToJson(BuildReport(q, *from_local, "x"));
        nlohmann::json b = ReportToJson(BuildReport(q, *from_clickhouse, "x"));
        EXPECT_EQ(a, b);
        EXPECT_GT(a["total"]["cpu_seconds"].get<double>(), 0);
        ++compared;
      }
    }
  }
  EXPECT_EQ(compared, 24);
  // And the numbers are the ones written.
  ReportQuery all{start, start + 4h, std::nullopt, ""};
  auto totals = BuildReport(all, *(*local)->Fetch(all), "local");
  EXPECT_EQ(totals.vms.size(), 4u);
  EXPECT_EQ(totals.total.usage.ms(StateClass::kRunning) +
                totals.total.usage.ms(StateClass::kSuspended) +
                totals.total.usage.ms(StateClass::kStopped) +
                totals.total.usage.ms(StateClass::kTransition),
            int64_t{10'000} * (3 * 1080 + 500));
}

}  // namespace
}  // namespace hearth::metering

// The ClickHouse side without a server: the statements (18.16-safe), the URL, the spool on disk,
// and the sink over a fake server that goes down, loses answers, refuses a batch or loses its
// tables: every row arrives once.
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "fakes/fake_metering.h"
#include "metering/clickhouse_sink.h"
#include "metering/clickhouse_usage_source.h"
#include "metering/sqlite_usage_store.h"
#include "store/sqlite_state_store.h"
#include "support/temp_dir.h"

namespace hearth::metering {
namespace {

using namespace std::chrono_literals;
using testing::FakeClickHouse;

const Timestamp kT0{Duration{1'700'000'000'000}};

Sample S(int i) {
  Sample s;
  s.vm_id = "vm-" + std::to_string(i % 3);
  s.vm_name = "n" + std::to_string(i % 3);
  s.end = kT0 + std::chrono::seconds(i);
  s.start = s.end - 1s;
  s.state = VmState::kRunning;
  s.usage.cpu_ms = i;
  return s;
}

UsageEvent E(int64_t seq) {
  UsageEvent e;
  e.seq = seq;
  e.vm_id = "vm-0";
  e.vm_name = "n0";
  e.time = kT0 + std::chrono::seconds(seq);
  e.type = "created";
  return e;
}

TEST(ClickHouseSchemaTest, StatementsStayWithin1816) {
  std::string all;
  for (const auto& s : ClickHouseBootstrap("hearth")) all += s + "\n";
  for (const auto& s : ClickHouseMigration(1, "hearth")) all += s + "\n";
  for (const char* missing : {"DateTime64", "LowCardinality", "TTL", "CODEC", "{"}) {
    EXPECT_EQ(all.find(missing), std::string::npos) << missing;
  }
  EXPECT_NE(all.find("ReplacingMergeTree() PARTITION BY toYYYYMM(day) ORDER BY (vm_id, end_ms)"),
            std::string::npos);
  EXPECT_TRUE(ClickHouseMigration(2, "hearth").empty());
}

TEST(ClickHouseSchemaTest, RowsCarryEveryColumnOfTheirTable) {
  std::string ddl = ClickHouseMigration(1, "db")[0];
  auto row = nlohmann::json::parse(SampleRow(S(7), "node1", "b1"));
  size_t columns = 0;
  auto declared = [](const std::string& ddl, const std::string& key) {
    return ddl.find(" " + key + " ") != std::string::npos ||
           ddl.find("(" + key + " ") != std::string::npos;
  };
  for (const auto& [key, _] : row.items()) {
    EXPECT_TRUE(declared(ddl, key)) << key;
    ++columns;
  }
  // N columns have N - 1 commas between them; the ORDER BY tuple has one more.
  EXPECT_EQ(columns, static_cast<size_t>(std::count(ddl.begin(), ddl.end(), ',')));
  EXPECT_EQ(row["time"], "2023-11-14T22:13:27Z");
  EXPECT_EQ(row["day"], "2023-11-14");
  EXPECT_EQ(row["end_ms"], 1'700'000'007'000);
  auto event = nlohmann::json::parse(EventRow(E(3), "node1", "b1"));
  std::string events_ddl = ClickHouseMigration(1, "db")[1];
  for (const auto& [key, _] : event.items()) EXPECT_TRUE(declared(events_ddl, key)) << key;
}

TEST(ClickHouseSchemaTest, ValuesAreQuotedAndRepliesParsed) {
  EXPECT_EQ(Quote("it's \\ ok"), "'it\\'s \\\\ ok'");
  ReportQuery q{kT0, kT0 + 1h, Bucket::kMinute, "web"};
  std::string sql = UsageQuery("hearth", "no'de", q);
  EXPECT_NE(sql.find("node = 'no\\'de'"), std::string::npos) << sql;
  EXPECT_NE(sql.find("intDiv(end_ms, 60000) * 60000"), std::string::npos);
  EXPECT_NE(sql.find("FINAL"), std::string::npos);
  EXPECT_NE(sql.find("vm_name = 'web'"), std::string::npos);
  auto rows = ParseUsageRows(
      "{\"bucket\":1700000000000,\"vm_id\":\"vm-1\",\"name\":\"a\",\"u_running_ms\":5,"
      "\"u_suspended_ms\":0,\"u_stopped_ms\":0,\"u_transition_ms\":0,\"u_cpu_ms\":7,"
      "\"u_vcpu_ms\":0,\"u_ram_mib_ms\":0,\"u_snapshot_kib_ms\":0,\"u_net_rx_bytes\":0,"
      "\"u_net_tx_bytes\":0,\"u_net_rx_packets\":0,\"u_net_tx_packets\":0,"
      "\"u_disk_read_bytes\":0,\"u_disk_write_bytes\":0,\"u_disk_read_ops\":0,"
      "\"u_disk_write_ops\":9}\n");
  ASSERT_TRUE(rows) << rows.error().message;
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].usage.cpu_ms, 7);
  EXPECT_EQ((*rows)[0].usage.disk_write_ops, 9);
  EXPECT_FALSE(ParseUsageRows("{\"bucket\": 1}\n"));
  EXPECT_EQ(ExceptionCode("Code: 27, e.displayText() = ..."), 27);
  EXPECT_TRUE(IsPermanentInsertError("Code: 27, e.displayText()"));
  EXPECT_FALSE(IsPermanentInsertError("Code: 241, Memory limit"));
}

TEST(ClickHouseSchemaTest, UrlGivesHostPortDatabaseAndCredentials) {
  auto e = ParseClickHouseUrl("http://u:p%@ch.example:9123/usage");
  ASSERT_TRUE(e) << e.error().message;
  EXPECT_EQ(e->host, "ch.example");
  EXPECT_EQ(e->port, 9123);
  EXPECT_EQ(e->database, "usage");
  EXPECT_EQ(e->user, "u");
  EXPECT_EQ(e->password, "p%");
  EXPECT_EQ(e->Describe(), "http://ch.example:9123/usage");
  auto d = ParseClickHouseUrl("http://127.0.0.1");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->port, 8123);
  EXPECT_EQ(d->database, "hearth");
  for (const char* bad : {"127.0.0.1:8123", "http://", "http://h:0", "http://h/x;drop"}) {
    auto r = ParseClickHouseUrl(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().field, "clickhouse");
  }
}

TEST(SpoolTest, BatchesAreWholeFilesThatSurviveAReopen) {
  testing::TempDir dir;
  auto spool = Spool::Open(dir / "spool", 1 << 20);
  ASSERT_TRUE(spool);
  EXPECT_FALSE((*spool)->marks());
  ASSERT_TRUE((*spool)->Write(ChTable::kSamples, 1, 2, "{\"a\":1}\n{\"a\":2}\n", 2));
  ASSERT_TRUE((*spool)->Write(ChTable::kEvents, 5, 5, "{\"e\":1}\n", 1));
  ASSERT_TRUE((*spool)->SetMarks({2, 5}));
  { std::ofstream(dir / "spool" / ".tmp-samples-x.jsonl") << "half"; }
  spool->reset();

  auto again = Spool::Open(dir / "spool", 1 << 20);
  ASSERT_TRUE(again);
  auto batches = (*again)->List();
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[0].table, ChTable::kEvents);  // oldest first per table, events first
  EXPECT_EQ(batches[1].name, "samples-0000000000000001-0000000000000002");
  EXPECT_EQ(batches[1].rows, 2);
  EXPECT_EQ((*again)->rows(), 3);
  EXPECT_EQ((*again)->marks()->events, 5);
  EXPECT_FALSE(std::filesystem::exists(dir / "spool" / ".tmp-samples-x.jsonl"));
  (*again)->Reject(batches[0]);
  EXPECT_TRUE(std::filesystem::exists(dir / "spool" / "rejected" /
                                      "events-0000000000000005-0000000000000005.jsonl"));
  (*again)->Remove(batches[1]);
  EXPECT_TRUE((*again)->List().empty());
}

TEST(SpoolTest, OverItsLimitTheOldestSamplesGoFirst) {
  testing::TempDir dir;
  auto spool = Spool::Open(dir / "spool", 100);
  ASSERT_TRUE(spool);
  std::string forty(39, 'x');
  forty += "\n";
  ASSERT_TRUE((*spool)->Write(ChTable::kEvents, 1, 1, forty, 1));
  ASSERT_TRUE((*spool)->Write(ChTable::kSamples, 1, 1, forty, 1));
  ASSERT_TRUE((*spool)->Write(ChTable::kSamples, 2, 2, forty, 1));
  auto batches = (*spool)->List();
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[0].table, ChTable::kEvents);
  EXPECT_EQ(batches[1].first, 2);
  EXPECT_EQ((*spool)->dropped_rows(), 1);
}

class SinkTest : public ::testing::Test {
 protected:
  SinkTest() {
    spool_ = std::move(*Spool::Open(dir_ / "spool", 1 << 30));
    ClickHouseSinkOptions o;
    o.node = "node1";
    o.max_batch_rows = 50;
    sink_ = std::make_unique<ClickHouseSink>(ch_, *spool_, o);
  }

  // Spools ticks of `per` samples and one event each, seqs going on from the last call.
  void WriteTicks(int ticks, int per = 10) {
    for (int t = 0; t < ticks; ++t) {
      std::vector<StoredSample> samples;
      for (int i = 0; i < per; ++i) {
        ++sample_seq_;
        samples.push_back(StoredSample{sample_seq_, S(static_cast<int>(sample_seq_))});
      }
      ASSERT_TRUE(sink_->Write(samples, {E(++event_seq_)}));
    }
  }
  // Runs the sender until the spool is empty (or gives up).
  void SendAll(int rounds = 100) {
    for (int i = 0; i < rounds && !spool_->List().empty(); ++i) sink_->SendOnce();
  }
  // Each row key once, and every one of them.
  void ExpectEachRowOnce() {
    std::set<std::pair<std::string, int64_t>> samples, events;
    for (const auto& r : ch_.Rows("samples")) {
      auto key = std::pair{r["vm_id"].get<std::string>(), r["end_ms"].get<int64_t>()};
      EXPECT_TRUE(samples.insert(key).second) << r.dump();
    }
    for (const auto& r : ch_.Rows("events")) {
      auto key = std::pair{r["vm_id"].get<std::string>(), r["seq"].get<int64_t>()};
      EXPECT_TRUE(events.insert(key).second) << r.dump();
    }
    EXPECT_EQ(static_cast<int64_t>(samples.size()), sample_seq_);
    EXPECT_EQ(static_cast<int64_t>(events.size()), event_seq_);
  }

  testing::TempDir dir_;
  FakeClickHouse ch_;
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<ClickHouseSink> sink_;
  int64_t sample_seq_ = 0, event_seq_ = 0;
};

TEST_F(SinkTest, CreatesTheSchemaAndSendsInBatches) {
  WriteTicks(12);  // 120 samples: batches of at most 50 rows
  SendAll();
  EXPECT_EQ(ch_.schema_version(), kClickHouseSchemaVersion);
  ExpectEachRowOnce();
  EXPECT_EQ(ch_.Rows("samples")[0]["node"], "node1");
  EXPECT_EQ(sink_->stats().rows_sent, 132);
  EXPECT_LE(ch_.inserts(), 5);  // 1 for the events, 3 for the samples (at most 50 rows each)
}

TEST_F(SinkTest, WhileClickHouseIsDownRowsWaitInTheSpool) {
  ch_.SetMode(FakeClickHouse::Mode::kDown);
  WriteTicks(5);
  SendAll(10);
  EXPECT_EQ(spool_->rows(), 55);
  EXPECT_GT(sink_->stats().errors, 0);
  ch_.SetMode(FakeClickHouse::Mode::kServerError);
  SendAll(10);
  EXPECT_EQ(spool_->rows(), 55);
  ch_.SetMode(FakeClickHouse::Mode::kUp);
  SendAll();
  EXPECT_TRUE(spool_->List().empty());
  ExpectEachRowOnce();
}

TEST_F(SinkTest, AnInsertWithoutAnAnswerIsCheckedNotRepeated) {
  WriteTicks(3);
  ch_.SetMode(FakeClickHouse::Mode::kLoseReply);
  sink_->SendOnce();  // the schema, then the events: applied, answer lost
  sink_->SendOnce();
  ch_.SetMode(FakeClickHouse::Mode::kUp);
  SendAll();
  ExpectEachRowOnce();
  EXPECT_EQ(ch_.Rows("events").size(), 3u);
}

TEST_F(SinkTest, ARefusedBatchIsSetAsideAndTheOthersGoOn) {
  WriteTicks(3, 1);
  ch_.RefuseBatch(Spool::BatchName(ChTable::kSamples, 2, 2));
  SendAll();
  EXPECT_TRUE(spool_->List().empty());
  EXPECT_EQ(ch_.Rows("samples").size(), 2u);
  EXPECT_EQ(sink_->stats().rejected_rows, 1);
  EXPECT_TRUE(std::filesystem::exists(dir_ / "spool" / "rejected" /
                                      (Spool::BatchName(ChTable::kSamples, 2, 2) + ".jsonl")));
}

TEST_F(SinkTest, TablesThatVanishAreCreatedAgain) {
  WriteTicks(1);
  SendAll();
  ch_.DropTables();
  WriteTicks(1);
  SendAll();
  EXPECT_TRUE(spool_->List().empty());
  EXPECT_EQ(ch_.schema_version(), kClickHouseSchemaVersion);
}

TEST_F(SinkTest, CatchUpSpoolsWhatACrashKeptFromTheSpool) {
  testing::TempDir db;
  ASSERT_TRUE(store::SqliteStateStore::Open(db / "state.db"));
  auto local = SqliteUsageStore::Open(db / "state.db");
  ASSERT_TRUE(local);
  // A spool never used starts at the local store's end.
  TickResult first;
  first.samples = {S(1), S(2)};
  ASSERT_TRUE((*local)->Commit(TickWrite{0, &first}));
  ASSERT_TRUE(sink_->CatchUp(**local, 0));
  EXPECT_EQ(spool_->marks()->samples, 2);
  EXPECT_TRUE(spool_->List().empty());
  // Committed locally, then hearthd died before the spool had it.
  TickResult lost;
  lost.samples = {S(3), S(4), S(5)};
  lost.events = {E(7)};
  ASSERT_TRUE((*local)->Commit(TickWrite{7, &lost}));
  ASSERT_TRUE(sink_->CatchUp(**local, 7));
  EXPECT_EQ(spool_->rows(), 4);
  ASSERT_TRUE(sink_->CatchUp(**local, 7));  // again: nothing more
  EXPECT_EQ(spool_->rows(), 4);
  // Marks beyond the local store (another state.db) start over rather than hide its rows.
  ASSERT_TRUE(spool_->SetMarks({1000, 1000}));
  ASSERT_TRUE(sink_->CatchUp(**local, 7));
  EXPECT_EQ(spool_->marks()->samples, 5);
  EXPECT_EQ(spool_->marks()->events, 7);
  SendAll();
  EXPECT_EQ(ch_.Rows("samples").size(), 3u);
  EXPECT_EQ(ch_.Rows("events").size(), 1u);
}

}  // namespace
}  // namespace hearth::metering

// Metering in the real hearthd with a real ClickHouse: VMs are created, edited and deleted while
// ClickHouse is away and while hearthd restarts; afterwards every metering event is in ClickHouse
// once, each VM's samples tile its life without gap or overlap, and `hearth usage` gives the same
// report from the local store and from ClickHouse.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "common/clock.h"
#include "http/client.h"
#include "support/clickhouse_server.h"
#include "support/daemon.h"
#include "support/temp_dir.h"

namespace hearth::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr const char* kKernel = "/bin/true";  // any ELF file: nothing boots here

class MeteringDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ch = ClickHouseServer::Start();
    ASSERT_TRUE(ch) << ch.error().message;
    clickhouse_ = std::move(*ch);
    StartDaemon();
  }
  void StartDaemon() {
    daemon_.reset();
    auto d = DaemonProcess::Start(
        dir_.path(), {"--clickhouse", clickhouse_->Url("hd"), "--metering-interval", "1s"});
    ASSERT_TRUE(d) << d.error().message;
    daemon_ = std::move(*d);
    client_ = std::make_unique<http::Client>(daemon_->UnixClient());
  }

  api::HttpResponse Call(std::string_view method, const std::string& target,
                         const json& body = nullptr) {
    auto r = client_->Request(method, target, body.is_null() ? "" : body.dump());
    EXPECT_TRUE(r) << r.error().message;
    return r ? *r : api::HttpResponse{};
  }
  void Create(const std::string& name) {
    EXPECT_EQ(Call("POST", "/v1/vms", {{"name", name}, {"kernel", kKernel}}).status, 201);
  }
  // A metric's value in GET /metrics (-1 if absent).
  double Metric(const std::string& line_start) {
    std::string text = Call("GET", "/metrics").body;
    size_t at = text.find("\n" + line_start + " ");
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + line_start.size() + 2));
  }
  int64_t LocalCount(const std::string& sql) {
    sqlite3* db = nullptr;
    sqlite3_open_v2((dir_ / "state.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
    sqlite3_stmt* q = nullptr;
    int64_t n = -1;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &q, nullptr) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW) {
      n = sqlite3_column_int64(q, 0);
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    return n;
  }
  int64_t ClickHouseCount(const std::string& sql) {
    auto r = clickhouse_->Query(sql);
    EXPECT_TRUE(r) << r.error().message;
    return r ? std::stoll(*r) : -1;
  }

  TempDir dir_;
  std::unique_ptr<ClickHouseServer> clickhouse_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<http::Client> client_;
};

TEST_F(MeteringDaemonTest, EventsArriveOnceSamplesTileAndBothReportsAgree) {
  std::string since = FormatTime(SystemClock().Now() - 1min);
  Create("a");
  Create("b");
  Create("c");
  EXPECT_EQ(Call("PATCH", "/v1/vms/a", {{"memory_mib", 512}}).status, 200);
  EXPECT_EQ(Call("DELETE", "/v1/vms/c").status, 204);
  std::this_thread::sleep_for(2500ms);

  // ClickHouse goes away; the node goes on, and so does metering.
  clickhouse_->Stop(/*kill=*/true);
  Create("d");
  EXPECT_EQ(Call("PATCH", "/v1/vms/b", {{"vcpus", 2}}).status, 200);
  EXPECT_EQ(Call("DELETE", "/v1/vms/a").status, 204);
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(Metric("hearth_clickhouse_up"), 0);
  EXPECT_GT(Metric("hearth_clickhouse_spool_rows"), 0);

  // hearthd restarts while ClickHouse is still away, then ClickHouse comes back.
  ASSERT_EQ(daemon_->Terminate(), 0);
  StartDaemon();
  Create("e");
  auto started = clickhouse_->StartAgain();
  ASSERT_TRUE(started) << started.error().message;
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (Metric("hearth_clickhouse_spool_rows") != 0 || Metric("hearth_clickhouse_up") != 1) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the spool did not drain";
    std::this_thread::sleep_for(200ms);
  }
  std::this_thread::sleep_for(2s);  // a tick after e's creation, sent
  deadline = std::chrono::steady_clock::now() + 30s;
  while (Metric("hearth_clickhouse_spool_rows") != 0) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline);
    std::this_thread::sleep_for(200ms);
  }

  // Every metering event once: created x4, edited x2, deleted x2.
  int64_t local_events = LocalCount("SELECT count(*) FROM usage_events");
  EXPECT_EQ(local_events, 9);  // a, b, c, d, e created; a, b edited; c, a deleted
  EXPECT_EQ(ClickHouseCount("SELECT count() FROM hd.events"), local_events);
  EXPECT_EQ(ClickHouseCount("SELECT uniqExact(vm_id, seq) FROM hd.events"), local_events);
  int64_t local_samples = LocalCount("SELECT count(*) FROM usage_samples");
  EXPECT_GT(local_samples, 0);
  EXPECT_EQ(ClickHouseCount("SELECT count() FROM hd.samples"), local_samples);

  // Each VM's samples tile its metered life: every one starts where the one before ended.
  auto tiles = clickhouse_->Query(
      "SELECT vm_id, groupArray(start_ms), groupArray(end_ms) FROM (SELECT vm_id, start_ms, "
      "end_ms FROM hd.samples FINAL ORDER BY vm_id, end_ms) GROUP BY vm_id FORMAT JSONEachRow");
  ASSERT_TRUE(tiles) << tiles.error().message;
  int vms = 0;
  std::string_view body = *tiles;
  while (!body.empty()) {
    size_t nl = body.find('\n');
    json row = json::parse(body.substr(0, nl));
    body = nl == std::string_view::npos ? "" : body.substr(nl + 1);
    auto starts = row["groupArray(start_ms)"].get<std::vector<int64_t>>();
    auto ends = row["groupArray(end_ms)"].get<std::vector<int64_t>>();
    for (size_t i = 1; i < ends.size(); ++i) {
      EXPECT_EQ(starts[i], ends[i - 1]) << row.dump() << " sample " << i;
    }
    ++vms;
  }
  EXPECT_EQ(vms, 5);

  // The same report from both sources.
  std::string range = fmt::format("since={}&until={}", since, FormatTime(SystemClock().Now() + 1h));
  for (const char* by : {"", "&by=minute", "&by=hour"}) {
    json local = json::parse(Call("GET", fmt::format("/v1/usage?{}{}", range, by)).body);
    api::HttpResponse from_ch =
        Call("GET", fmt::format("/v1/usage?{}{}&source=clickhouse", range, by));
    ASSERT_EQ(from_ch.status, 200) << from_ch.body;
    json clickhouse = json::parse(from_ch.body);
    EXPECT_EQ(clickhouse["source"], "clickhouse");
    local.erase("source");
    clickhouse.erase("source");
    EXPECT_EQ(local, clickhouse);
    EXPECT_EQ(local["vms"].size(), 5u);
    EXPECT_GT(local["total"]["stopped_seconds"].get<double>(), 5);
  }
  // And from the CLI, as CSV.
  RunResult csv = RunProgram({(BuildDir() / "hearth").string(), "usage", "b", "--since", since,
                              "--source", "clickhouse", "-o", "csv"},
                             {"HEARTH_SOCKET=" + daemon_->socket().string()});
  ASSERT_EQ(csv.exit_code, 0) << csv.err;
  EXPECT_EQ(csv.out.rfind("start,vm,vm_id,cpu_seconds", 0), 0u) << csv.out;
  EXPECT_NE(csv.out.find("\n,b,vm-"), std::string::npos) << csv.out;
  EXPECT_NE(csv.out.find("\n,TOTAL,,"), std::string::npos) << csv.out;
}

}  // namespace
}  // namespace hearth::testing

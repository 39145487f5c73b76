// Reports: query parameters, percentiles, per-VM and total lines, buckets and JSON; the metrics
// text; /proc parsing and the real reader on this test process.
#include <gtest/gtest.h>
#include <unistd.h>

#include "hv/process.h"
#include "metering/metrics.h"
#include "metering/report.h"
#include "metering/usage_reader.h"

namespace hearth::metering {
namespace {

using namespace std::chrono_literals;

const Timestamp kNow{Duration{1'700'000'000'000}};

TEST(ReportQueryTest, DefaultsRelativeTimesAndErrors) {
  auto d = ParseReportQuery({}, kNow);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->until, kNow);
  EXPECT_EQ(d->since, kNow - 24h);
  EXPECT_FALSE(d->by);
  auto q =
      ParseReportQuery({{"since", "90m"}, {"until", "now"}, {"by", "minute"}, {"vm", "web"}}, kNow);
  ASSERT_TRUE(q) << q.error().message;
  EXPECT_EQ(q->since, kNow - 90min);
  EXPECT_EQ(q->by, Bucket::kMinute);
  EXPECT_EQ(q->vm, "web");
  auto abs = ParseReportQuery({{"since", "2023-11-14T00:00:00Z"}}, kNow);
  ASSERT_TRUE(abs);
  EXPECT_EQ(abs->since, *ParseTime("2023-11-14T00:00:00Z"));
  struct Case {
    std::map<std::string, std::string> params;
    const char* field;
  } bad[] = {
      {{{"since", "yesterday"}}, "since"},
      {{{"until", "48h"}}, "since"},  // since (24h ago) is not before until
      {{{"by", "week"}}, "by"},
      {{{"vm", "Bad Name"}}, "vm"},
      {{{"limit", "3"}}, "limit"},
      {{{"since", "3650d"}, {"by", "minute"}}, "by"},  // too many buckets
      // Before 1970: printed as year -2735881, and with by=minute the bucket count overflowed.
      {{{"since", "1000000000d"}}, "since"},
      {{{"since", "106751991167d"}, {"until", "9999-12-31T00:00:00Z"}, {"by", "minute"}}, "since"},
      {{{"until", "19677d"}}, "until"},  // kNow is 19675 days after 1970
  };
  for (const auto& c : bad) {
    auto r = ParseReportQuery(c.params, kNow);
    ASSERT_FALSE(r) << c.field;
    EXPECT_EQ(r.error().field, c.field) << r.error().message;
    EXPECT_EQ(r.error().code, Code::kInvalidArgument);
  }
}

TEST(ReportTest, PercentilesAreNearestRank) {
  EXPECT_FALSE(Percentile({}, 50));
  EXPECT_EQ(Percentile({5}, 99), 5);
  std::vector<double> v;
  for (int i = 100; i >= 1; --i) v.push_back(i);
  EXPECT_EQ(Percentile(v, 50), 50);
  EXPECT_EQ(Percentile(v, 99), 99);
  EXPECT_EQ(Percentile({1, 2, 3, 1000}, 99), 1000);
  EXPECT_EQ(Percentile({1, 2, 3, 1000}, 50), 2);
}

TEST(ReportTest, LinesPerBucketPerVmAndTotal) {
  ReportQuery q{kNow - 1h, kNow, Bucket::kHour, ""};
  Timestamp hour = q.BucketOf(kNow - 10min);
  UsageData data;
  Usage a;
  a.cpu_ms = 1500;
  a.ram_mib_ms = int64_t{1024} * 3'600'000;  // 1 GiB for an hour
  a.snapshot_kib_ms = int64_t{1048576} * 1'800'000;
  a.ms(StateClass::kRunning) = 3'600'000;
  Usage b;
  b.net_rx_bytes = 42;
  data.rows = {{hour, "id-a", "a", a}, {hour, "id-b", "b", b}};
  data.wakes = {{kNow - 10min, "id-a", "a", 100}, {kNow - 9min, "id-a", "a", 200}};
  Report r = BuildReport(q, data, "local");
  ASSERT_EQ(r.rows.size(), 2u);
  ASSERT_EQ(r.vms.size(), 2u);
  EXPECT_EQ(r.vms[0].wakes, 2);
  EXPECT_EQ(r.total.usage.net_rx_bytes, 42);
  auto j = ReportToJson(r);
  EXPECT_EQ(j["by"], "hour");
  EXPECT_EQ(j["source"], "local");
  EXPECT_DOUBLE_EQ(j["vms"][0]["cpu_seconds"].get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(j["vms"][0]["ram_gib_hours"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j["vms"][0]["snapshot_gib_hours"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j["vms"][0]["running_seconds"].get<double>(), 3600);
  EXPECT_EQ(j["vms"][0]["wake_p50_ms"], 100.0);
  EXPECT_EQ(j["vms"][0]["wake_p99_ms"], 200.0);
  EXPECT_TRUE(j["vms"][1]["wake_p50_ms"].is_null());
  EXPECT_EQ(j["rows"][0]["start"], FormatTime(hour));
  EXPECT_EQ(j["total"].count("vm"), 0u);
  ReportQuery whole{kNow - 1h, kNow, std::nullopt, ""};
  EXPECT_EQ(ReportToJson(BuildReport(whole, data, "clickhouse")).count("rows"), 0u);
}

TEST(MetricsTest, RendersPrometheusText) {
  Metrics m;
  m.ObserveRequest("GET", "/v1/vms", 200, 0.002);
  m.ObserveRequest("GET", "/v1/vms", 200, 0.004);
  m.ObserveRequest("POST", "/v1/vms", 409, 0.001);
  TickResult tick;
  Sample s;
  s.vm_id = "id-a";
  s.vm_name = "we\"b";
  s.usage.cpu_ms = 2500;
  s.usage.net_rx_bytes = 10;
  tick.samples = {s};
  UsageEvent woke;
  woke.vm_id = "id-a";
  woke.type = "woken";
  woke.latency_ms = 180;
  woke.duration_ms = 150;
  woke.measures = {{"latency_ms", 180}, {"restore_ms", 40}};
  tick.events = {woke};
  Tracker t;
  t.vm_id = "id-a";
  t.vm_name = "we\"b";
  t.state = VmState::kRunning;
  t.memory_mib = 256;
  tick.trackers = {{"id-a", t}};
  VmReading reading;
  reading.stats = ProcessStats{2500, {1000, 1200}, 300 << 20};
  m.ObserveTick(tick, {{"id-a", reading}}, 0.01);
  std::string text = m.Render();
  for (const char* want : {
           "hearth_vm_state{vm=\"we\\\"b\",state=\"running\"} 1\n",
           "hearth_vm_cpu_seconds_total{vm=\"we\\\"b\"} 2.5\n",
           "hearth_vm_vcpu_seconds_total{vm=\"we\\\"b\",vcpu=\"1\"} 1.2\n",
           "hearth_vm_rss_bytes{vm=\"we\\\"b\"} 314572800\n",
           "hearth_vm_memory_bytes{vm=\"we\\\"b\"} 268435456\n",
           "hearth_vm_network_receive_bytes_total{vm=\"we\\\"b\"} 10\n",
           "hearth_vm_wakes_total{vm=\"we\\\"b\"} 1\n",
           "hearth_node_vms{state=\"running\"} 1\n",
           "hearth_node_cpu_seconds_total 2.5\n",
           "hearth_wake_latency_seconds_bucket{le=\"0.25\"} 1\n",
           "hearth_wake_latency_seconds_bucket{le=\"0.1\"} 0\n",
           "hearth_wake_latency_seconds_count 1\n",
           "hearth_wake_stage_seconds_count{stage=\"restore\"} 1\n",
           "hearth_transition_seconds_count{event=\"woken\"} 1\n",
           "hearth_api_requests_total{method=\"GET\",route=\"/v1/vms\",code=\"200\"} 2\n",
           "hearth_api_requests_total{method=\"POST\",route=\"/v1/vms\",code=\"409\"} 1\n",
           "hearth_api_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/vms\","
           "le=\"0.0025\"} 1\n",
           "hearth_api_request_duration_seconds_count{method=\"GET\",route=\"/v1/vms\"} 2\n",
           "# TYPE hearth_wake_latency_seconds histogram\n",
           "hearth_metering_ticks_total 1\n",
       }) {
    EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;
  }
  EXPECT_EQ(text.find("hearth_clickhouse_"), std::string::npos);
  TickResult gone;
  gone.removed = {"id-a"};
  m.ObserveTick(gone, {}, 0.01);
  text = m.Render();
  EXPECT_EQ(text.find("vm=\"we"), std::string::npos);
  EXPECT_NE(text.find("hearth_node_cpu_seconds_total 2.5\n"), std::string::npos);
}

TEST(UsageReaderTest, ParsesStatWithAnyCommand) {
  std::string stat =
      "4242 (qemu (x) sys) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 5 0 987654 "
      "1000000 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
  auto s = ParseProcStat(stat);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->utime_ticks, 250);
  EXPECT_EQ(s->stime_ticks, 75);
  EXPECT_EQ(s->start_ticks, 987654u);
  EXPECT_EQ(s->rss_pages, 2048);
  EXPECT_FALSE(ParseProcStat("4242 qemu S 1"));
  EXPECT_FALSE(ParseProcStat("4242 (qemu) S 1 2 3"));
}

TEST(UsageReaderTest, ReadsThisProcessAsAVmm) {
  LinuxUsageReader reader(Paths("/nonexistent"), nullptr);
  VmRecord vm;
  vm.id = "vm-0123456789abcdef";
  vm.state = VmState::kRunning;
  vm.pid = getpid();
  vm.pid_start = *hv::ProcessStartTime(getpid());
  volatile double x = 0;
  for (int i = 0; i < 20'000'000; ++i) x = x + i;  // some CPU time to see
  VmReading r = reader.Read(vm);
  ASSERT_TRUE(r.stats);
  EXPECT_EQ(r.process, (hv::ProcessId{*vm.pid, vm.pid_start}));
  EXPECT_GT(r.stats->rss_bytes, 1 << 20);
  EXPECT_TRUE(r.stats->vcpu_cpu_ms.empty());  // no driver to name the vCPU threads
  EXPECT_FALSE(r.tap);                        // no ip: no tap
  vm.pid_start += 1;                          // a recycled pid is not the VMM
  EXPECT_FALSE(reader.Read(vm).stats);
}

}  // namespace
}  // namespace hearth::metering

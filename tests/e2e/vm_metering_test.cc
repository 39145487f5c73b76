// Metering of a real QEMU guest: its VMM's CPU (per vCPU too, from QMP's thread ids), RSS, the
// tap's traffic, suspended time with the snapshot's size, and the time in each state adding up to
// the VM's metered life, in `hearth usage` and GET /metrics.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <thread>

#include "common/clock.h"
#include "http/client.h"
#include "support/vm_fixture.h"

namespace hearth::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

class VmMeteringTest : public VmFixture {
 protected:
  void SetUp() override {
    daemon_args_ = {"--metering-interval", "1s"};
    VmFixture::SetUp();
  }
  std::string Get(const std::string& target) {
    http::Client client(daemon_->UnixClient());
    auto r = client.Request("GET", target);
    EXPECT_TRUE(r) << r.error().message;
    EXPECT_EQ(r ? r->status : 0, 200) << (r ? r->body : "");
    return r ? r->body : "";
  }
  double Metric(const std::string& text, const std::string& line_start) {
    size_t at = text.find("\n" + line_start + " ");
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + line_start.size() + 2));
  }
};

TEST_F(VmMeteringTest, AGuestsCpuMemoryTrafficAndSuspendedTimeAreMetered) {
  Timestamp begin = SystemClock().Now();
  json vm = CreateAndStart("meter");
  std::string ip = vm["ip"];
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(HttpGetEventually(ip, 80, "/", 10s));
  std::this_thread::sleep_for(2500ms);

  std::string metrics = Get("/metrics");
  EXPECT_GT(Metric(metrics, "hearth_vm_cpu_seconds_total{vm=\"meter\"}"), 0) << metrics;
  EXPECT_GT(Metric(metrics, "hearth_vm_vcpu_seconds_total{vm=\"meter\",vcpu=\"0\"}"), 0);
  EXPECT_GT(Metric(metrics, "hearth_vm_rss_bytes{vm=\"meter\"}"), 16 << 20);
  EXPECT_EQ(Metric(metrics, "hearth_vm_memory_bytes{vm=\"meter\"}"), 128 << 20);
  EXPECT_GT(Metric(metrics, "hearth_vm_network_receive_bytes_total{vm=\"meter\"}"), 20 * 40);
  EXPECT_GT(Metric(metrics, "hearth_vm_network_transmit_packets_total{vm=\"meter\"}"), 20);
  EXPECT_EQ(Metric(metrics, "hearth_vm_state{vm=\"meter\",state=\"running\"}"), 1);

  ASSERT_EQ(Cli({"vm", "suspend", "meter"}).exit_code, 0);
  int64_t snapshot = Show("meter")["snapshot"]["bytes"];
  std::this_thread::sleep_for(3s);
  ASSERT_EQ(Cli({"vm", "resume", "meter"}).exit_code, 0);
  std::this_thread::sleep_for(2500ms);

  RunResult usage = Cli({"usage", "meter", "--since", FormatTime(begin - 1s), "-o", "json"});
  ASSERT_EQ(usage.exit_code, 0) << usage.err;
  json report = json::parse(usage.out);
  ASSERT_EQ(report["vms"].size(), 1u) << report.dump(2);
  json m = report["vms"][0];
  EXPECT_GT(m["cpu_seconds"].get<double>(), 0.1) << m.dump(2);
  EXPECT_GT(m["vcpu_seconds"].get<double>(), 0.05);
  EXPECT_LE(m["vcpu_seconds"].get<double>(), m["cpu_seconds"].get<double>());
  EXPECT_GT(m["net_rx_bytes"].get<int64_t>(), 20 * 40);
  EXPECT_GT(m["net_tx_bytes"].get<int64_t>(), 20 * 40);
  EXPECT_GT(m["running_seconds"].get<double>(), 3);
  EXPECT_GE(m["suspended_seconds"].get<double>(), 2.5);
  EXPECT_LE(m["suspended_seconds"].get<double>(), 6);
  // RAM while running: 128 MiB; saved state while suspended: its size on disk.
  EXPECT_NEAR(m["ram_gib_hours"].get<double>(), m["running_seconds"].get<double>() * 0.125 / 3600,
              1e-9);
  double snapshot_gib = static_cast<double>((snapshot + 1023) / 1024) / 1048576;
  EXPECT_NEAR(m["snapshot_gib_hours"].get<double>(),
              m["suspended_seconds"].get<double>() * snapshot_gib / 3600, 1e-9);
  // Every ms from creation to the last sample is in one class, and the last sample is recent.
  double metered = m["running_seconds"].get<double>() + m["suspended_seconds"].get<double>() +
                   m["stopped_seconds"].get<double>() + m["transition_seconds"].get<double>();
  double lived = std::chrono::duration<double>(SystemClock().Now() - begin).count();
  EXPECT_LE(metered, lived);
  EXPECT_GE(metered, lived - 3) << "at most the last interval (1 s) and a slow tick behind";
  std::string after = Get("/metrics");
  EXPECT_EQ(Metric(after, "hearth_transition_seconds_count{event=\"suspended\"}"), 1);
  EXPECT_EQ(Metric(after, "hearth_transition_seconds_count{event=\"resumed\"}"), 1);
  EXPECT_GT(Metric(after, "hearth_node_cpu_seconds_total"), 0);
}

}  // namespace
}  // namespace hearth::testing

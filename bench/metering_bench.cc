// Metering's cost and the ClickHouse sink's throughput. Root (it makes network interfaces).
//
// 1. CPU: a node with 100 VMs defined and 20 running, sampled every second for ROUNDS seconds,
//    with every row sent to a real ClickHouse (Debian's clickhouse-server, started here). The
//    node is hearth's Node over its real SQLite store, but with the test driver: each "VMM" is a
//    real process (a sleep) whose /proc entries are read as a VMM's, and each running VM's tap
//    is a real (persistent, unattached) tap whose counters are read from sysfs. What is not here:
//    QEMU's answers over QMP (vCPU thread ids, once per VMM; disk counters, only for VMs with a
//    disk). The sampler's tick and the sink's sends run on this thread, so their CPU time is
//    measured with the thread's CPU clock; the target is at most 2 % of one core.
// 2. Throughput: rows/s from the spool into ClickHouse, for a backlog (as after an outage) and
//    for rows written and sent at the same time.
//
//   build/bench/metering_bench [ROUNDS]      (default 30)
#include <fmt/format.h>
#include <time.h>

#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <thread>

#include "fakes/fake_machinery.h"
#include "fakes/fakes.h"
#include "http/clickhouse_http_transport.h"
#include "metering/sampler.h"
#include "metering/sqlite_usage_store.h"
#include "net/tap.h"
#include "node/node.h"
#include "store/sqlite_state_store.h"
#include "support/clickhouse_server.h"
#include "support/daemon.h"
#include "support/scope_guard.h"
#include "support/temp_dir.h"
#include "vm_bench_support.h"

namespace hearth {
namespace {

using namespace std::chrono_literals;
using bench::Clock;
using bench::Median;
using bench::Ms;

double ThreadCpuMs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

template <class T>
T Must(Result<T> r, std::string_view what) {
  if (!r) throw std::runtime_error(fmt::format("{}: {}", what, r.error().message));
  return std::move(*r);
}

void Must(Status s, std::string_view what) {
  if (!s) throw std::runtime_error(fmt::format("{}: {}", what, s.error().message));
}

int Run(int rounds) {
  auto server = Must(testing::ClickHouseServer::Start(), "starting ClickHouse");
  testing::TempDir dir;
  Paths paths(dir.path());
  auto state = Must(store::SqliteStateStore::Open(paths.state_db()), "opening the store");
  auto usage = Must(metering::SqliteUsageStore::Open(paths.state_db()), "opening metering");
  testing::FakeFileProbe files;
  files.AddKernel("/k/vmlinux");
  testing::FakeDriver driver;
  testing::FakeNetwork network;
  SystemClock clock;
  node::Machinery machinery{&driver, &network, *net::AddressPool::Parse("172.29.0.0/16")};
  auto node = std::make_unique<node::Node>(*state, testing::TestHost(), files, clock, paths,
                                           node::NodeOptions{}, machinery);
  testing::Guard cleanup([&] {
    node.reset();
    testing::KillFakeVmms(dir.path().string());
  });
  Must(node->Load(), "loading");
  Must(node->Recover(), "recovering");

  std::vector<std::string> links;
  testing::Guard remove_links([&] {
    for (const auto& l : links) testing::RunProgram({"ip", "link", "del", l});
  });
  for (int i = 0; i < 100; ++i) {
    CreateRequest r;
    r.name = fmt::format("vm{:03}", i);
    r.spec.kernel = "/k/vmlinux";
    r.spec.memory = MiB{128};
    auto vm = Must(node->Create(r), "creating");
    if (i >= 20) continue;
    Must(node->Start(r.name, false), "starting");
    std::string tap = net::TapName(vm.id);
    if (testing::RunProgram({"ip", "tuntap", "add", "dev", tap, "mode", "tap"}).exit_code != 0) {
      throw std::runtime_error("cannot create interface " + tap + " (run as root)");
    }
    links.push_back(tap);
    testing::RunProgram({"ip", "link", "set", tap, "up"});
  }
  for (auto deadline = Clock::now() + 30s;;) {
    int running = 0;
    for (const auto& vm : node->List()) running += vm.state == VmState::kRunning;
    if (running == 20) break;
    if (Clock::now() > deadline) throw std::runtime_error("the VMs did not start");
    std::this_thread::sleep_for(20ms);
  }

  auto endpoint = *metering::ParseClickHouseUrl(server->Url("bench"));
  http::ClickHouseHttpTransport transport(endpoint);
  auto spool = Must(metering::Spool::Open(paths.clickhouse_spool(), int64_t{1} << 30), "spool");
  metering::ClickHouseSinkOptions sink_options;
  sink_options.database = "bench";
  sink_options.node = "bench";
  metering::ClickHouseSink sink(transport, *spool, sink_options);
  metering::LinuxUsageReader reader(paths, &driver);
  metering::Metrics metrics;
  metering::SamplerOptions options;
  options.interval = 1s;
  metering::Sampler sampler(
      *state, *usage, reader, clock, [&] { return node->List(); }, metrics, options, &sink);
  Must(sampler.Load(), "loading metering");
  Must(sink.SendOnce(), "creating the ClickHouse schema");

  std::vector<double> cpu, wall;
  auto next = Clock::now() + 1s;
  for (int i = 0; i < rounds; ++i) {
    std::this_thread::sleep_until(next);
    next += 1s;
    double c0 = ThreadCpuMs();
    auto t0 = Clock::now();
    Must(sampler.Tick(), "tick");
    Must(sink.SendOnce(), "sending");
    wall.push_back(Ms(Clock::now() - t0));
    cpu.push_back(ThreadCpuMs() - c0);
  }
  double total = 0;
  for (double c : cpu) total += c;
  double mean = total / static_cast<double>(cpu.size());
  int64_t rows = sink.stats().rows_sent;
  std::printf(
      "metering, 100 VMs defined, 20 running, 1 s interval, %d ticks, rows to "
      "ClickHouse: %lld\n",
      rounds, static_cast<long long>(rows));
  std::printf(
      "  CPU per tick (sample + store + spool + send): mean %.2f ms, median %.2f ms, "
      "max %.2f ms = %.2f %% of one core (target <= 2 %%)\n",
      mean, Median(cpu), *std::max_element(cpu.begin(), cpu.end()), mean / 10.0);
  std::printf("  wall time per tick: median %.2f ms, max %.2f ms\n", Median(wall),
              *std::max_element(wall.begin(), wall.end()));

  // Throughput: a backlog of 200,000 samples in 1,000-row batches, then the same written while
  // the sender runs.
  sink_options.database = "bench_throughput";
  for (bool backlog : {true, false}) {
    testing::TempDir spool_dir;
    auto s = Must(metering::Spool::Open(spool_dir / "spool", int64_t{4} << 30), "spool");
    metering::ClickHouseSink throughput(transport, *s, sink_options);
    Must(throughput.SendOnce(), "schema");
    if (!backlog) throughput.Start();
    const int kBatches = 200, kRows = 1000;
    static int64_t seq = 0;
    auto t0 = Clock::now();
    for (int b = 0; b < kBatches; ++b) {
      std::vector<metering::StoredSample> batch;
      for (int i = 0; i < kRows; ++i) {
        metering::Sample smp;
        smp.vm_id = fmt::format("vm-{}", i);
        smp.vm_name = smp.vm_id;
        smp.end = clock.Now() + std::chrono::milliseconds(++seq);
        smp.start = smp.end - 1s;
        smp.usage.cpu_ms = i;
        batch.push_back({seq, smp});
      }
      Must(throughput.Write(batch, {}), "spooling");
    }
    auto spooled = Clock::now();
    if (backlog) throughput.Start();
    auto t1 = Clock::now();
    if (!throughput.Drain(10min)) throw std::runtime_error("the spool did not drain");
    auto done = Clock::now();
    double n = kBatches * kRows;
    if (backlog) {
      std::printf(
          "sink, a backlog of %.0f rows (%d batches): spooled at %.0f rows/s, sent to "
          "ClickHouse at %.0f rows/s (%lld inserts)\n",
          n, kBatches, n / (Ms(spooled - t0) / 1e3), n / (Ms(done - t1) / 1e3),
          static_cast<long long>(throughput.stats().inserts));
    } else {
      std::printf(
          "sink, %.0f rows written and sent at once: %.0f rows/s end to end (%lld "
          "inserts)\n",
          n, n / (Ms(done - t0) / 1e3), static_cast<long long>(throughput.stats().inserts));
    }
    throughput.Stop();
  }
  return 0;
}

}  // namespace
}  // namespace hearth

int main(int argc, char** argv) {
  return hearth::bench::Main("metering_bench", argc, argv, hearth::Run, 30);
}

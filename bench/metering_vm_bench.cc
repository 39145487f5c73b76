// Metering's cost with real VMs: the real hearthd, 100 VMs defined and 20 of them running on
// QEMU (default image, 128 MiB), metered every second with every row sent to a real ClickHouse.
// Over SECONDS it reads hearthd's whole CPU time (user + system, /proc/<pid>/stat), which bounds
// what metering costs from above: the sampler (/proc of each VMM, tap counters, QMP for vCPU
// threads and disks), the local store and the sink, plus whatever else an idle hearthd does.
// Root.
//
//   build/bench/metering_vm_bench [SECONDS]      (default 60)
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "metering/usage_reader.h"
#include "support/clickhouse_server.h"
#include "support/daemon.h"
#include "support/temp_dir.h"
#include "support/vm_env.h"
#include "vm_bench_support.h"

namespace hearth {
namespace {

using namespace std::chrono_literals;
using bench::Api;
using bench::Clock;
using bench::Ms;

// utime + stime of a process, in seconds.
double CpuSeconds(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto stat = metering::ParseProcStat(text);
  if (!stat) throw std::runtime_error(stat.error().message);
  return static_cast<double>(stat->utime_ticks + stat->stime_ticks) /
         static_cast<double>(sysconf(_SC_CLK_TCK));
}

int Run(int seconds) {
  seconds = std::max(seconds, 5);
  auto server = testing::ClickHouseServer::Start();
  if (!server) throw std::runtime_error("starting ClickHouse: " + server.error().message);
  testing::TempDir dir;
  testing::LinkDefaultImage(dir.path());
  auto daemon = testing::DaemonProcess::Start(
      dir.path(), {"--network-pool", "172.31.248.0/22", "--metering-interval", "1s", "--clickhouse",
                   (*server)->Url("bench_vm_metering")});
  if (!daemon) throw std::runtime_error(daemon.error().message);
  Api api{http::Client((*daemon)->UnixClient())};
  constexpr int kDefined = 100, kRunning = 20, kBootsAtOnce = 4;
  for (int i = 0; i < kDefined; ++i) {
    api.Call("POST", "/v1/vms",
             fmt::format(R"({{"name":"m{}","image":"default","memory_mib":128}})", i));
  }
  auto boot0 = Clock::now();
  for (int first = 0; first < kRunning; first += kBootsAtOnce) {
    for (int i = first; i < first + kBootsAtOnce; ++i) {
      api.Call("POST", fmt::format("/v1/vms/m{}/start", i));
    }
    for (int i = first; i < first + kBootsAtOnce; ++i)
      api.WaitState(fmt::format("m{}", i), "running", 50ms);
  }
  std::printf("%d VMs defined, %d running (booted in %.0f s); settling 5 s\n", kDefined, kRunning,
              Ms(Clock::now() - boot0) / 1e3);
  std::this_thread::sleep_for(5s);
  pid_t pid = (*daemon)->pid();
  double cpu0 = CpuSeconds(pid);
  auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  double cpu = CpuSeconds(pid) - cpu0;
  double wall = Ms(Clock::now() - t0) / 1e3;
  auto rows = (*server)->Query("SELECT count() FROM bench_vm_metering.samples");
  std::printf(
      "hearthd over %.0f s, %d VMs defined, %d running on %s, metered every 1 s into ClickHouse "
      "(%s sample rows there): %.2f CPU-s = %.2f %% of one core, all of hearthd (target for "
      "metering: <= 2 %%)\n",
      wall, kDefined, kRunning,
      api.Call("GET", "/v1/vms/m0").value("backend", std::string("?")).c_str(),
      rows ? rows->substr(0, rows->find('\n')).c_str() : "?", cpu, 100 * cpu / wall);
  for (int i = 0; i < kDefined; ++i) api.Call("DELETE", fmt::format("/v1/vms/m{}?force=true", i));
  return 0;
}

}  // namespace
}  // namespace hearth

int main(int argc, char** argv) {
  return hearth::bench::Main("metering_vm_bench", argc, argv, hearth::Run, 60);
}

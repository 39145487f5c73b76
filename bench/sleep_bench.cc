// Suspend/resume cost: hearth (`POST suspend?wait=60s`, answered once suspended; `POST
// resume?wait=60s`, answered once running, then until the first HTTP answer) against QEMU's own
// save/restore of the same guest done by hand over QMP, two ways (see raw_qemu.h): exec:cat as in
// shared/DESIGN.md, and over a handed-over fd as hearthd does. All interleaved in one run. Then
// host memory before and after suspending 10 VMs. Root.
// The raw cycles restore hearth's snapshot and save into a file of their own, which is then
// handed back to hearth's snapshot (with its sum), so all alternate on one guest.
//
//   build/bench/sleep_bench [ROUNDS]      (default 5)
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

#include "common/files.h"
#include "common/paths.h"
#include "hv/process.h"
#include "hv/qemu/qmp_client.h"
#include "net/tap.h"
#include "raw_qemu.h"
#include "snapshot/snapshot_dir.h"
#include "support/daemon.h"
#include "support/temp_dir.h"
#include "support/vm_env.h"
#include "vm_bench_support.h"

namespace hearth {
namespace {

using namespace std::chrono_literals;
using bench::Api;
using bench::Clock;
using bench::Median;
using bench::Ms;
using nlohmann::json;

void WaitHttp(const std::string& ip) {
  auto r = testing::HttpGetEventually(ip, 80, "/", 60s);
  if (!r || r->status != 200) throw std::runtime_error("no HTTP answer from " + ip);
}

int64_t MeminfoKib(const std::string& field) {
  std::ifstream in("/proc/meminfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  }
  return 0;
}

// Pages of `path` in the page cache, in KiB (mincore over a read-only mapping).
int64_t CachedKib(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  struct stat st {};
  fstat(fd, &st);
  size_t len = static_cast<size_t>(st.st_size);
  int64_t pages = 0;
  void* map = len ? mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
  if (map != MAP_FAILED) {
    long page = sysconf(_SC_PAGESIZE);
    std::vector<unsigned char> v((len + page - 1) / page);
    if (mincore(map, len, v.data()) == 0) {
      for (unsigned char c : v) pages += c & 1;
    }
    munmap(map, len);
  }
  ::close(fd);
  return pages * sysconf(_SC_PAGESIZE) / 1024;
}

// Waits until hearth has written the suspended VM's RAM back and dropped it from the page cache.
void WaitMemorySynced(const Paths& paths, const std::string& id) {
  for (auto until = Clock::now() + 120s; Clock::now() < until;) {
    auto m = snapshot::SnapshotDir(paths, id).Load();
    if (m && m->synced) return;
    std::this_thread::sleep_for(20ms);
  }
  throw std::runtime_error("the RAM of " + id + " was not flushed in 120 s");
}

int64_t RssKib(int64_t pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return 0;
}

int Run(int rounds) {
  testing::TempDir dir;
  testing::LinkDefaultImage(dir.path());
  auto daemon = testing::DaemonProcess::Start(dir.path());
  if (!daemon) throw std::runtime_error(daemon.error().message);
  Api api{http::Client((*daemon)->UnixClient())};
  api.Call("POST", "/v1/vms", R"({"name":"nap","image":"default","memory_mib":128})");
  api.Call("POST", "/v1/vms/nap/start");
  json vm = api.WaitState("nap", "running");
  std::string ip = vm["ip"], backend = vm["backend"];
  std::string id = vm["id"];
  bench::RawQemu raw(Paths(dir.path()), id,
                     bench::ByName(bench::Cmdline(vm["pid"].get<int64_t>()), net::TapName(id),
                                   Paths(dir.path()).qmp_socket(id).string()));
  WaitHttp(ip);
  std::printf(
      "backend %s, 128 MiB guest, %d interleaved rounds (ms). hearth: POST with wait=60s until "
      "it answers the settled VM. raw: QEMU by hand, `cat` = exec:cat as in shared/DESIGN.md "
      "(the targets' reference), `fd` = the same QMP commands hearthd sends\n",
      backend.c_str(), rounds);
  std::printf("%-6s %8s %8s %8s | %8s %8s %8s | %8s %8s %8s\n", "round", "h.susp", "h.resume",
              "h.->HTTP", "cat.save", "cat.rest", "cat.HTTP", "fd.save", "fd.rest", "fd.HTTP");
  using Transport = bench::RawQemu::Transport;
  std::vector<double> hs, hr, hh, hj, hv, sj, ss, sc, se;
  std::map<Transport, std::vector<double>> rs, rr, rh;
  auto act = [&](const std::string& verb, const std::string& state) {
    json vm = api.Call("POST", "/v1/vms/nap/" + verb + "?wait=60s");
    if (vm.value("state", "") != state) {
      throw std::runtime_error(fmt::format("{}: the VM is {}, not {}", verb, vm.dump(), state));
    }
  };
  for (int i = 0; i < rounds; ++i) {
    // hearth: the VM runs.
    auto t0 = Clock::now();
    act("suspend", "suspended");
    hs.push_back(Ms(Clock::now() - t0));
    json slept = api.LastMeasures("nap", "suspended");
    sj.push_back(slept.value("latency_ms", 0.0));
    ss.push_back(slept.value("save_ms", 0.0));
    sc.push_back(slept.value("complete_ms", 0.0));
    se.push_back(slept.value("end_ms", 0.0));
    t0 = Clock::now();
    act("resume", "running");
    hr.push_back(Ms(Clock::now() - t0));
    WaitHttp(ip);
    hh.push_back(Ms(Clock::now() - t0));
    // hearth's own view of that resume: its job, and the VMM's restore inside it.
    json resumed = api.LastMeasures("nap", "resumed");
    hj.push_back(resumed.value("latency_ms", 0.0));
    hv.push_back(resumed.value("restore_ms", 0.0));

    // By hand, on the same VM's files: taking the running guest over from hearth's QEMU is not
    // possible, so hearth suspends it and the raw restore/save cycle runs on its snapshot.
    for (Transport how : {Transport::kExecCat, Transport::kFd}) {
      act("suspend", "suspended");
      rr[how].push_back(raw.Restore(how));
      t0 = Clock::now();
      WaitHttp(ip);
      rh[how].push_back(rr[how].back() + Ms(Clock::now() - t0));
      rs[how].push_back(raw.SaveAndHandBack(how));
      act("resume", "running");
    }
    const Transport cat = Transport::kExecCat;
    const Transport fd = Transport::kFd;
    std::printf("%-6d %8.1f %8.1f %8.1f | %8.1f %8.1f %8.1f | %8.1f %8.1f %8.1f\n", i + 1,
                hs.back(), hr.back(), hh.back(), rs[cat].back(), rr[cat].back(), rh[cat].back(),
                rs[fd].back(), rr[fd].back(), rh[fd].back());
    std::fflush(stdout);
  }
  for (auto [how, label] : {std::pair{Transport::kExecCat, "raw exec:cat (the targets, <= 1.10)"},
                            std::pair{Transport::kFd, "raw over fd (hearth's own overhead)"}}) {
    std::printf(
        "median vs %s: suspend %.1f vs %.1f (ratio %.2f); resume->running %.1f vs %.1f (ratio "
        "%.2f); resume->HTTP %.1f vs %.1f (ratio %.2f)\n",
        label, Median(hs), Median(rs[how]), Median(hs) / Median(rs[how]), Median(hr),
        Median(rr[how]), Median(hr) / Median(rr[how]), Median(hh), Median(rh[how]),
        Median(hh) / Median(rh[how]));
  }
  if (!sj.empty())
    std::printf(
        "hearth's suspend from its events (median): job %.1f ms = state saved %.1f + snapshot "
        "complete %.1f + VMM ended %.1f; the rest of the suspend is the API request with the "
        "write of 'suspending' and the write of 'suspended' (fsyncs)\n",
        Median(sj), Median(ss), Median(sc), Median(se));
  if (!hj.empty())
    std::printf(
        "hearth's resume from its events (median): job start -> running %.1f ms, of which the "
        "VMM's restore %.1f ms (hearth writes 'resuming' beside it); the rest of resume->running "
        "is the API request and the write of 'running' (an fsync)\n",
        Median(hj), Median(hv));

  // Ten VMs: host memory before and after suspending them all.
  const int kVms = 10;
  for (int i = 0; i < kVms; ++i) {
    api.Call("POST", "/v1/vms",
             fmt::format(R"({{"name":"m{}","image":"default","memory_mib":128}})", i));
    api.Call("POST", fmt::format("/v1/vms/m{}/start", i));
  }
  int64_t rss = 0;
  for (int i = 0; i < kVms; ++i) {
    json m = api.WaitState(fmt::format("m{}", i), "running");
    WaitHttp(m["ip"]);
    rss += RssKib(m["pid"].get<int64_t>());
  }
  int64_t free_before = MeminfoKib("MemFree");
  int64_t avail_before = MeminfoKib("MemAvailable");
  for (int i = 0; i < kVms; ++i) api.Call("POST", fmt::format("/v1/vms/m{}/suspend", i));
  std::vector<std::string> ids;
  for (int i = 0; i < kVms; ++i) {
    ids.push_back(api.WaitState(fmt::format("m{}", i), "suspended")["id"]);
  }
  int64_t free_suspended = MeminfoKib("MemFree");
  Paths paths(dir.path());
  for (const auto& id : ids) WaitMemorySynced(paths, id);
  int64_t free_after = MeminfoKib("MemFree");
  int64_t avail_after = MeminfoKib("MemAvailable");
  int64_t cached = 0;
  for (const auto& id : ids) cached += CachedKib(paths.memory_file(id));
  double guest = kVms * 128 * 1024.0;
  // What the VMs hold in host RAM: their QEMU processes' RSS while running (guest RAM touched,
  // file-backed, plus QEMU's own); after the suspend no process, and what is left of their RAM
  // files in the page cache.
  double held_after = static_cast<double>(cached);
  std::printf(
      "10 VMs x 128 MiB: held while running %lld MiB (QEMU RSS); after suspending: 0 processes, "
      "%lld KiB of their RAM files in the page cache -> %.1f %% of the held RAM freed; MemFree "
      "+%lld MiB at once, +%lld MiB once the RAM files were written back and dropped (%.0f %% of "
      "their 1280 MiB guest RAM); MemAvailable +%lld MiB (it counts file-backed guest RAM as "
      "reclaimable even while the VMs run)\n",
      static_cast<long long>(rss / 1024), static_cast<long long>(cached),
      100.0 * (static_cast<double>(rss) - held_after) / static_cast<double>(rss),
      static_cast<long long>((free_suspended - free_before) / 1024),
      static_cast<long long>((free_after - free_before) / 1024),
      100.0 * static_cast<double>(free_after - free_before) / guest,
      static_cast<long long>((avail_after - avail_before) / 1024));
  for (int i = 0; i < kVms; ++i) api.Call("DELETE", fmt::format("/v1/vms/m{}?force=true", i));
  api.Call("DELETE", "/v1/vms/nap?force=true");
  return 0;
}

}  // namespace
}  // namespace hearth

int main(int argc, char** argv) {
  return hearth::bench::Main("sleep_bench", argc, argv, hearth::Run);
}

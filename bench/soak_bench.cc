// Soak: VMs suspended and resumed in a loop for a number of minutes, checking after every cycle
// that each guest carries on (same boot id over HTTP) and at the end that nothing leaked: no
// extra process, tap, file descriptor of hearthd or file in the VM directories, and hearthd's
// memory did not grow. Exit 1 on the first failure or leak. Root.
//
//   build/bench/soak_bench [MINUTES] [VMS]      (default 10 minutes, 10 VMs)
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "common/paths.h"
#include "hv/process.h"
#include "net/linux_network.h"
#include "support/daemon.h"
#include "support/temp_dir.h"
#include "support/vm_env.h"
#include "vm_bench_support.h"

namespace hearth {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using bench::Api;
using bench::Clock;
using bench::Median;
using bench::Ms;
using nlohmann::json;

struct Footprint {
  size_t processes = 0;  // VMMs running from the data dir
  size_t taps = 0;       // the daemon's own
  size_t fds = 0;        // hearthd's open file descriptors
  size_t files = 0;      // entries under vms/
  int64_t rss_kib = 0;   // hearthd's
};

Footprint Measure(const testing::DaemonProcess& d) {
  Footprint f;
  f.processes = hv::FindProcesses((d.data_dir() / "vms").string() + "/").size();
  auto network = net::NewLinuxNetwork(net::NetworkOptions::ForDataDir(d.data_dir()));
  if (auto taps = network->ListTaps()) f.taps = taps->size();
  std::error_code ec;
  for (auto it = fs::directory_iterator(fmt::format("/proc/{}/fd", d.pid()), ec);
       it != fs::directory_iterator(); ++it) {
    ++f.fds;
  }
  for (auto it = fs::recursive_directory_iterator(d.data_dir() / "vms", ec);
       it != fs::recursive_directory_iterator(); ++it) {
    ++f.files;
  }
  std::ifstream in(fmt::format("/proc/{}/status", d.pid()));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) f.rss_kib = std::stoll(line.substr(6));
  }
  return f;
}

std::string Describe(const Footprint& f) {
  return fmt::format("{} VMMs, {} taps, {} hearthd fds, {} files under vms/, hearthd RSS {} KiB",
                     f.processes, f.taps, f.fds, f.files, f.rss_kib);
}

int Run(int minutes, int vms) {
  testing::TempDir dir;
  testing::LinkDefaultImage(dir.path());
  auto daemon = testing::DaemonProcess::Start(dir.path(), {"--network-pool", "172.31.250.0/24"});
  if (!daemon) throw std::runtime_error(daemon.error().message);
  Api api{http::Client((*daemon)->UnixClient())};
  std::map<std::string, std::string> boot, ip;
  for (int i = 0; i < vms; ++i) {
    std::string name = fmt::format("soak{}", i);
    api.Call("POST", "/v1/vms",
             fmt::format(R"({{"name":"{}","image":"default","memory_mib":128}})", name));
    api.Call("POST", fmt::format("/v1/vms/{}/start", name));
  }
  for (int i = 0; i < vms; ++i) {
    std::string name = fmt::format("soak{}", i);
    ip[name] = api.WaitState(name, "running", 50ms)["ip"];
    auto r = testing::HttpGetEventually(ip[name], 80, "/bootid", 60s);
    if (!r || r->status != 200) throw std::runtime_error(name + " never answered");
    boot[name] = r->body;
  }
  Footprint start = Measure(**daemon);
  std::printf("soak: %d VMs x 128 MiB for %d min; at start: %s\n", vms, minutes,
              Describe(start).c_str());
  std::fflush(stdout);
  std::vector<double> suspend_ms, resume_ms;
  int cycles = 0;
  for (auto until = Clock::now() + std::chrono::minutes(minutes); Clock::now() < until;) {
    auto t0 = Clock::now();
    for (const auto& [name, _] : boot) api.Call("POST", fmt::format("/v1/vms/{}/suspend", name));
    for (const auto& [name, _] : boot) api.WaitState(name, "suspended", 20ms);
    suspend_ms.push_back(Ms(Clock::now() - t0));
    if (Measure(**daemon).processes != 0) throw std::runtime_error("a VMM outlived its suspend");
    t0 = Clock::now();
    for (const auto& [name, _] : boot) api.Call("POST", fmt::format("/v1/vms/{}/resume", name));
    for (const auto& [name, _] : boot) api.WaitState(name, "running", 20ms);
    resume_ms.push_back(Ms(Clock::now() - t0));
    for (const auto& [name, id] : boot) {
      auto r = testing::HttpGetEventually(ip[name], 80, "/bootid", 20s);
      if (!r || r->status != 200 || r->body != id) {
        throw std::runtime_error(fmt::format("cycle {}: {} did not carry on ({})", cycles + 1, name,
                                             r ? r->body : "no answer"));
      }
    }
    ++cycles;
    if (cycles % 10 == 0) {
      std::printf("  %d cycles: %s\n", cycles, Describe(Measure(**daemon)).c_str());
      std::fflush(stdout);
    }
  }
  Footprint end = Measure(**daemon);
  std::printf(
      "soak: %d cycles of suspend-all/resume-all, 0 failures; all %d suspended in %.0f ms, "
      "running again in %.0f ms (medians)\n  at end: %s\n",
      cycles, vms, Median(suspend_ms), Median(resume_ms), Describe(end).c_str());
  bool leaked = end.processes != start.processes || end.taps != start.taps || end.fds > start.fds ||
                end.files != start.files || end.rss_kib > start.rss_kib + 16 * 1024;
  std::printf("soak: %s\n", leaked ? "LEAK (see the numbers above)" : "no leak");
  for (const auto& [name, _] : boot) api.Call("DELETE", fmt::format("/v1/vms/{}?force=true", name));
  return leaked ? 1 : 0;
}

}  // namespace
}  // namespace hearth

int main(int argc, char** argv) {
  int minutes = argc > 1 ? std::atoi(argv[1]) : 10;
  int vms = argc > 2 ? std::atoi(argv[2]) : 10;
  try {
    return hearth::Run(std::max(minutes, 1), std::max(vms, 1));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "soak_bench: %s\n", e.what());
    return 1;
  }
}

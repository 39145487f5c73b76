// Wake on packet: an HTTP GET from a client namespace to a suspended default-image VM, ROUNDS
// times: (a) first SYN -> SYN-ACK (curl's connect time) and (b) request -> full response, p50 and
// p99, with hearth's own share of each wake from its `woken` event (packet seen -> restore issued,
// plus VMM running -> frames replayed), and the namespace's TCP retransmissions. Next to it, in the
// same run, QEMU's restore of a second VM done by hand -> first answer to the same GET. Both
// guests sleep with their RAM written back and dropped from the page cache, as an idle VM does.
// Root.
//
//   build/bench/wake_bench [ROUNDS]      (default 30)
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <regex>
#include <sstream>

#include "net/tap.h"
#include "raw_qemu.h"
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
using nlohmann::json;

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// curl from the namespace: {connect s, total s}.
std::pair<double, double> Get(const testing::ClientNamespace& ns, const std::string& ip) {
  auto r = ns.Run({"curl", "-sS", "-m", "20", "-o", "/dev/null", "-w",
                   "%{http_code} %{time_connect} %{time_total}", "http://" + ip + "/bootid"});
  std::istringstream out(r.out);
  int code = 0;
  double connect = 0, total = 0;
  out >> code >> connect >> total;
  if (code != 200) throw std::runtime_error("GET http://" + ip + "/bootid: " + r.out + r.err);
  return {connect * 1e3, total * 1e3};
}

// Until hearth has written the RAM back and dropped it from the page cache.
void WaitSynced(const Paths& paths, const std::string& id) {
  for (auto until = Clock::now() + 120s; Clock::now() < until; std::this_thread::sleep_for(20ms)) {
    auto m = snapshot::SnapshotDir(paths, id).Load();
    if (m && m->synced) return;
  }
  throw std::runtime_error("the RAM of " + id + " was not synced in 120 s");
}

// The same for the raw side, which has no hearth to do it.
void DropRam(const Paths& paths, const std::string& id) {
  int fd = open(paths.memory_file(id).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  fdatasync(fd);
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  close(fd);
}

// hearth's own share of the last wake, from its event: seen -> restore issued, plus running ->
// replayed, in ms.
double OwnShare(Api& api, const std::string& name) {
  json events = api.Call("GET", "/v1/vms/" + name + "/events?limit=5");
  std::string message;
  for (const auto& e : events.value("events", json::array())) {
    if (e.value("type", "") == "woken") message = e.value("message", "");
  }
  std::smatch m;
  static const std::regex re(
      R"(restore began ([0-9.]+) ms after it was seen, VMM running at ([0-9.]+) ms, \d+ frame\(s\) replayed at ([0-9.]+) ms)");
  if (!std::regex_search(message, m, re)) throw std::runtime_error("no woken event: " + message);
  return std::stod(m[1]) + std::stod(m[3]) - std::stod(m[2]);
}

int Run(int rounds) {
  testing::TempDir dir;
  testing::LinkDefaultImage(dir.path());
  auto daemon = testing::DaemonProcess::Start(dir.path(), {"--network-pool", "172.31.252.0/24"});
  if (!daemon) throw std::runtime_error(daemon.error().message);
  Api api{http::Client((*daemon)->UnixClient())};
  Paths paths(dir.path());
  api.Call("POST", "/v1/vms",
           R"({"name":"wake","image":"default","memory_mib":128,"wake":"on-packet"})");
  api.Call("POST", "/v1/vms", R"({"name":"raw","image":"default","memory_mib":128})");
  api.Call("POST", "/v1/vms/wake/start");
  api.Call("POST", "/v1/vms/raw/start");
  json wake = api.WaitState("wake", "running", 20ms);
  json raw_vm = api.WaitState("raw", "running", 20ms);
  std::string ip = wake["ip"], raw_ip = raw_vm["ip"], id = wake["id"], raw_id = raw_vm["id"];
  for (const auto& a : {ip, raw_ip}) {
    if (!testing::HttpGetEventually(a, 80, "/", 60s)) throw std::runtime_error("no HTTP");
  }
  bench::RawQemu raw(
      paths, raw_id,
      bench::TapByName(bench::Cmdline(raw_vm["pid"].get<int64_t>()), net::TapName(raw_id)));
  api.Call("POST", "/v1/vms/raw/suspend");
  api.WaitState("raw", "suspended", 20ms);
  testing::ClientNamespace ns(getpid() % 250);
  int64_t syn_retrans = ns.SynRetransmissions(), retrans = ns.SegmentsRetransmitted();
  std::vector<double> syn, total, own, raw_first;
  std::printf("backend %s, 128 MiB guests, %d wakes (ms)\n%-6s %10s %10s %10s %14s\n",
              wake["backend"].get<std::string>().c_str(), rounds, "round", "SYN-ACK", "response",
              "own", "raw->answer");
  for (int i = 0; i < rounds; ++i) {
    api.Call("POST", "/v1/vms/wake/suspend");
    api.WaitState("wake", "suspended", 5ms);
    WaitSynced(paths, id);
    auto [connect, whole] = Get(ns, ip);
    syn.push_back(connect);
    total.push_back(whole);
    api.WaitState("wake", "running", 5ms);
    own.push_back(OwnShare(api, "wake"));

    DropRam(paths, raw_id);
    double running = raw.Restore();
    auto t0 = Clock::now();
    Get(ns, raw_ip);
    raw_first.push_back(running + Ms(Clock::now() - t0));
    raw.SaveAndHandBack();
    std::printf("%-6d %10.1f %10.1f %10.2f %14.1f\n", i + 1, syn.back(), total.back(), own.back(),
                raw_first.back());
    std::fflush(stdout);
  }
  int64_t retransmitted = ns.SegmentsRetransmitted() - retrans;
  int64_t syns_retransmitted = ns.SynRetransmissions() - syn_retrans;
  std::printf(
      "wake: SYN->SYN-ACK p50 %.1f p99 %.1f; request->response p50 %.1f p99 %.1f; raw restore -> "
      "first answer p50 %.1f p99 %.1f (target: SYN-ACK p50 <= raw + 15 ms: %s)\n"
      "hearth's own share p50 %.2f p99 %.2f ms (target p99 <= 2 ms: %s); in the client "
      "namespace, over these and the raw GETs: SYN retransmissions %lld (target 0), segments "
      "retransmitted %lld\n",
      Percentile(syn, .5), Percentile(syn, .99), Percentile(total, .5), Percentile(total, .99),
      Percentile(raw_first, .5), Percentile(raw_first, .99),
      Percentile(syn, .5) <= Percentile(raw_first, .5) + 15 ? "met" : "NOT met",
      Percentile(own, .5), Percentile(own, .99), Percentile(own, .99) <= 2 ? "met" : "NOT met",
      static_cast<long long>(syns_retransmitted), static_cast<long long>(retransmitted));
  api.Call("DELETE", "/v1/vms/wake?force=true");
  api.Call("DELETE", "/v1/vms/raw?force=true");
  return 0;
}

}  // namespace
}  // namespace hearth

int main(int argc, char** argv) {
  if (argc < 2) {
    static char thirty[] = "30";
    static char* args[] = {argv[0], thirty, nullptr};
    return hearth::bench::Main("wake_bench", 2, args, hearth::Run);
  }
  return hearth::bench::Main("wake_bench", argc, argv, hearth::Run);
}

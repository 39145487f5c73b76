// api_bench: load, latency and memory figures of the real hearthd, driven over its REST API.
//
//   build/bench/api_bench           # the full run (a few minutes)
//   build/bench/api_bench --quick   # a smoke run of every phase, for CI
//
// Phases, each against build/hearthd in a fresh temporary data dir:
//   (a) define N VMs with a few clients (N = 1,000);
//   (b) 50 concurrent keep-alive clients, each on its own thread and connection: GET
//       /v1/vms/{name} over TCP and over the unix socket, GET /v1/vms (N VMs), POST /v1/vms;
//   (c) the daemon's resident memory with 10,000 VMs defined, and again after a restart that loads
//       them from the store.
// Latency is measured in the client, from sending the request to having the whole response, so it
// includes the clients' own scheduling: on a small machine the 50 client threads compete with
// hearthd for the CPUs, and so does any other work (the load average is printed).
//
// The bench reports and does not judge: the targets are printed next to the numbers, and the exit
// status is 0 whether they are met or not. It is non-zero only when something broke (hearthd did
// not start or died, a request failed or got an unexpected status), and 2 on a usage error.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <latch>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "http/client.h"
#include "support/daemon.h"
#include "support/temp_dir.h"

namespace hearth::bench {
namespace {

using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr double kGetP99TargetMs = 5;
constexpr double kCreateP99TargetMs = 20;
constexpr double kRssTargetMib = 60;
// A phase stops early after this many failed requests: the daemon is broken, and waiting for
// thousands of client timeouts would tell nothing more.
constexpr int64_t kMaxErrors = 100;

struct Config {
  bool quick = false;
  int defined_vms = 1000;  // phase (a), and the population phase (b) reads
  int clients = 50;        // phase (b)
  int loaders = 4;         // clients that define VMs in (a) and (c)
  int64_t get_requests = 20000;
  int64_t list_requests = 2000;
  int64_t create_requests = 5000;
  milliseconds read_limit{10000};  // time limit of each read phase
  milliseconds create_limit{60000};
  milliseconds define_limit{600000};
  int rss_vms = 10000;
};

Config QuickConfig() {
  Config c;
  c.quick = true;
  c.defined_vms = 100;
  c.get_requests = 5000;
  c.list_requests = 200;
  c.create_requests = 300;
  c.read_limit = milliseconds(1000);
  c.create_limit = milliseconds(1000);
  c.define_limit = milliseconds(60000);
  c.rss_vms = 300;
  return c;
}

struct Request {
  std::string method;
  std::string target;
  std::string body;
  int expected_status = 200;
};

// Makes the request numbered `seq` (0, 1, ... across all clients) for client `client`.
using RequestMaker = std::function<Request(int client, int64_t seq)>;

struct Phase {
  std::string name;
  int clients = 0;
  int64_t requests = 0;  // answered as expected
  int64_t errors = 0;    // transport errors and unexpected statuses
  int64_t response_bytes = 0;
  double seconds = 0;
  std::vector<int64_t> latencies_ns;  // of the requests answered as expected, sorted
  std::string first_error;
  std::optional<double> p99_target_ms;

  double Throughput() const { return seconds > 0 ? double(requests + errors) / seconds : 0; }
  // The latency below which a fraction `p` of the requests completed (nearest rank).
  double PercentileMs(double p) const {
    if (latencies_ns.empty()) return 0;
    auto rank = static_cast<size_t>(std::ceil(p * double(latencies_ns.size())));
    size_t index = std::min(latencies_ns.size() - 1, rank == 0 ? 0 : rank - 1);
    return double(latencies_ns[index]) / 1e6;
  }
};

// Runs `clients` threads, each with its own connection, until `max_requests` were sent in total
// or `max_time` passed. Connections are opened (GET /healthz) before the clock starts.
Phase RunPhase(std::string name, const http::ClientOptions& endpoint, int clients,
               int64_t max_requests, milliseconds max_time, const RequestMaker& make) {
  Phase phase;
  phase.name = std::move(name);
  phase.clients = clients;
  std::atomic<int64_t> next_seq{0};
  std::atomic<int64_t> errors{0};
  std::mutex mu;  // guards phase once the threads merge their results
  std::latch connected(clients);
  std::latch go(1);
  SteadyClock::time_point start, deadline;

  auto record_error = [&](std::string message) {
    errors.fetch_add(1);
    std::lock_guard lock(mu);
    if (phase.first_error.empty()) phase.first_error = std::move(message);
  };

  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      http::Client client(endpoint);
      if (auto r = client.Request("GET", "/healthz"); !r || r->status != 200) {
        record_error(r ? fmt::format("GET /healthz -> {}", r->status) : r.error().message);
      }
      connected.count_down();
      go.wait();
      std::vector<int64_t> latencies;
      int64_t bytes = 0;
      for (;;) {
        if (errors.load() >= kMaxErrors || SteadyClock::now() >= deadline) break;
        int64_t seq = next_seq.fetch_add(1);
        if (seq >= max_requests) break;
        Request req = make(c, seq);
        auto sent = SteadyClock::now();
        auto r = client.Request(req.method, req.target, req.body);
        auto took = SteadyClock::now() - sent;
        if (!r) {
          record_error(fmt::format("{} {}: {}", req.method, req.target, r.error().message));
        } else if (r->status != req.expected_status) {
          record_error(fmt::format("{} {} -> {} (expected {}): {}", req.method, req.target,
                                   r->status, req.expected_status, r->body.substr(0, 300)));
        } else {
          latencies.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(took).count());
          bytes += static_cast<int64_t>(r->body.size());
        }
      }
      std::lock_guard lock(mu);
      phase.latencies_ns.insert(phase.latencies_ns.end(), latencies.begin(), latencies.end());
      phase.response_bytes += bytes;
    });
  }
  connected.wait();
  start = SteadyClock::now();
  deadline = start + max_time;
  go.count_down();
  for (auto& t : threads) t.join();
  phase.seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  phase.errors = errors.load();
  phase.requests = static_cast<int64_t>(phase.latencies_ns.size());
  std::sort(phase.latencies_ns.begin(), phase.latencies_ns.end());
  return phase;
}

// An ELF file to use as the VMs' kernel: the validator checks only the magic, and no VM boots.
std::string ElfKernelPath() {
  for (const char* path : {"/bin/true", "/usr/bin/true"}) {
    std::ifstream in(path, std::ios::binary);
    char magic[4] = {};
    if (in.read(magic, 4) && std::string_view(magic, 4) ==
                                 "\x7f"
                                 "ELF")
      return path;
  }
  return std::filesystem::canonical("/proc/self/exe").string();
}

std::string VmName(std::string_view prefix, int64_t n) { return fmt::format("{}-{}", prefix, n); }

std::string CreateBody(const std::string& name, const std::string& kernel, int64_t n) {
  // memory_mib varies (64..126, even) so that records are not all alike.
  return fmt::format(R"({{"name":"{}","kernel":"{}","vcpus":{},"memory_mib":{}}})", name, kernel,
                     1 + n % 2, 64 + 2 * (n % 32));
}

RequestMaker Creates(std::string prefix, std::string kernel) {
  return [prefix = std::move(prefix), kernel = std::move(kernel)](int, int64_t seq) {
    std::string name = VmName(prefix, seq);
    return Request{"POST", "/v1/vms", CreateBody(name, kernel, seq), 201};
  };
}

// Defines `count` VMs named PREFIX-0 ... with `config.loaders` clients.
Phase DefineVms(std::string label, const testing::DaemonProcess& daemon, const Config& config,
                int count, const std::string& prefix, const std::string& kernel) {
  return RunPhase(std::move(label), daemon.TcpClient(), config.loaders, count, config.define_limit,
                  Creates(prefix, kernel));
}

struct Memory {
  double rss_mib = -1;
  double hwm_mib = -1;
};

// VmRSS and VmHWM (peak RSS) of a process, from /proc/<pid>/status.
Memory ReadMemory(pid_t pid) {
  Memory m;
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line)) {
    auto kib = [&](std::string_view key) {
      return std::strtod(line.c_str() + key.size(), nullptr) / 1024.0;
    };
    if (line.rfind("VmRSS:", 0) == 0) m.rss_mib = kib("VmRSS:");
    if (line.rfind("VmHWM:", 0) == 0) m.hwm_mib = kib("VmHWM:");
  }
  return m;
}

// True while `pid` runs (a zombie that was not reaped yet counts as dead).
bool Alive(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("State:", 0) == 0) return line.find('Z') == std::string::npos;
  }
  return false;
}

// The first three fields of /proc/loadavg: other work on the machine skews every latency.
std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return fmt::format("{} {} {} (1, 5, 15 min)", one, five, fifteen);
}

std::string Verdict(bool met) { return met ? "met" : "NOT MET"; }

class Report {
 public:
  void Add(Phase phase) {
    PrintPhase(phase);
    if (phase.errors > 0) broken_ = true;
    if (phase.p99_target_ms) {
      targets_.push_back(
          {fmt::format("{} p99 <= {} ms", phase.name, *phase.p99_target_ms),
           fmt::format("{:.2f} ms", phase.PercentileMs(0.99)),
           !phase.latencies_ns.empty() && phase.PercentileMs(0.99) <= *phase.p99_target_ms});
    }
  }

  void AddMemory(std::string label, const Memory& m, bool has_target) {
    std::string verdict;
    if (has_target) {
      bool met = m.rss_mib >= 0 && m.rss_mib <= kRssTargetMib;
      verdict = fmt::format("<= {} MiB: {}", kRssTargetMib, Verdict(met));
      targets_.push_back({fmt::format("RSS {} <= {} MiB", label, kRssTargetMib),
                          fmt::format("{:.1f} MiB", m.rss_mib), met});
    }
    if (m.rss_mib < 0) Broke(fmt::format("cannot read the memory of hearthd ({})", label));
    std::printf("  %-52s %10.1f %10.1f   %s\n", label.c_str(), m.rss_mib, m.hwm_mib,
                verdict.c_str());
    std::fflush(stdout);
  }

  void Broke(std::string why) {
    broken_ = true;
    std::fprintf(stderr, "api_bench: %s\n", why.c_str());
  }
  bool broken() const { return broken_; }

  static void PrintPhaseHeader() {
    std::printf("  %-34s %7s %8s %6s %8s %9s %8s %8s %8s %8s %8s  %s\n", "phase", "clients",
                "requests", "errors", "seconds", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
                "KiB/resp", "target");
  }

  void PrintSummary(bool quick) const {
    std::printf("\ntargets%s:\n",
                quick ? " (quick run: sizes and durations are not the real ones)" : "");
    int met = 0;
    for (const auto& t : targets_) {
      std::printf("  %-62s %12s   %s\n", t.what.c_str(), t.value.c_str(), Verdict(t.met).c_str());
      met += t.met ? 1 : 0;
    }
    std::printf("  %d of %zu targets met\n", met, targets_.size());
  }

 private:
  struct Target {
    std::string what;
    std::string value;
    bool met = false;
  };

  static void PrintPhase(const Phase& p) {
    std::string target;
    if (p.p99_target_ms) {
      bool met = !p.latencies_ns.empty() && p.PercentileMs(0.99) <= *p.p99_target_ms;
      target = fmt::format("p99 <= {} ms: {}", *p.p99_target_ms, Verdict(met));
    }
    double kib = p.requests > 0 ? double(p.response_bytes) / double(p.requests) / 1024.0 : 0;
    std::printf("  %-34s %7d %8lld %6lld %8.2f %9.1f %8.2f %8.2f %8.2f %8.2f %8.1f  %s\n",
                p.name.c_str(), p.clients, static_cast<long long>(p.requests),
                static_cast<long long>(p.errors), p.seconds, p.Throughput(), p.PercentileMs(0.5),
                p.PercentileMs(0.9), p.PercentileMs(0.99), p.PercentileMs(1.0), kib,
                target.c_str());
    if (!p.first_error.empty()) std::printf("    first error: %s\n", p.first_error.c_str());
    std::fflush(stdout);
  }

  std::vector<Target> targets_;
  bool broken_ = false;
};

// Phases (a) and (b) against one daemon. Returns false if the daemon could not be used at all.
bool RunLatencyPhases(const Config& config, const std::string& kernel, Report& report) {
  testing::TempDir dir;
  auto daemon = testing::DaemonProcess::Start(dir.path());
  if (!daemon) {
    report.Broke("starting hearthd: " + daemon.error().message);
    return false;
  }
  const testing::DaemonProcess& d = **daemon;
  std::printf("hearthd pid %d, http://127.0.0.1:%u and unix:%s\n\n", d.pid(), d.port(),
              d.socket().c_str());
  Report::PrintPhaseHeader();

  report.Add(DefineVms(fmt::format("(a) define {} VMs", config.defined_vms), d, config,
                       config.defined_vms, "vm", kernel));

  auto random_get = [&](uint64_t salt) {
    return [&, salt](int client, int64_t seq) {
      // A cheap per-request random pick, the same sequence on every run.
      std::mt19937_64 rng(static_cast<uint64_t>(seq) * 0x9e3779b97f4a7c15ULL + salt);
      int64_t n = static_cast<int64_t>(rng() % static_cast<uint64_t>(config.defined_vms));
      return Request{"GET", "/v1/vms/" + VmName("vm", n), "", 200};
    };
  };
  Phase get_tcp = RunPhase("(b) GET /v1/vms/{name} tcp", d.TcpClient(), config.clients,
                           config.get_requests, config.read_limit, random_get(1));
  get_tcp.p99_target_ms = kGetP99TargetMs;
  report.Add(std::move(get_tcp));

  Phase get_unix = RunPhase("(b) GET /v1/vms/{name} unix", d.UnixClient(), config.clients,
                            config.get_requests, config.read_limit, random_get(2));
  get_unix.p99_target_ms = kGetP99TargetMs;
  report.Add(std::move(get_unix));

  report.Add(RunPhase(fmt::format("(b) GET /v1/vms ({} VMs) tcp", config.defined_vms),
                      d.TcpClient(), config.clients, config.list_requests, config.read_limit,
                      [](int, int64_t) {
                        return Request{"GET", "/v1/vms", "", 200};
                      }));

  Phase create = RunPhase("(b) POST /v1/vms tcp", d.TcpClient(), config.clients,
                          config.create_requests, config.create_limit, Creates("new", kernel));
  create.p99_target_ms = kCreateP99TargetMs;
  const int64_t create_count = create.requests;
  report.Add(std::move(create));

  if (!Alive(d.pid())) report.Broke("hearthd died during the latency phases");
  std::printf("\n  %-52s %10s %10s   %s\n", "hearthd memory", "VmRSS MiB", "VmHWM MiB", "");
  report.AddMemory(fmt::format("after (a) and (b): {} VMs", config.defined_vms + create_count),
                   ReadMemory(d.pid()), false);
  std::printf("\n");
  return true;
}

// Phase (c): resident memory of an empty daemon, with rss_vms VMs, and after a restart.
void RunMemoryPhase(const Config& config, const std::string& kernel, Report& report) {
  testing::TempDir dir;
  auto daemon = testing::DaemonProcess::Start(dir.path());
  if (!daemon) {
    report.Broke("starting hearthd: " + daemon.error().message);
    return;
  }
  Report::PrintPhaseHeader();
  Phase define = DefineVms(fmt::format("(c) define {} VMs", config.rss_vms), **daemon, config,
                           config.rss_vms, "vm", kernel);
  // The RSS is read after the load and before anything else touches the daemon.
  Memory loaded = ReadMemory((*daemon)->pid());
  bool defined_all = define.requests == config.rss_vms;
  int64_t defined = define.requests;
  report.Add(std::move(define));
  if (!defined_all) {
    report.Broke(fmt::format("only {} of {} VMs were defined within {} s", defined, config.rss_vms,
                             config.define_limit.count() / 1000));
  }

  std::printf("\n  %-52s %10s %10s   %s\n", "hearthd memory", "VmRSS MiB", "VmHWM MiB", "target");
  report.AddMemory(fmt::format("{} VMs defined over the API", defined), loaded, true);
  (*daemon)->Terminate();
  daemon->reset();

  daemon = testing::DaemonProcess::Start(dir.path());
  if (!daemon) {
    report.Broke("restarting hearthd: " + daemon.error().message);
    return;
  }
  // hearthd reports listening only after loading every record.
  report.AddMemory(fmt::format("{} VMs loaded from the store at start", defined),
                   ReadMemory((*daemon)->pid()), true);
  http::Client client((*daemon)->TcpClient());
  auto list = client.Request("GET", "/v1/vms");
  if (!list || list->status != 200) {
    report.Broke("GET /v1/vms after the restart: " +
                 (list ? fmt::format("status {}", list->status) : list.error().message));
  }
  // The same daemon and VMs once they were listed: what it holds after serving, not only idle.
  report.AddMemory(fmt::format("{} VMs loaded, after one GET /v1/vms ({:.1f} MiB)", defined,
                               list ? double(list->body.size()) / (1 << 20) : 0.0),
                   ReadMemory((*daemon)->pid()), true);

  testing::TempDir empty_dir;
  auto empty = testing::DaemonProcess::Start(empty_dir.path());
  if (!empty) {
    report.Broke("starting hearthd: " + empty.error().message);
    return;
  }
  report.AddMemory("empty daemon, for comparison", ReadMemory((*empty)->pid()), false);
  if (!Alive((*daemon)->pid())) report.Broke("hearthd died during the memory phase");
}

int Usage(const char* argv0, FILE* out) {
  std::fprintf(out,
               "usage: %s [--quick]\n"
               "Starts %s and measures its API: define 1,000 VMs; 50 clients doing GET\n"
               "/v1/vms/{name} (TCP and unix socket), GET /v1/vms and POST /v1/vms; resident\n"
               "memory with 10,000 VMs. Prints the numbers next to the targets.\n"
               "  --quick   a smoke run with small counts and 1 s phases (for CI)\n"
               "Exit status: 0 when every phase ran (targets met or not), 1 when something\n"
               "broke (hearthd failed, a request failed), 2 on a usage error.\n",
               argv0, (testing::BuildDir() / "hearthd").c_str());
  return out == stdout ? 0 : 2;
}

int Main(int argc, char** argv) {
  Config config;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--quick") {
      config = QuickConfig();
    } else if (arg == "--help" || arg == "-h") {
      return Usage(argv[0], stdout);
    } else {
      std::fprintf(stderr, "api_bench: unknown argument '%s'\n", argv[i]);
      return Usage(argv[0], stderr);
    }
  }
  const std::string kernel = ElfKernelPath();
  std::printf("api_bench%s: %u CPUs, kernel %s; latency is measured in the client\n",
              config.quick ? " --quick" : "", std::thread::hardware_concurrency(), kernel.c_str());

  Report report;
  std::printf("load average at start: %s\n", LoadAverage().c_str());
  if (RunLatencyPhases(config, kernel, report)) RunMemoryPhase(config, kernel, report);
  std::printf("\nload average at end: %s\n", LoadAverage().c_str());
  report.PrintSummary(config.quick);
  if (report.broken()) {
    std::printf("\nFAILED: something broke (see above); the numbers are not valid\n");
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace hearth::bench

int main(int argc, char** argv) { return hearth::bench::Main(argc, argv); }

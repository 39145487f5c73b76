// Start latency: `POST /v1/vms/NAME/start` -> first HTTP 200 from the guest, against the very
// same QEMU command run by hand (read from the running VM's /proc/PID/cmdline, same tap, same
// files), interleaved in one run so both see the same machine. Then 10 VMs started at once.
// Runs on whatever backend hearthd picks (TCG where KVM cannot boot a guest). Root.
//
//   build/bench/start_bench [ROUNDS]      (default 5 pairs)
#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common/paths.h"
#include "hv/process.h"
#include "net/tap.h"
#include "support/daemon.h"
#include "support/temp_dir.h"
#include "support/vm_env.h"
#include "vm_bench_support.h"

namespace hearth {
namespace {

using namespace std::chrono_literals;
using bench::Api;
using bench::Clock;
using bench::Cmdline;
using bench::Median;
using bench::Ms;
using nlohmann::json;

// True when one GET / to ip:80 answers 200. The connect gives up after 20 ms so that a SYN lost
// while the guest's network is not up yet costs one short retry, not TCP's 1 s backoff.
bool HttpOk(const std::string& ip) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(80);
  inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  bool ok = false;
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  pollfd p{fd, POLLOUT, 0};
  if ((rc == 0 || errno == EINPROGRESS) && poll(&p, 1, 20) == 1) {
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err == 0) {
      int flags = fcntl(fd, F_GETFL);
      fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
      timeval tv{2, 0};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      const char req[] = "GET / HTTP/1.0\r\n\r\n";
      if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) > 0) {
        char buf[256];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        ok = n > 12 && std::string_view(buf, 12) == "HTTP/1.0 200";
      }
    }
  }
  close(fd);
  return ok;
}

Clock::time_point WaitHttp(const std::string& ip, Clock::time_point limit) {
  while (Clock::now() < limit) {
    if (HttpOk(ip)) return Clock::now();
    std::this_thread::sleep_for(5ms);
  }
  throw std::runtime_error("no HTTP answer from " + ip);
}

int Run(int rounds) {
  testing::TempDir dir;
  testing::LinkDefaultImage(dir.path());
  auto daemon = testing::DaemonProcess::Start(dir.path());
  if (!daemon) {
    std::fprintf(stderr, "%s\n", daemon.error().message.c_str());
    return 1;
  }
  Api api{http::Client((*daemon)->UnixClient())};
  api.Call("POST", "/v1/vms", R"({"name":"bench","image":"default","memory_mib":128})");
  // A first start decides the backend (KVM probe) and gives the command line to copy.
  api.Call("POST", "/v1/vms/bench/start");
  json vm = api.WaitState("bench", "running", 10ms);
  std::string ip = vm["ip"], backend = vm["backend"];
  std::string id = vm["id"];
  std::vector<std::string> argv = bench::ByName(Cmdline(vm["pid"].get<int64_t>()), net::TapName(id),
                                                Paths(dir.path()).qmp_socket(id).string());
  api.Call("POST", "/v1/vms/bench/stop?kill=true");
  api.WaitState("bench", "stopped", 10ms);
  std::printf("backend %s, guest %s, 128 MiB, 1 vCPU; %d interleaved rounds\n", backend.c_str(),
              ip.c_str(), rounds);
  std::printf("%-6s %14s %14s\n", "round", "hearth (ms)", "by hand (ms)");

  std::filesystem::path memory = Paths(dir.path()).memory_file(vm["id"].get<std::string>());
  std::vector<double> via_hearth, by_hand;
  auto through_hearth = [&] {
    auto t0 = Clock::now();
    api.Call("POST", "/v1/vms/bench/start");
    via_hearth.push_back(Ms(WaitHttp(ip, t0 + 120s) - t0));
    api.Call("POST", "/v1/vms/bench/stop?kill=true");
    api.WaitState("bench", "stopped", 10ms);
  };
  auto by_hand_once = [&] {
    std::filesystem::remove(memory);  // hearth boots with a fresh RAM file too
    auto t0 = Clock::now();
    auto qemu = hv::Spawn(argv, {});
    if (!qemu) throw std::runtime_error(qemu.error().message);
    by_hand.push_back(Ms(WaitHttp(ip, t0 + 120s) - t0));
    hv::SignalProcess(*qemu, SIGKILL);
    waitpid(static_cast<pid_t>(qemu->pid), nullptr, 0);
  };
  for (int i = 0; i < rounds; ++i) {
    // Alternate which goes first, so that neither always follows the other's teardown.
    if (i % 2 == 0) {
      through_hearth();
      by_hand_once();
    } else {
      by_hand_once();
      through_hearth();
    }
    std::printf("%-6d %14.0f %14.0f\n", i + 1, via_hearth.back(), by_hand.back());
    std::fflush(stdout);
  }
  double h = Median(via_hearth), r = Median(by_hand);
  std::printf(
      "median start -> first HTTP 200: hearth %.0f ms, by hand %.0f ms, ratio %.3f "
      "(target <= 1.05)\n",
      h, r, h / r);

  // Ten VMs at once.
  const int kVms = 10;
  for (int i = 0; i < kVms; ++i) {
    api.Call("POST", "/v1/vms",
             fmt::format(R"({{"name":"c{}","image":"default","memory_mib":128}})", i));
  }
  auto t0 = Clock::now();
  for (int i = 0; i < kVms; ++i) api.Call("POST", fmt::format("/v1/vms/c{}/start", i));
  double accepted = Ms(Clock::now() - t0);
  std::vector<std::string> ips;
  for (int i = 0; i < kVms; ++i)
    ips.push_back(api.WaitState(fmt::format("c{}", i), "running", 10ms)["ip"]);
  double all_running = Ms(Clock::now() - t0);
  for (const auto& vm_ip : ips) WaitHttp(vm_ip, t0 + 300s);
  double all_http = Ms(Clock::now() - t0);
  std::printf(
      "%d VMs started at once: all accepted in %.0f ms, all running in %.0f ms, all "
      "answering HTTP in %.0f ms\n",
      kVms, accepted, all_running, all_http);
  for (int i = 0; i < kVms; ++i) api.Call("DELETE", fmt::format("/v1/vms/c{}?force=true", i));
  api.Call("DELETE", "/v1/vms/bench?force=true");
  return 0;
}

}  // namespace
}  // namespace hearth

int main(int argc, char** argv) {
  return hearth::bench::Main("start_bench", argc, argv, hearth::Run);
}

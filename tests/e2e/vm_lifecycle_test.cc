// Real VMs through the real hearthd and CLI (QEMU; TCG on hosts where KVM cannot boot a guest):
// HTTP to the guest's address and through a published port from the host and from another
// network namespace (and a port published on 127.0.0.1 from the host only), a memory edit seen by
// the guest, restart of a killed VMM, re-adoption after SIGKILL of hearthd, and nothing left behind
// by delete.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <thread>

#include "common/paths.h"
#include "hv/process.h"
#include "net/linux_network.h"
#include "net/tap.h"
#include "support/daemon.h"
#include "support/openapi_validator.h"
#include "support/scope_guard.h"
#include "support/temp_dir.h"
#include "support/vm_env.h"
#include "support/vm_fixture.h"

namespace hearth {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;
using testing::RunProgram;
using testing::RunResult;

class VmLifecycleTest : public testing::VmFixture {
 protected:
  void CliOk(std::vector<std::string> args) {
    RunResult r = Cli(args);
    ASSERT_EQ(r.exit_code, 0) << fmt::format("hearth {}: {}{}", fmt::join(args, " "), r.out, r.err);
  }
  std::vector<std::string> Events(const std::string& name) {
    RunResult r = Cli({"vm", "events", name, "-o", "json"});
    std::vector<std::string> out;
    json j = json::parse(r.out, nullptr, false);
    if (j.is_object() && j.contains("events")) j = j["events"];
    if (!j.is_array()) return out;
    for (const auto& e : j) out.push_back(e.value("type", "") + ": " + e.value("message", ""));
    return out;
  }
  // Waits until `name` is running with a pid other than `not_pid`.
  json WaitRunning(const std::string& name, int64_t not_pid, std::chrono::seconds limit) {
    auto until = std::chrono::steady_clock::now() + limit;
    json vm;
    do {
      std::this_thread::sleep_for(200ms);
      vm = Show(name);
    } while (!(vm.value("state", "") == "running" && vm["pid"].is_number() &&
               vm["pid"].get<int64_t>() != not_pid) &&
             std::chrono::steady_clock::now() < until);
    return vm;
  }
  // A request over the unix socket whose answer must have `status` and conform to
  // api/openapi.yaml (for answers only a booted guest can give).
  void CheckedRequest(std::string_view method, const std::string& target, int status) {
    static const auto spec =
        testing::OpenApiSpec::Load(fs::path(HEARTH_SOURCE_DIR) / "api" / "openapi.yaml");
    ASSERT_TRUE(spec) << spec.error().message;
    http::Client api(daemon_->UnixClient());
    auto r = api.Request(method, target, "");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->status, status) << r->body;
    auto op = spec->FindOperation(method, target);
    ASSERT_TRUE(op);
    EXPECT_THAT(spec->CheckResponse(*op, *r), ::testing::IsEmpty()) << r->body;
  }
  // Polls until the VM has left `state`.
  void WaitLeaves(const std::string& name, const std::string& state) {
    for (auto until = std::chrono::steady_clock::now() + 60s;
         Show(name)["state"] == state && std::chrono::steady_clock::now() < until;) {
      std::this_thread::sleep_for(20ms);
    }
  }
  bool TapExists(const std::string& tap) {
    return RunProgram({"ip", "link", "show", "dev", tap}).exit_code == 0;
  }
  std::string Rules() {
    auto table = net::NetworkOptions::ForDataDir(dir_.path()).table;
    return RunProgram({"nft", "list", "table", "ip", table}).out;
  }
};

TEST_F(VmLifecycleTest, GuestAnswersOnItsAddressAndPublishedPortFromHostAndNamespace) {
  uint16_t port = static_cast<uint16_t>(20000 + getpid() % 20000);
  uint16_t local_port = port + 1;  // published on 127.0.0.1 only
  CliOk({"vm", "create", "web", "--image", "default", "--memory", "128M", "--publish",
         fmt::format("{}:80", port), "--publish", fmt::format("127.0.0.1:{}:80", local_port)});
  auto t0 = std::chrono::steady_clock::now();
  CliOk({"vm", "start", "web"});
  std::cerr << "start -> running: "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
            << " s\n";
  json vm = Show("web");
  ASSERT_EQ(vm["state"], "running");
  std::string ip = vm["ip"];
  EXPECT_TRUE(vm["backend"] == "qemu-tcg" || vm["backend"] == "qemu-kvm") << vm.dump();

  auto direct = testing::HttpGetEventually(ip, 80, "/", 10s);
  ASSERT_TRUE(direct && direct->status == 200);
  EXPECT_EQ(direct->body, "web\n");
  auto published = testing::HttpGetEventually("127.0.0.1", port, "/", 10s);
  ASSERT_TRUE(published && published->status == 200);
  EXPECT_EQ(published->body, "web\n");

  testing::ClientNamespace client(getpid() % 250);
  RunResult r = client.Run(
      {"curl", "-sS", "--max-time", "10", fmt::format("http://{}:{}/", client.host_ip(), port)});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "web\n");

  // The port published on 127.0.0.1 answers there, and not at the host's address the client
  // namespace reaches.
  auto local = testing::HttpGetEventually("127.0.0.1", local_port, "/", 10s);
  ASSERT_TRUE(local && local->status == 200);
  EXPECT_EQ(local->body, "web\n");
  r = client.Run({"curl", "-sS", "--max-time", "3",
                  fmt::format("http://{}:{}/", client.host_ip(), local_port)});
  EXPECT_NE(r.exit_code, 0) << "127.0.0.1's port answered on " << client.host_ip() << ": " << r.out;

  // The console log is served.
  RunResult logs = Cli({"vm", "logs", "web"});
  EXPECT_NE(logs.out.find("hearth: guest ready name=web"), std::string::npos) << logs.out;

  // Answers only a running VM gives conform to api/openapi.yaml: delete without force is 409,
  // stop is 200 with the VM stopping. Stop powers the guest off.
  CheckedRequest("DELETE", "/v1/vms/web", 409);
  int64_t pid = vm["pid"];
  CheckedRequest("POST", "/v1/vms/web/stop", 200);
  for (auto until = std::chrono::steady_clock::now() + 20s;
       Show("web")["state"] == "stopping" && std::chrono::steady_clock::now() < until;) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(Show("web")["state"], "stopped");
  EXPECT_FALSE(hv::ProcessStartTime(pid));
  auto events = Events("web");
  ASSERT_FALSE(events.empty());
  EXPECT_NE(events.back().find("stopped: the guest powered off"), std::string::npos)
      << events.back();
}

// MemTotal from the guest's /proc/meminfo, served by the default image.
int64_t GuestMemoryKib(const std::string& ip) {
  auto reply = testing::HttpGetEventually(ip, 80, "/meminfo", 10s);
  if (!reply || reply->status != 200) return 0;
  std::smatch m;
  std::regex total(R"(MemTotal:\s+(\d+) kB)");
  return std::regex_search(reply->body, m, total) ? std::stoll(m[1]) : 0;
}

TEST_F(VmLifecycleTest, MemoryEditOfAStoppedVmIsSeenByTheGuest) {
  CliOk({"vm", "create", "mem", "--image", "default", "--memory", "128M"});
  CliOk({"vm", "start", "mem"});
  std::string ip = Show("mem")["ip"];
  int64_t before = GuestMemoryKib(ip);
  CliOk({"vm", "stop", "mem", "--kill"});
  CliOk({"vm", "edit", "mem", "--memory", "320M"});
  CliOk({"vm", "start", "mem"});
  int64_t after = GuestMemoryKib(ip);
  std::cerr << "guest MemTotal: " << before << " KiB -> " << after << " KiB\n";
  // MemTotal is RAM minus what the kernel and the initramfs keep: below the VM's size by about
  // the same amount both times, so the difference is the 192 MiB added.
  EXPECT_LE(before, 128 * 1024);
  EXPECT_LE(after, 320 * 1024);
  EXPECT_NEAR((after - before) / 1024.0, 192, 8);
}

TEST_F(VmLifecycleTest, AKilledVmmIsRestartedOnFailure) {
  json vm = CreateAndStart("crashy");
  ASSERT_TRUE(vm["pid"].is_number());
  int64_t pid = vm["pid"];
  std::string ip = vm["ip"];
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(static_cast<pid_t>(pid), SIGKILL), 0);
  json again = WaitRunning("crashy", pid, 60s);
  ASSERT_EQ(again["state"], "running") << again.dump();
  std::cerr << "killed -> running again: "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
            << " s\n";
  auto reply = testing::HttpGetEventually(ip, 80, "/", 10s);
  ASSERT_TRUE(reply && reply->status == 200);
  bool recorded = false;
  for (const auto& e : Events("crashy")) {
    if (e.find("exited: qemu (pid " + std::to_string(pid) + ") killed by signal 9") == 0) {
      recorded = true;
    }
  }
  EXPECT_TRUE(recorded) << fmt::format("{}", fmt::join(Events("crashy"), "\n"));
}

TEST_F(VmLifecycleTest, ANewHearthdReadoptsVmsAfterSigkill) {
  json vm = CreateAndStart("keep");
  ASSERT_TRUE(vm["pid"].is_number());
  int64_t pid = vm["pid"];
  std::string ip = vm["ip"];
  auto boot_id = testing::HttpGetEventually(ip, 80, "/bootid", 10s);
  ASSERT_TRUE(boot_id && boot_id->status == 200);

  daemon_->KeepHostState();
  daemon_->Kill();
  // The VM carries on without hearthd.
  auto alone = testing::HttpGet(ip, 80, "/bootid");
  ASSERT_TRUE(alone && alone->status == 200);
  EXPECT_EQ(alone->body, boot_id->body);

  StartDaemon();
  json adopted = Show("keep");
  EXPECT_EQ(adopted["state"], "running");
  EXPECT_EQ(adopted["pid"], pid);
  auto events = Events("keep");
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().rfind("adopted:", 0), 0u) << events.back();
  EXPECT_NE(Cli({"vm", "logs", "keep"}).out.find("hearth: guest ready"), std::string::npos);
  auto same = testing::HttpGet(ip, 80, "/bootid");
  ASSERT_TRUE(same && same->status == 200);
  EXPECT_EQ(same->body, boot_id->body);  // the same boot: not restarted

  // The new hearthd supervises it: a crash now is seen and restarted.
  kill(static_cast<pid_t>(pid), SIGKILL);
  json again = WaitRunning("keep", pid, 60s);
  EXPECT_EQ(again["state"], "running") << again.dump();
}

TEST_F(VmLifecycleTest, DeleteLeavesNoTapRuleProcessOrFile) {
  uint16_t port = static_cast<uint16_t>(20000 + (getpid() + 7) % 20000);
  CliOk({"vm", "create", "gone", "--image", "default", "--memory", "128M", "--publish",
         fmt::format("{}:80", port)});
  CliOk({"vm", "start", "gone"});
  json vm = Show("gone");
  std::string id = vm["id"], ip = vm["ip"];
  std::string tap = net::TapName(id);
  ASSERT_TRUE(TapExists(tap));
  ASSERT_NE(Rules().find(ip), std::string::npos) << Rules();
  fs::path vm_dir = dir_.path() / "vms" / id;
  ASSERT_TRUE(fs::exists(vm_dir));

  CliOk({"vm", "rm", "gone", "--force"});
  EXPECT_FALSE(TapExists(tap));
  EXPECT_EQ(Rules().find(ip), std::string::npos) << Rules();
  EXPECT_TRUE(hv::FindProcesses(vm_dir.string()).empty());
  EXPECT_FALSE(hv::ProcessStartTime(vm["pid"].get<int64_t>()));
  EXPECT_FALSE(fs::exists(vm_dir));
}

TEST_F(VmLifecycleTest, SuspendFreesTheProcessAndResumeCarriesOnTheSameBoot) {
  json vm = CreateAndStart("nap");
  ASSERT_TRUE(vm["pid"].is_number());
  std::string ip = vm["ip"];
  int64_t pid = vm["pid"];
  auto boot_id = testing::HttpGetEventually(ip, 80, "/bootid", 10s);
  ASSERT_TRUE(boot_id && boot_id->status == 200);
  auto count = testing::HttpGet(ip, 80, "/count");
  ASSERT_TRUE(count && count->status == 200);
  // A TCP connection to the guest's listener, opened before the suspend and used after it.
  int held = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(held, 0);
  testing::Guard close_held([&] { close(held); });
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(80);
  inet_pton(AF_INET, ip.c_str(), &addr.sin_addr);
  ASSERT_EQ(connect(held, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  timeval tv{10, 0};
  setsockopt(held, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

  auto t0 = std::chrono::steady_clock::now();
  CheckedRequest("POST", "/v1/vms/nap/suspend", 200);
  WaitLeaves("nap", "suspending");
  double suspend_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  json suspended = Show("nap");
  EXPECT_EQ(suspended["state"], "suspended");
  EXPECT_EQ(suspended["pid"], nullptr);
  ASSERT_TRUE(suspended["snapshot"].is_object()) << suspended.dump();
  EXPECT_GT(suspended["snapshot"]["bytes"].get<int64_t>(), 0);
  EXPECT_FALSE(hv::ProcessStartTime(pid)) << "no QEMU while suspended";
  RunResult refused = Cli({"vm", "edit", "nap", "--memory", "256M"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("--discard-state"), std::string::npos) << refused.err;

  // Asleep long enough that a guest clock left standing would be visibly wrong.
  std::this_thread::sleep_for(3s);
  t0 = std::chrono::steady_clock::now();
  CheckedRequest("POST", "/v1/vms/nap/resume", 200);
  auto again = testing::HttpGetEventually(ip, 80, "/bootid", 10s);
  double resume_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(again && again->status == 200);
  EXPECT_EQ(again->body, boot_id->body) << "the same boot carries on";
  // Guest files and processes carried on: the counter in its /run goes on from where it was.
  auto next = testing::HttpGet(ip, 80, "/count");
  ASSERT_TRUE(next && next->status == 200);
  EXPECT_EQ(std::stoi(next->body), std::stoi(count->body) + 1);
  // So did the TCP connection opened before the suspend.
  std::string request = "GET /bootid HTTP/1.0\r\n\r\n";
  ASSERT_EQ(send(held, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  std::string reply;
  char buf[512];
  for (ssize_t n; (n = recv(held, buf, sizeof(buf), 0)) > 0;) reply.append(buf, n);
  EXPECT_NE(reply.find("200 OK"), std::string::npos) << reply;
  EXPECT_NE(reply.find(boot_id->body), std::string::npos) << reply;
  // The guest's wall clock was put right after the resume (within 1 s of the host's).
  auto time = testing::HttpGet(ip, 80, "/time");
  ASSERT_TRUE(time && time->status == 200);
  double host_now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  double guest_now = std::stod(time->body);
  std::cerr << fmt::format("guest clock - host clock after resume: {:+.3f} s\n",
                           guest_now - host_now);
  EXPECT_NEAR(guest_now, host_now, 1.0);
  std::cerr << fmt::format("suspend (API, until suspended) {:.3f} s; resume -> HTTP {:.3f} s\n",
                           suspend_s, resume_s);
  // stop on a suspended VM discards its state; the next start is a cold boot.
  CliOk({"vm", "suspend", "nap"});
  CliOk({"vm", "stop", "nap"});
  EXPECT_EQ(Show("nap")["snapshot"], nullptr);
  CliOk({"vm", "start", "nap"});
  auto fresh = testing::HttpGetEventually(Show("nap")["ip"], 80, "/bootid", 10s);
  ASSERT_TRUE(fresh && fresh->status == 200);
  EXPECT_NE(fresh->body, boot_id->body) << "a new boot";
  // A cold boot's clock comes from the RTC (whole seconds, up to one behind); hearthd puts it
  // right once the guest is up, as after a resume.
  double offset = 0;
  for (auto until = std::chrono::steady_clock::now() + 5s;;) {
    auto now = testing::HttpGet(Show("nap")["ip"], 80, "/time");
    ASSERT_TRUE(now && now->status == 200);
    offset =
        std::stod(now->body) -
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    if (std::abs(offset) < 0.1 || std::chrono::steady_clock::now() > until) break;
    std::this_thread::sleep_for(100ms);
  }
  std::cerr << fmt::format("guest clock - host clock after a cold boot: {:+.3f} s\n", offset);
  EXPECT_LT(std::abs(offset), 0.1);
}

// Clients race start, stop, kill, edit and reads on one real VM. Whatever the interleaving, the
// VM settles in a state that matches reality: running with exactly its one QEMU, or no QEMU.
TEST_F(VmLifecycleTest, ConcurrentRequestsOnOneVmLeaveItConsistent) {
  CliOk({"vm", "create", "race", "--image", "default", "--memory", "128M"});
  json created = Show("race");
  fs::path vm_dir = dir_.path() / "vms" / created["id"].get<std::string>();
  std::vector<std::thread> clients;
  std::atomic<int> accepted{0};
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      http::Client api(daemon_->UnixClient());
      std::mt19937 rng(t + 1);
      for (int i = 0; i < 10; ++i) {
        std::string target;
        std::string method = "POST", body;
        switch (rng() % 5) {
          case 0:
            target = "/v1/vms/race/start";
            break;
          case 1:
            target = "/v1/vms/race/stop";
            break;
          case 2:
            target = "/v1/vms/race/stop?kill=true";
            break;
          case 3:
            method = "PATCH";
            target = "/v1/vms/race";
            body = json{{"memory_mib", 128 + 64 * static_cast<int>(rng() % 3)}}.dump();
            break;
          default:
            method = "GET";
            target = "/v1/vms/race";
            break;
        }
        auto r = api.Request(method, target, body);
        if (r && r->status < 300) ++accepted;
        std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 600));
      }
    });
  }
  for (auto& c : clients) c.join();
  json vm = Show("race");
  for (auto until = std::chrono::steady_clock::now() + 120s;
       (vm["state"] == "starting" || vm["state"] == "stopping") &&
       std::chrono::steady_clock::now() < until;) {
    std::this_thread::sleep_for(200ms);
    vm = Show("race");
  }
  std::this_thread::sleep_for(500ms);
  vm = Show("race");
  std::cerr << accepted.load() << " requests accepted; settled " << vm["state"] << "\n";
  auto processes =
      hv::FindProcesses(Paths(dir_.path()).memory_file(created["id"].get<std::string>()).string());
  if (vm["state"] == "running") {
    ASSERT_EQ(processes.size(), 1u);
    EXPECT_EQ(processes[0].pid, vm["pid"].get<int64_t>());
    auto reply = testing::HttpGetEventually(vm["ip"], 80, "/", 10s);
    EXPECT_TRUE(reply && reply->status == 200);
  } else {
    EXPECT_TRUE(vm["state"] == "stopped" || vm["state"] == "created") << vm.dump();
    EXPECT_TRUE(processes.empty());
    EXPECT_EQ(vm["pid"], nullptr);
  }
  CliOk({"vm", "rm", "race", "--force"});
  EXPECT_TRUE(hv::FindProcesses(vm_dir.string()).empty());
}

}  // namespace
}  // namespace hearth

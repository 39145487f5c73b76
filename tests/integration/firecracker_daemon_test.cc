// hearthd on `--hypervisor firecracker` against the Firecracker API double
// (tests/firecracker_double, which enforces the v1.16.1 spec, opens taps by name like Firecracker
// and journals requests): the lifecycle through hearthd's API with the request order, refusals
// surfacing as hearth errors, a failed load, the wake path's tap release, metering of the metrics
// FIFO, the jailer, and snapshots from another Firecracker or CPU refused. Skipped, with the
// reason, when the double is not built.
#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "http/client.h"
#include "hv/process.h"
#include "support/daemon.h"
#include "support/firecracker_double.h"
#include "support/scope_guard.h"
#include "support/temp_dir.h"
#include "support/vm_env.h"

namespace hearth::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class FirecrackerDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const FcDoublePaths fc = FirecrackerDoublePaths();
    if (!fs::exists(fc.firecracker) || !fs::exists(fc.jailer)) {
      GTEST_SKIP() << "the Firecracker double is not built (" << fc.firecracker
                   << "): build the firecracker_double targets";
    }
    fs::copy_file("/bin/true", dir_ / "vmlinux");  // any ELF: the double boots nothing
    std::ofstream(dir_ / "disk.img") << std::string(1 << 20, '\0');
    setenv("FC_DOUBLE_JOURNAL", (dir_ / "journal").c_str(), 1);
    setenv("FC_DOUBLE_METRICS_INTERVAL_MS", "200", 1);
    setenv("HEARTH_TEST_NO_KVM_CHECK", "1", 1);  // the double needs no KVM
    unsetenv("FC_DOUBLE_FAIL");
  }
  void TearDown() override {
    daemon_.reset();
    for (const char* v : {"FC_DOUBLE_JOURNAL", "FC_DOUBLE_METRICS_INTERVAL_MS",
                          "HEARTH_TEST_NO_KVM_CHECK", "FC_DOUBLE_FAIL"}) {
      unsetenv(v);
    }
  }

  void StartDaemon(std::vector<std::string> extra = {}) {
    if (daemon_) daemon_->KeepHostState();  // a restart of hearthd: taps and VMMs stay
    daemon_.reset();
    std::vector<std::string> args = {
        "--hypervisor",        "firecracker",
        "--firecracker",       FirecrackerDoublePaths().firecracker.string(),
        "--network-pool",      TestNetworkPool(),
        "--metering-interval", "1s"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto d = DaemonProcess::Start(data_.path(), args);
    ASSERT_TRUE(d) << d.error().message;
    daemon_ = std::move(*d);
  }
  RunResult Cli(std::vector<std::string> args) { return HearthCli(*daemon_, std::move(args)); }
  json Show(const std::string& name) { return ShowVm(*daemon_, name); }
  void Create(const std::string& name, std::vector<std::string> flags = {}) {
    std::vector<std::string> args = {"vm",
                                     "create",
                                     name,
                                     "--kernel",
                                     (dir_ / "vmlinux").string(),
                                     "--rootfs",
                                     (dir_ / "disk.img").string(),
                                     "--memory",
                                     "128M"};
    args.insert(args.end(), flags.begin(), flags.end());
    RunResult r = Cli(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  void Expect(const std::vector<std::string>& cli, const std::string& state) {
    RunResult r = Cli(cli);
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_EQ(Show(cli[2]).value("state", ""), state);
  }
  std::vector<std::string> Journal() {
    std::vector<std::string> lines;
    for (const FcJournalEntry& e : ReadFcJournal(dir_ / "journal")) lines.push_back(e.Text());
    return lines;
  }
  // The journal from `from` on, without the double's own GET / polls and metrics flushes.
  std::vector<std::string> Requests(size_t from) {
    std::vector<std::string> out;
    auto all = Journal();
    for (size_t i = from; i < all.size(); ++i) {
      if (all[i].rfind("GET / ", 0) == 0) continue;
      out.push_back(all[i]);
    }
    return out;
  }
  fs::path VmDir(const std::string& name) {
    return data_.path() / "vms" / Show(name).value("id", "");
  }
  double Metric(const std::string& line_start) {
    auto r = http::Client(daemon_->UnixClient()).Request("GET", "/metrics");
    if (!r) return -1;
    size_t at = r->body.find("\n" + line_start + " ");
    return at == std::string::npos ? -1 : std::stod(r->body.substr(at + line_start.size() + 2));
  }

  TempDir dir_, data_;
  std::unique_ptr<DaemonProcess> daemon_;
};

// The lines of `journal` that start with none of `skip`, in order.
std::vector<std::string> Only(const std::vector<std::string>& journal,
                              const std::vector<std::string>& skip) {
  std::vector<std::string> out;
  for (const auto& l : journal) {
    bool drop = false;
    for (const auto& s : skip) drop = drop || l.rfind(s, 0) == 0;
    if (!drop) out.push_back(l);
  }
  return out;
}

TEST_F(FirecrackerDaemonTest, TheWholeLifecycleFollowsTheSpecsOrderAndMetersTheDisk) {
  StartDaemon();
  Create("web");
  Expect({"vm", "start", "web"}, "running");
  // Metering's FlushMetrics (PUT /actions too) starts only once the launch is recorded.
  EXPECT_EQ(Requests(0),
            (std::vector<std::string>{"PUT /logger 204", "PUT /metrics 204", "PUT /boot-source 204",
                                      "PUT /machine-config 204", "PUT /drives/rootfs 204",
                                      "PUT /network-interfaces/eth0 204", "PUT /actions 204"}))
      << "journal:\n"
      << ReadFile(dir_ / "journal");
  fs::path vm_dir = VmDir("web");
  EXPECT_TRUE(fs::exists(vm_dir / "firecracker.socket"));
  EXPECT_NE(ReadFile(vm_dir / "console.log").find("hearth: guest ready"), std::string::npos);

  // Metering sums the metrics FIFO's block deltas (the double: 4096 read, 8192 written a line).
  double read = -1;
  for (auto until = std::chrono::steady_clock::now() + 10s;
       std::chrono::steady_clock::now() < until && read <= 0; std::this_thread::sleep_for(200ms)) {
    read = Metric("hearth_vm_disk_read_bytes_total{vm=\"web\"}");
  }
  ASSERT_GT(read, 0) << "disk reads reached metering";
  EXPECT_EQ(static_cast<int64_t>(read) % 4096, 0);
  double written = Metric("hearth_vm_disk_written_bytes_total{vm=\"web\"}");
  EXPECT_GE(written, read) << "8192 written per 4096 read in every line";

  size_t mark = Journal().size();
  Expect({"vm", "suspend", "web"}, "suspended");
  EXPECT_EQ(Only(Requests(mark), {"PUT /actions 204"}),
            (std::vector<std::string>{"PATCH /vm 204", "PUT /snapshot/create 204"}));
  EXPECT_TRUE(fs::exists(vm_dir / "snapshot" / "state"));
  EXPECT_TRUE(fs::exists(vm_dir / "snapshot" / "manifest.json"));
  EXPECT_GT(fs::file_size(vm_dir / "memory"), 0u) << "guest RAM written by the snapshot";
  json manifest = json::parse(ReadFile(vm_dir / "snapshot" / "manifest.json"));
  EXPECT_EQ(manifest["origin"]["backend"], "firecracker");
  EXPECT_EQ(manifest["origin"]["hypervisor_version"], "Firecracker v1.16.1");
  EXPECT_FALSE(manifest["origin"]["cpu_model"].get<std::string>().empty());

  mark = Journal().size();
  Expect({"vm", "resume", "web"}, "running");
  EXPECT_EQ(Only(Requests(mark), {"PUT /actions 204"}),
            (std::vector<std::string>{"PUT /logger 204", "PUT /metrics 204",
                                      "PUT /snapshot/load 204", "PATCH /vm 204"}));
  EXPECT_FALSE(fs::exists(vm_dir / "snapshot")) << "the snapshot is spent";

  // Suspended and resumed again, through the API with `wait`: each answer is the settled VM.
  for (auto [verb, state] : {std::pair{"suspend", "suspended"}, std::pair{"resume", "running"}}) {
    auto r = http::Client(daemon_->UnixClient())
                 .Request("POST", fmt::format("/v1/vms/web/{}?wait=30s", verb));
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->status, 200) << r->body;
    EXPECT_EQ(json::parse(r->body).value("state", ""), state) << verb;
  }

  mark = Journal().size();
  Expect({"vm", "stop", "web"}, "stopped");
  auto stop = Requests(mark);
  EXPECT_FALSE(stop.empty());
  EXPECT_EQ(Only(stop, {"PUT /actions 204"}), std::vector<std::string>{})
      << "stop is SendCtrlAltDel (and metering's FlushMetrics), and the double exits like a guest "
         "with reboot=k";
  RunResult events = Cli({"vm", "events", "web"});
  EXPECT_EQ(events.out.find("killed"), std::string::npos) << events.out;
  Expect({"vm", "start", "web"}, "running");
  RunResult deleted = Cli({"vm", "rm", "web", "--force"});
  EXPECT_EQ(deleted.exit_code, 0) << deleted.err;
  EXPECT_FALSE(fs::exists(vm_dir));
}

TEST_F(FirecrackerDaemonTest, ARestartedHearthdAdoptsRunningFirecrackers) {
  StartDaemon();
  Create("web");
  Expect({"vm", "start", "web"}, "running");
  int64_t pid = Show("web").value("pid", int64_t{0});
  StartDaemon();  // hearthd restarts; Firecracker runs on
  json vm = Show("web");
  EXPECT_EQ(vm.value("state", ""), "running");
  EXPECT_EQ(vm.value("pid", int64_t{0}), pid) << "the same process, adopted";
  RunResult events = Cli({"vm", "events", "web"});
  EXPECT_NE(events.out.find("adopted"), std::string::npos) << events.out;
  Expect({"vm", "suspend", "web"}, "suspended");
  Expect({"vm", "resume", "web"}, "running");
}

TEST_F(FirecrackerDaemonTest, AFaultMessageBecomesAClearError) {
  setenv("FC_DOUBLE_FAIL", "PUT /boot-source", 1);
  StartDaemon();
  Create("web");
  RunResult r = Cli({"vm", "start", "web"});
  EXPECT_NE(r.exit_code, 0);
  json vm = Show("web");
  EXPECT_EQ(vm.value("state", ""), "failed");
  EXPECT_NE(vm.value("state_reason", "")
                .find("configuring the boot source of vm 'web': Firecracker said: fault injected"),
            std::string::npos)
      << vm.dump();
}

TEST_F(FirecrackerDaemonTest, AFailedLoadLeavesTheVmSuspendedWithItsSnapshot) {
  StartDaemon();
  Create("web");
  Expect({"vm", "start", "web"}, "running");
  Expect({"vm", "suspend", "web"}, "suspended");
  fs::path vm_dir = VmDir("web");
  setenv("FC_DOUBLE_FAIL", "PUT /snapshot/load", 1);
  StartDaemon();  // the Firecracker processes it starts from now on refuse the load
  RunResult r = Cli({"vm", "resume", "web"});
  EXPECT_NE(r.exit_code, 0);
  json vm = Show("web");
  EXPECT_EQ(vm.value("state", ""), "suspended");
  EXPECT_NE(
      vm.value("state_reason", "").find("loading the snapshot of vm 'web': Firecracker said: "),
      std::string::npos)
      << vm.dump();
  EXPECT_TRUE(fs::exists(vm_dir / "snapshot" / "manifest.json"));
  EXPECT_TRUE(hv::FindProcesses(vm_dir.string() + "/").empty()) << "the failed process is gone";
  unsetenv("FC_DOUBLE_FAIL");
  StartDaemon();
  Expect({"vm", "resume", "web"}, "running");
}

// Sends one TCP SYN towards the guest (nothing answers while it sleeps).
void Knock(const std::string& ip) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(80);
  inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  std::this_thread::sleep_for(50ms);
  close(fd);
}

TEST_F(FirecrackerDaemonTest, APacketWakesTheVmAndTheHeldTapIsReleasedBeforeTheLoad) {
  StartDaemon();
  Create("web", {"--wake", "on-packet"});
  Expect({"vm", "start", "web"}, "running");
  Expect({"vm", "suspend", "web"}, "suspended");
  std::string ip = Show("web").value("ip", "");
  ASSERT_FALSE(ip.empty());
  size_t mark = Journal().size();
  // hearthd holds the tap while the VM sleeps; the double opens it by name at the load and would
  // fail with EBUSY if hearthd still held it.
  std::string state;
  for (auto until = std::chrono::steady_clock::now() + 10s;
       std::chrono::steady_clock::now() < until && state != "running";
       std::this_thread::sleep_for(100ms)) {
    if (state != "resuming") Knock(ip);
    state = Show("web").value("state", "");
  }
  ASSERT_EQ(state, "running") << Show("web").dump();
  auto requests = Requests(mark);
  EXPECT_NE(std::find(requests.begin(), requests.end(), "PUT /snapshot/load 204"), requests.end())
      << ReadFile(dir_ / "journal");
  RunResult events = Cli({"vm", "events", "web"});
  EXPECT_NE(events.out.find("woken"), std::string::npos) << events.out;
  // A plain resume of a VM whose tap hearthd holds goes the same way.
  Expect({"vm", "suspend", "web"}, "suspended");
  Expect({"vm", "resume", "web"}, "running");
}

TEST_F(FirecrackerDaemonTest, TheJailerRunsFirecrackerInAChrootThatIsRemovedWithTheVm) {
  TempDir jail;
  fs::permissions(jail.path(), fs::perms(0755));  // the double resolves paths without a chroot
  // The jailed double runs as nobody and still writes the journal.
  fs::permissions(dir_.path(), fs::perms(0755));
  std::ofstream(dir_ / "journal").close();
  fs::permissions(dir_ / "journal", fs::perms(0666));
  // A jailed Firecracker's command line does not name the data dir: end it by its jail path.
  Guard end_jailed([&] {
    daemon_.reset();
    for (const auto& p : hv::FindProcesses(jail.path().string())) hv::SignalProcess(p, SIGKILL);
  });
  StartDaemon({"--jailer", FirecrackerDoublePaths().jailer.string(), "--jailer-uid", "65534",
               "--jailer-gid", "65534", "--jailer-chroot-base", jail.path().string()});
  Create("web");
  Expect({"vm", "start", "web"}, "running");
  std::string id = Show("web").value("id", "");
  fs::path root = jail.path() / "firecracker" / id / "root";
  EXPECT_TRUE(fs::exists(root / "firecracker.socket"));
  EXPECT_TRUE(fs::exists(root / "metrics.fifo"));
  EXPECT_EQ(Requests(0).size(), 7u) << ReadFile(dir_ / "journal");
  Expect({"vm", "suspend", "web"}, "suspended");
  EXPECT_TRUE(fs::exists(VmDir("web") / "snapshot" / "state")) << "moved out of the jail";
  Expect({"vm", "resume", "web"}, "running");
  Expect({"vm", "stop", "web"}, "stopped");
  RunResult deleted = Cli({"vm", "rm", "web"});
  EXPECT_EQ(deleted.exit_code, 0) << deleted.err;
  EXPECT_FALSE(fs::exists(jail.path() / "firecracker" / id)) << "the jail goes with the VM";
}

TEST_F(FirecrackerDaemonTest, ASnapshotFromAnotherFirecrackerOrCpuIsRefusedWithAColdBootOffered) {
  StartDaemon();
  Create("web");
  Expect({"vm", "start", "web"}, "running");
  Expect({"vm", "suspend", "web"}, "suspended");
  fs::path manifest_path = VmDir("web") / "snapshot" / "manifest.json";
  json original = json::parse(ReadFile(manifest_path));
  std::string cpu = original["origin"]["cpu_model"];
  for (auto [field, value, now] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"hypervisor_version", "Firecracker v1.15.0", "Firecracker v1.16.1"},
           {"cpu_model", "AuthenticAMD family 25 model 1 stepping 1 (AMD EPYC 7R13)", cpu}}) {
    json m = original;
    m["origin"][field] = value;
    std::ofstream(manifest_path) << m.dump();
    auto api = http::Client(daemon_->UnixClient()).Request("POST", "/v1/vms/web/resume");
    ASSERT_TRUE(api);
    EXPECT_EQ(json::parse(api->body)["error"].value("code", ""), "failed_precondition")
        << api->body;
    RunResult r = Cli({"vm", "resume", "web"});
    EXPECT_NE(r.exit_code, 0);
    std::string all = r.out + r.err;
    EXPECT_NE(all.find("'" + value + "'"), std::string::npos) << all;
    EXPECT_NE(all.find("'" + now + "'"), std::string::npos) << all;
    EXPECT_NE(all.find("hearth vm start --fresh web"), std::string::npos) << all;
    EXPECT_EQ(Show("web").value("state", ""), "suspended");
  }
  Expect({"vm", "start", "web", "--fresh"}, "running");
}

TEST_F(FirecrackerDaemonTest, AutoPicksQemuWhereKvmCannotBootAGuestEvenWithFirecrackerInPath) {
  unsetenv("HEARTH_TEST_NO_KVM_CHECK");
  std::string path = std::getenv("PATH");
  std::string double_dir = FirecrackerDoublePaths().firecracker.parent_path().string();
  setenv("PATH", (double_dir + ":" + path).c_str(), 1);
  Guard restore([&] { setenv("PATH", path.c_str(), 1); });
  auto d = DaemonProcess::Start(data_.path(), {"--hypervisor", "auto"});
  ASSERT_TRUE(d) << d.error().message;
  auto node = http::Client((*d)->UnixClient()).Request("GET", "/v1/node");
  ASSERT_TRUE(node);
  json info = json::parse(node->body);
  EXPECT_EQ(info["backends"], json::array({"qemu-tcg"})) << node->body;
}

TEST(FirecrackerDaemonConfigTest, FirecrackerThatCannotRunStopsHearthdSayingWhy) {
  TempDir dir;
  RunResult no_binary =
      RunProgram({(BuildDir() / "hearthd").string(), "--data-dir", dir.path().string(), "--listen",
                  "none", "--hypervisor", "firecracker"},
                 {"PATH=/nonexistent:/also-not"});
  EXPECT_NE(no_binary.exit_code, 0);
  EXPECT_NE(no_binary.err.find("--hypervisor firecracker cannot run on this host: no "
                               "`firecracker` binary found: looked in PATH "
                               "(/nonexistent:/also-not)"),
            std::string::npos)
      << no_binary.err;
  EXPECT_NE(no_binary.err.find("--firecracker PATH"), std::string::npos);
  RunResult no_ids =
      RunProgram({(BuildDir() / "hearthd").string(), "--data-dir", dir.path().string(), "--listen",
                  "none", "--hypervisor", "firecracker", "--jailer", "/usr/bin/jailer"});
  EXPECT_EQ(no_ids.exit_code, 2);
  EXPECT_NE(no_ids.err.find("--jailer: '/usr/bin/jailer' needs --jailer-uid and --jailer-gid"),
            std::string::npos)
      << no_ids.err;
}

}  // namespace
}  // namespace hearth::testing

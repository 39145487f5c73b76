// QEMU confined by the real hearthd (README, "Confinement"): each VM's QEMU runs as a user of its
// own with no capabilities, under seccomp, in a cgroup of its own with the expected memory limit;
// the cgroup goes when QEMU exits (suspend, and after a restarted hearthd re-adopted it), and
// suspend, resume and wake keep working.
#include "hv/qemu/qemu_confinement.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "hv/cgroup.h"
#include "hv/vmm_user.h"
#include "support/vm_env.h"
#include "support/vm_fixture.h"

namespace hearth {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;

std::string Read(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The fields of /proc/<pid>/status.
std::map<std::string, std::string> Status(int64_t pid) {
  std::map<std::string, std::string> out;
  std::istringstream in(Read(fmt::format("/proc/{}/status", pid)));
  for (std::string line; std::getline(in, line);) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    auto value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    value.erase(value.find_last_not_of(" \t") + 1);  // "Groups:\t1900000000 "
    out[line.substr(0, colon)] = value;
  }
  return out;
}

bool Eventually(const std::function<bool()>& check, std::chrono::seconds limit) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!check()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(100ms);
  }
  return true;
}

class QemuConfinementTest : public testing::VmFixture {
 protected:
  void SetUp() override {
    if (testing::E2eHypervisor() == "firecracker") GTEST_SKIP() << "QEMU only";
    VmFixture::SetUp();
  }

  // The cgroups hearthd (a child of this test, so in the same cgroups) gives VM `id`.
  hv::CgroupPlan Cgroups(const std::string& id) {
    return hv::PlanVmCgroup(hv::FindOwnCgroupHierarchy(), id,
                            hv::qemu::QemuMemoryLimitBytes(MiB{128}, hv::qemu::Accel::kTcg), 1);
  }

  // Checks that `pid` is confined as VM `id`'s QEMU and returns its uid.
  uint32_t ExpectConfined(int64_t pid, const std::string& id) {
    auto st = Status(pid);
    const uint32_t base = hv::kDefaultVmmIdBase;
    uint32_t uid = static_cast<uint32_t>(std::stoul(st["Uid"]));
    EXPECT_GT(uid, base) << st["Uid"];
    EXPECT_LE(uid, base + 65535u) << st["Uid"];
    EXPECT_EQ(st["Uid"], fmt::format("{0}\t{0}\t{0}\t{0}", uid)) << "real, effective, saved, fs";
    EXPECT_EQ(st["Gid"], fmt::format("{0}\t{0}\t{0}\t{0}", uid));
    EXPECT_EQ(st["Groups"], fmt::format("{}", base)) << "only the shared group";
    EXPECT_EQ(st["CapEff"], "0000000000000000");
    EXPECT_EQ(st["CapPrm"], "0000000000000000");
    EXPECT_EQ(st["Seccomp"], "2") << "QEMU's -sandbox filter";
    EXPECT_EQ(st["NoNewPrivs"], "1");

    // Its files are its own, the VM directory its group's; nobody else's VMM can reach them.
    fs::path vm_dir = dir_.path() / "vms" / id;
    struct stat mem {
    }, dir{};
    EXPECT_EQ(stat((vm_dir / "memory").c_str(), &mem), 0);
    EXPECT_EQ(mem.st_uid, uid);
    EXPECT_EQ(mem.st_mode & 07777, 0600u);
    EXPECT_EQ(stat(vm_dir.c_str(), &dir), 0);
    EXPECT_EQ(dir.st_uid, 0u);
    EXPECT_EQ(dir.st_gid, uid);
    EXPECT_EQ(dir.st_mode & 07777, 0710u);

    hv::CgroupPlan plan = Cgroups(id);
    EXPECT_FALSE(plan.empty()) << "this host has cgroups with memory and cpu";
    std::string cgroups = Read(fmt::format("/proc/{}/cgroup", pid));
    for (const auto& dir : plan.dirs) {
      EXPECT_NE(Read(dir / "cgroup.procs").find(std::to_string(pid)), std::string::npos)
          << dir << " holds QEMU; /proc/" << pid << "/cgroup:\n"
          << cgroups;
    }
    for (const auto& w : plan.writes) {
      if (!fs::exists(w.file)) continue;  // memory.swap.max without swap accounting
      std::string value = Read(w.file);
      EXPECT_EQ(value.substr(0, value.find('\n')), w.value) << w.file;
    }
    return uid;
  }
  // Which of `paths` a process with VM user `uid`'s credentials (as its QEMU has them) can open
  // for reading: what an escaped QEMU could read.
  std::vector<std::string> OpenableAs(uint32_t uid, const std::vector<fs::path>& paths) {
    int pipefd[2];
    EXPECT_EQ(pipe(pipefd), 0);
    pid_t child = fork();
    if (child == 0) {
      gid_t shared = hv::kDefaultVmmIdBase;
      if (setgroups(1, &shared) != 0 || setresgid(uid, uid, uid) != 0 ||
          setresuid(uid, uid, uid) != 0) {
        _exit(2);
      }
      for (size_t i = 0; i < paths.size(); ++i) {
        int fd = open(paths[i].c_str(), O_RDONLY | O_CLOEXEC);
        char opened = fd >= 0 ? 1 : 0;
        if (fd >= 0) close(fd);
        if (write(pipefd[1], &opened, 1) != 1) _exit(3);
      }
      _exit(0);
    }
    close(pipefd[1]);
    std::vector<std::string> openable;
    for (const auto& p : paths) {
      char opened = 0;
      if (read(pipefd[0], &opened, 1) == 1 && opened) openable.push_back(p.string());
    }
    close(pipefd[0]);
    int status = 0;
    waitpid(child, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    return openable;
  }
  bool CgroupsGone(const std::string& id) {
    for (const auto& dir : Cgroups(id).dirs) {
      if (fs::exists(dir)) return false;
    }
    return true;
  }
};

TEST_F(QemuConfinementTest, EachVmsQemuRunsAsItsOwnUserInItsOwnCgroup) {
  json a = CreateAndStart("conf-a");
  json b = CreateAndStart("conf-b");
  ASSERT_TRUE(a["pid"].is_number() && b["pid"].is_number());
  uint32_t uid_a = ExpectConfined(a["pid"], a["id"]);
  uint32_t uid_b = ExpectConfined(b["pid"], b["id"]);
  EXPECT_NE(uid_a, uid_b) << "one VM's QEMU cannot ptrace or open the other's";
  // What an escaped QEMU of VM a could open: its own files, not b's nor hearthd's.
  fs::path vms = dir_.path() / "vms";
  std::string id_a = a["id"], id_b = b["id"];
  for (const fs::path& p :
       {vms / id_b / "memory", dir_.path() / "state.db", dir_.path() / "admin.token"}) {
    ASSERT_TRUE(fs::exists(p)) << p << ": the check below would prove nothing";
  }
  EXPECT_EQ(
      OpenableAs(uid_a, {vms / id_a / "memory", vms / id_a / "console.log", vms / id_b / "memory",
                         vms / id_b / "console.log", dir_.path() / "state.db",
                         dir_.path() / "admin.token", "/etc/shadow"}),
      (std::vector<std::string>{(vms / id_a / "memory").string(),
                                (vms / id_a / "console.log").string()}));
  auto hello = testing::HttpGetEventually(a["ip"], 80, "/", 10s);
  ASSERT_TRUE(hello && hello->status == 200);

  // Suspend: QEMU ends and its cgroups go. Resume: the same user again, in fresh cgroups.
  std::string id = a["id"];
  ASSERT_EQ(Cli({"vm", "suspend", "conf-a"}).exit_code, 0);
  EXPECT_TRUE(Eventually([&] { return CgroupsGone(id); }, 10s));
  ASSERT_EQ(Cli({"vm", "resume", "conf-a"}).exit_code, 0);
  json resumed = Show("conf-a");
  ASSERT_TRUE(resumed["pid"].is_number()) << resumed.dump();
  EXPECT_EQ(ExpectConfined(resumed["pid"], id), uid_a);
  auto again = testing::HttpGetEventually(a["ip"], 80, "/", 10s);
  ASSERT_TRUE(again && again->status == 200);
  EXPECT_EQ(again->body, hello->body);
}

TEST_F(QemuConfinementTest, ARestartedHearthdRemovesTheCgroupOfAnAdoptedQemu) {
  json vm = CreateAndStart("conf-keep");
  int64_t pid = vm["pid"];
  std::string id = vm["id"];
  ExpectConfined(pid, id);
  daemon_->KeepHostState();
  daemon_->Kill();
  StartDaemon();
  json adopted = Show("conf-keep");
  ASSERT_EQ(adopted["pid"], pid) << adopted.dump();
  ASSERT_EQ(Cli({"vm", "stop", "conf-keep", "--kill"}).exit_code, 0);
  EXPECT_TRUE(Eventually([&] { return CgroupsGone(id); }, 10s));
}

}  // namespace
}  // namespace hearth

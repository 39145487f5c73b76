// Crashes and a full disk in the middle of suspend and resume (fault points, common/fault.h):
// whatever is killed at whichever step, the VM ends either running the same guest or suspended
// with a snapshot that restores it. Real hearthd, QEMU and guest.
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "hv/process.h"
#include "support/daemon.h"
#include "support/scope_guard.h"
#include "support/temp_dir.h"
#include "support/vm_env.h"

namespace hearth {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;

class SnapshotFaultTest : public ::testing::Test {
 protected:
  void TearDown() override {
    daemon_.reset();
    testing::CleanUpHost(data_);
  }

  // A hearthd on data_ with HEARTH_FAULT=fault (none if empty); the previous one is stopped
  // gracefully and leaves its VMs running.
  void StartDaemon(const std::string& fault) {
    if (daemon_) {
      daemon_->KeepHostState();
      daemon_.reset();
    }
    if (fault.empty()) {
      unsetenv("HEARTH_FAULT");
    } else {
      setenv("HEARTH_FAULT", fault.c_str(), 1);
    }
    auto d = testing::DaemonProcess::Start(data_, {"--network-pool", testing::TestNetworkPool()});
    unsetenv("HEARTH_FAULT");
    ASSERT_TRUE(d) << d.error().message;
    daemon_ = std::move(*d);
  }

  json Call(const std::string& method, const std::string& target, const std::string& body = "") {
    http::Client api(daemon_->UnixClient());
    auto r = api.Request(method, target, body);
    if (!r) return json{{"error", r.error().message}};
    return json::parse(r->body, nullptr, false);
  }

  // The VM once it is in no transitional state (up to 60 s).
  json Settled(const std::string& name) {
    json vm;
    for (auto until = std::chrono::steady_clock::now() + 60s;
         std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(20ms)) {
      vm = Call("GET", "/v1/vms/" + name);
      std::string state = vm.value("state", "");
      if (state == "running" || state == "suspended" || state == "stopped" || state == "failed") {
        break;
      }
    }
    return vm;
  }

  // Brings the VM to `state` (running or suspended) with plain requests.
  void Reach(const std::string& name, const std::string& state) {
    json vm = Settled(name);
    if (vm.value("state", "") == state) return;
    Call("POST", fmt::format("/v1/vms/{}/{}", name, state == "running" ? "resume" : "suspend"));
    vm = Settled(name);
    ASSERT_EQ(vm.value("state", ""), state) << vm.dump();
  }

  // The guest's boot id over HTTP, resuming the VM first if it is suspended.
  std::string BootId(const std::string& name) {
    Reach(name, "running");
    auto r = testing::HttpGetEventually(Settled(name)["ip"], 80, "/bootid", 20s);
    return r && r->status == 200 ? r->body : "no answer";
  }

  void Create(const std::string& name) {
    Call("POST", "/v1/vms",
         fmt::format(R"({{"name":"{}","image":"default","memory_mib":128}})", name));
    Call("POST", fmt::format("/v1/vms/{}/start", name));
    ASSERT_EQ(Settled(name).value("state", ""), "running");
  }

  testing::TempDir dir_;
  fs::path data_ = dir_.path();
  std::unique_ptr<testing::DaemonProcess> daemon_;
};

TEST_F(SnapshotFaultTest, KillingHearthdOrTheVmmAtAnyStepLeavesTheGuestOrItsSnapshot) {
  testing::LinkDefaultImage(data_);
  StartDaemon("");
  Create("crash");
  std::string boot = BootId("crash");
  ASSERT_NE(boot, "no answer");
  json created = Call("GET", "/v1/vms/crash");
  fs::path vm_dir = data_ / "vms" / created["id"].get<std::string>();

  struct Step {
    std::string fault;   // HEARTH_FAULT
    std::string before;  // the state the step starts from
    std::string expect;  // where the VM must end
  };
  // hearthd exits at the point (and a new one takes over), or the VMM is killed there (":vmm").
  const std::vector<Step> steps = {
      {"suspend-saved", "running", "running"},        // paused, no snapshot yet: runs on
      {"suspend-committed", "running", "suspended"},  // snapshot whole, VMM still there
      {"suspend-ended", "running", "suspended"},      // VMM gone, not yet recorded
      {"resume-restored", "suspended", "suspended"},  // restored but never ran: snapshot kept
      {"resume-running", "suspended", "running"},     // ran on: the new hearthd takes it over
      {"suspend-saved:vmm", "running", "suspended"},  // the state was saved: it is enough
      {"suspend-committed:vmm", "running", "suspended"},
      {"resume-restored:vmm", "suspended", "suspended"},
  };
  for (const Step& step : steps) {
    SCOPED_TRACE(step.fault);
    Reach("crash", step.before);
    StartDaemon(step.fault);
    Call("POST", step.before == "running" ? "/v1/vms/crash/suspend" : "/v1/vms/crash/resume");
    if (step.fault.ends_with(":vmm")) {
      json vm = Settled("crash");
      EXPECT_EQ(vm.value("state", ""), step.expect) << vm.dump();
      StartDaemon("");  // so that the checks below are not faulted too
    } else {
      auto status = daemon_->WaitForExit(30000);
      ASSERT_TRUE(status.has_value()) << "hearthd did not reach " << step.fault;
      EXPECT_EQ(*status, 86);
      StartDaemon("");
      json vm = Settled("crash");
      EXPECT_EQ(vm.value("state", ""), step.expect) << vm.dump();
    }
    EXPECT_FALSE(fs::exists(vm_dir / "snapshot.new")) << "no half-written snapshot is left";
    EXPECT_EQ(BootId("crash"), boot) << "the same guest carries on";
    EXPECT_EQ(hv::FindProcesses((vm_dir / "memory").string()).size(), 1u) << "exactly one VMM";
  }
}

TEST_F(SnapshotFaultTest, AFullDiskFailsTheSuspendWithoutLosingTheGuest) {
  // The data directory on a small tmpfs: room for one VM's 128 MiB RAM file and a little more.
  data_ = dir_.path() / "small";
  fs::create_directories(data_);
  ASSERT_EQ(mount("tmpfs", data_.c_str(), "tmpfs", 0, "size=160m,mode=0700"), 0) << strerror(errno);
  testing::Guard unmount([&] {
    daemon_.reset();
    testing::CleanUpHost(data_);
    umount2(data_.c_str(), MNT_DETACH);
  });
  testing::LinkDefaultImage(data_);
  StartDaemon("");
  Create("full");
  std::string boot = BootId("full");
  ASSERT_NE(boot, "no answer");

  Call("POST", "/v1/vms", R"({"name":"more","image":"default","memory_mib":64})");

  // Fill the filesystem, then give back a little less than the device state needs (~60 KiB).
  fs::path filler = data_ / "filler";
  {
    int fd = open(filler.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    std::string chunk(64 << 10, 'x');
    while (write(fd, chunk.data(), chunk.size()) > 0) {
    }
    close(fd);
  }
  fs::resize_file(filler, fs::file_size(filler) - (32 << 10));

  Call("POST", "/v1/vms/full/suspend");
  json vm = Settled("full");
  EXPECT_EQ(vm.value("state", ""), "running") << vm.dump();
  EXPECT_NE(vm.value("state_reason", "").find("suspend failed"), std::string::npos) << vm.dump();
  std::cerr << "suspend on a full disk: " << vm.value("state_reason", "") << "\n";
  EXPECT_FALSE(fs::exists(data_ / "vms" / vm["id"].get<std::string>() / "snapshot.new"));
  EXPECT_EQ(BootId("full"), boot) << "the guest ran on";

  // A VM whose RAM file does not fit fails to start with the reason, not later with a SIGBUS.
  // (8 MiB free: room for the store's writes, not for 64 MiB of RAM.)
  fs::resize_file(filler, fs::file_size(filler) - (8 << 20));
  json answer = Call("POST", "/v1/vms/more/start");
  EXPECT_EQ(answer.value("state", ""), "starting") << answer.dump();
  json more = Settled("more");
  EXPECT_EQ(more.value("state", ""), "failed") << more.dump();
  EXPECT_NE(more.value("state_reason", "").find("No space left"), std::string::npos) << more.dump();
  std::cerr << "start on a full disk: " << more.value("state_reason", "") << "\n";

  // With room again, the same VM suspends and resumes the same guest.
  fs::remove(filler);
  Call("POST", "/v1/vms/full/suspend");
  EXPECT_EQ(Settled("full").value("state", ""), "suspended");
  EXPECT_EQ(BootId("full"), boot);
}

}  // namespace
}  // namespace hearth

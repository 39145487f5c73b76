// The Firecracker driver's request flows against a fake API (a stand-in process that only sleeps,
// and a transport that records each request and answers like Firecracker): what Launch, SaveState,
// Restore and RequestShutdown send, in which order, with which paths, and how failures end the
// process.
#include <gtest/gtest.h>
#include <unistd.h>

#include <deque>
#include <fstream>
#include <mutex>

#include "hv/firecracker/firecracker_driver.h"
#include "support/temp_dir.h"

namespace hearth::hv::firecracker {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;

// Firecracker's API as far as the driver needs it, shared by every transport the driver makes.
struct FakeApi {
  std::mutex mu;
  std::vector<ApiRequest> requests;           // without the GET / polls
  std::map<std::string, ApiResponse> refuse;  // "PUT /boot-source" -> the answer
  std::function<void(const ApiRequest&)> on_request;

  Result<ApiResponse> Answer(const ApiRequest& r) {
    std::lock_guard lock(mu);
    if (on_request) on_request(r);
    if (r.method == "GET" && r.path == "/") {
      return ApiResponse{200, R"({"app_name":"Firecracker","id":"vm-1","state":"Running",)"
                              R"("vmm_version":"1.16.1"})"};
    }
    requests.push_back(r);
    if (auto it = refuse.find(r.method + " " + r.path); it != refuse.end()) return it->second;
    if (r.path == "/snapshot/create") {
      // Firecracker writes both files.
      json body = json::parse(r.body);
      std::ofstream(body["snapshot_path"].get<std::string>()) << "state";
      std::ofstream(body["mem_file_path"].get<std::string>()) << "ram";
    }
    return ApiResponse{204, ""};
  }
  std::vector<std::string> Routes() {
    std::lock_guard lock(mu);
    std::vector<std::string> out;
    for (const auto& r : requests) out.push_back(r.method + " " + r.path);
    return out;
  }
  json Body(const std::string& route) {
    std::lock_guard lock(mu);
    for (const auto& r : requests) {
      if (r.method + " " + r.path == route) return json::parse(r.body);
    }
    return nullptr;
  }
};

class FakeApiTransport final : public ApiTransport {
 public:
  explicit FakeApiTransport(FakeApi* api) : api_(api) {}
  Result<ApiResponse> Send(const ApiRequest& r, std::chrono::milliseconds) override {
    return api_->Answer(r);
  }

 private:
  FakeApi* api_;
};

class FirecrackerFlowTest : public ::testing::Test {
 protected:
  FirecrackerFlowTest() {
    // A "firecracker" that takes any arguments, keeps them in its command line (where hearth
    // looks for a VM's processes) and stays until killed.
    fs::path binary = dir_ / "firecracker";
    std::ofstream(binary) << "#!/bin/bash\nexec -a \"firecracker $*\" sleep 60\n";
    fs::permissions(binary, fs::perms::owner_all);
    std::ofstream(dir_ / "vmlinux") << "kernel";
    FirecrackerDriverOptions o;
    o.binary = binary;
    o.transport = [this](const fs::path&) { return std::make_unique<FakeApiTransport>(&api_); };
    driver_ = std::make_unique<FirecrackerDriver>(o);
    spec_.vm_id = "vm-1";
    spec_.name = "web";
    spec_.memory = MiB{128};
    spec_.kernel = (dir_ / "vmlinux").string();
    spec_.cmdline = "console=ttyS0 hearth.name=web";
    spec_.tap = "hth000000000001";
    spec_.mac = "52:54:ac:1e:00:02";
    UseLayout(spec_, Paths(dir_ / "data"), spec_.vm_id);
  }
  ~FirecrackerFlowTest() override {
    for (const auto& p : processes_) {
      driver_->Kill(p);
      WaitForExit(p, 2s);
    }
  }
  ProcessId Launched() {
    auto p = driver_->Launch(spec_);
    EXPECT_TRUE(p) << p.error().message;
    if (p) processes_.push_back(*p);
    return p ? *p : ProcessId{};
  }

  testing::TempDir dir_;
  FakeApi api_;
  std::unique_ptr<FirecrackerDriver> driver_;
  MachineSpec spec_;
  std::vector<ProcessId> processes_;
};

TEST_F(FirecrackerFlowTest, LaunchConfiguresInTheSpecsOrderWithTheVmsFiles) {
  bool released = false;
  spec_.release_tap = [&] { released = true; };
  api_.on_request = [&](const ApiRequest& r) {
    if (r.path == "/network-interfaces/eth0") {
      EXPECT_TRUE(released) << "the tap is free first";
    }
  };
  ProcessId p = Launched();
  EXPECT_TRUE(IsAlive(p));
  EXPECT_EQ(api_.Routes(),
            (std::vector<std::string>{"PUT /logger", "PUT /metrics", "PUT /boot-source",
                                      "PUT /machine-config", "PUT /network-interfaces/eth0",
                                      "PUT /actions"}));
  EXPECT_EQ(api_.Body("PUT /logger")["log_path"], (spec_.vm_dir / "firecracker.log").string());
  EXPECT_EQ(api_.Body("PUT /metrics")["metrics_path"], (spec_.vm_dir / "metrics.fifo").string());
  EXPECT_EQ(api_.Body("PUT /boot-source")["boot_args"],
            "console=ttyS0 hearth.name=web reboot=k panic=1 pci=off i8042.noaux i8042.nomux "
            "i8042.dumbkbd");
  EXPECT_TRUE(fs::exists(spec_.vm_dir / "firecracker.log"));
  EXPECT_NE(std::ifstream(spec_.console_log).peek(), EOF) << "the launch marker is written";
  EXPECT_TRUE(driver_->RequestShutdown(spec_, p));
  EXPECT_EQ(api_.Body("PUT /actions"), (json{{"action_type", "InstanceStart"}}));
  EXPECT_EQ(api_.Routes().back(), "PUT /actions");
}

TEST_F(FirecrackerFlowTest, ARefusedConfigurationEndsTheProcessAndSaysWhatFirecrackerSaid) {
  api_.refuse["PUT /machine-config"] =
      ApiResponse{400, R"({"fault_message":"The memory size (MiB) is invalid."})"};
  auto p = driver_->Launch(spec_);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, Code::kFailedPrecondition);
  EXPECT_NE(p.error().message.find("configuring the machine of vm 'web': Firecracker said: The "
                                   "memory size (MiB) is invalid."),
            std::string::npos)
      << p.error().message;
  EXPECT_EQ(api_.Routes().back(), "PUT /machine-config") << "nothing after the refusal";
}

TEST_F(FirecrackerFlowTest, SnapshotsGoToNewFilesAndRestoreLoadsThemAfterReleasingTheTap) {
  ProcessId p = Launched();
  fs::path dir = spec_.vm_dir / "snapshot.new";
  fs::create_directories(dir);
  // The RAM file the running (restored) guest maps must not be written: a new inode replaces it.
  std::ofstream(spec_.memory_file) << "old ram";
  std::ifstream old_ram(spec_.memory_file);
  auto memory = driver_->SaveState(spec_, p, dir);
  ASSERT_TRUE(memory) << memory.error().message;
  EXPECT_EQ(*memory, spec_.memory_file);
  auto routes = api_.Routes();
  std::vector<std::string> tail(routes.end() - 3, routes.end());
  EXPECT_EQ(tail, (std::vector<std::string>{"PATCH /vm", "PUT /snapshot/create", "PUT /actions"}))
      << "pause, create, then a metrics flush for the latency";
  EXPECT_EQ(api_.Body("PATCH /vm"), (json{{"state", "Paused"}}));
  EXPECT_EQ(api_.Body("PUT /snapshot/create")["snapshot_type"], "Full");
  std::string old_content;
  std::getline(old_ram, old_content);
  EXPECT_EQ(old_content, "old ram") << "the old inode is untouched";
  EXPECT_TRUE(fs::exists(dir / "state"));
  std::ifstream new_ram(spec_.memory_file);
  std::string ram;
  std::getline(new_ram, ram);
  EXPECT_EQ(ram, "ram");
  driver_->Kill(p);
  WaitForExit(p, 2s);

  api_.requests.clear();
  int releases = 0;
  spec_.release_tap = [&] { ++releases; };
  api_.on_request = [&](const ApiRequest& r) {
    if (r.path == "/snapshot/load") {
      EXPECT_EQ(releases, 1) << "released right before the load";
    }
    if (r.path == "/logger") {
      EXPECT_EQ(releases, 0) << "not earlier than needed";
    }
  };
  bool before_running_called = false;
  auto restored = driver_->Restore(spec_, dir, [&](const ProcessId& q) {
    before_running_called = true;
    EXPECT_EQ(api_.Routes().back(), "PUT /snapshot/load") << "the guest is still paused";
    return Ok();
  });
  ASSERT_TRUE(restored) << restored.error().message;
  processes_.push_back(*restored);
  EXPECT_TRUE(before_running_called);
  EXPECT_EQ(api_.Routes(), (std::vector<std::string>{"PUT /logger", "PUT /metrics",
                                                     "PUT /snapshot/load", "PATCH /vm"}));
  json load = api_.Body("PUT /snapshot/load");
  EXPECT_EQ(load["snapshot_path"], (dir / "state").string());
  EXPECT_EQ(load["mem_backend"]["backend_path"], spec_.memory_file.string());
  EXPECT_EQ(load["network_overrides"][0]["host_dev_name"], spec_.tap);
  EXPECT_EQ(api_.Body("PATCH /vm"), (json{{"state", "Resumed"}}));
}

TEST_F(FirecrackerFlowTest, AFailedLoadEndsTheProcessWithTheFaultMessage) {
  fs::path dir = dir_ / "snap";
  fs::create_directories(dir);
  std::ofstream(dir / "state") << "state";
  fs::create_directories(spec_.vm_dir);
  std::ofstream(spec_.memory_file) << "ram";
  api_.refuse["PUT /snapshot/load"] = ApiResponse{
      400, R"({"fault_message":"Load snapshot error: Failed to restore from the snapshot."})"};
  bool ran = false;
  auto r = driver_->Restore(spec_, dir, [&](const ProcessId&) {
    ran = true;
    return Ok();
  });
  ASSERT_FALSE(r);
  EXPECT_FALSE(ran);
  EXPECT_NE(r.error().message.find("loading the snapshot of vm 'web': Firecracker said: Load "
                                   "snapshot error"),
            std::string::npos)
      << r.error().message;
  EXPECT_TRUE(hv::FindProcesses(spec_.vm_dir.string() + "/").empty())
      << "the process that failed the load is gone";
}

}  // namespace
}  // namespace hearth::hv::firecracker

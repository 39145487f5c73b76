// The fixture of e2e tests that drive real VMs through hearthd and the CLI: a data dir with the
// default image, a hearthd on a network pool of this test process's own, and helpers that run
// the `hearth` CLI against it. TearDown removes every process, tap and rule the daemon left.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "support/daemon.h"
#include "support/temp_dir.h"
#include "support/vm_env.h"

namespace hearth::testing {

class VmFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    // HEARTH_E2E_HYPERVISOR=firecracker runs the same tests on Firecracker where it can run.
    if (E2eHypervisor() == "firecracker") {
      if (std::string why = FirecrackerUnavailable(); !why.empty()) GTEST_SKIP() << why;
      daemon_args_.insert(daemon_args_.end(), {"--hypervisor", "firecracker"});
      if (const char* fc = std::getenv("HEARTH_E2E_FIRECRACKER")) {
        daemon_args_.insert(daemon_args_.end(), {"--firecracker", fc});
      }
    }
    LinkDefaultImage(dir_.path());
    StartDaemon();
  }
  void TearDown() override {
    daemon_.reset();
    CleanUpHost(dir_.path());
  }

  void StartDaemon() {
    std::vector<std::string> args = {"--network-pool", TestNetworkPool()};
    args.insert(args.end(), daemon_args_.begin(), daemon_args_.end());
    auto d = DaemonProcess::Start(dir_.path(), args);
    ASSERT_TRUE(d) << d.error().message;
    daemon_ = std::move(*d);
  }

  // Runs `hearth ARGS...` against the daemon.
  RunResult Cli(std::vector<std::string> args) { return HearthCli(*daemon_, std::move(args)); }
  // The VM as the API shows it (`hearth vm show NAME -o json`).
  nlohmann::json Show(const std::string& name) { return ShowVm(*daemon_, name); }
  // Creates a 128 MiB default-image VM with `flags`, starts it (the CLI waits until it runs) and
  // returns it as the API shows it.
  nlohmann::json CreateAndStart(const std::string& name, std::vector<std::string> flags = {}) {
    std::vector<std::string> create = {"vm",      "create",   name,  "--image",
                                       "default", "--memory", "128M"};
    create.insert(create.end(), flags.begin(), flags.end());
    RunResult created = Cli(create);
    EXPECT_EQ(created.exit_code, 0) << created.err;
    RunResult started = Cli({"vm", "start", name});
    EXPECT_EQ(started.exit_code, 0) << started.err;
    nlohmann::json vm = Show(name);
    EXPECT_EQ(vm.value("state", ""), "running") << vm.dump();
    return vm;
  }

  TempDir dir_;
  std::vector<std::string> daemon_args_;  // more hearthd flags (set before SetUp)
  std::unique_ptr<DaemonProcess> daemon_;
};

}  // namespace hearth::testing

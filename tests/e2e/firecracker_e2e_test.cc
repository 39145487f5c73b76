// Real Firecracker, where it can run: a `firecracker` binary (PATH or HEARTH_E2E_FIRECRACKER) and
// KVM that boots a guest. Then a VM's whole life runs on it — start, HTTP, suspend, a wake by a
// packet to the same guest, stop. Elsewhere (as on a host without working KVM) the test is skipped
// with the reason. HEARTH_E2E_HYPERVISOR=firecracker runs every VM e2e test on Firecracker.
#include <gtest/gtest.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "support/vm_env.h"
#include "support/vm_fixture.h"

namespace hearth {
namespace {

using namespace std::chrono_literals;
using testing::RunResult;

class FirecrackerE2eTest : public testing::VmFixture {
 protected:
  void SetUp() override {
    if (std::string why = testing::FirecrackerUnavailable(); !why.empty()) {
      std::cerr << why << "\n";
      GTEST_SKIP() << why;
    }
    if (testing::E2eHypervisor() != "firecracker") {
      daemon_args_.insert(daemon_args_.end(), {"--hypervisor", "firecracker"});
      if (const char* fc = std::getenv("HEARTH_E2E_FIRECRACKER")) {
        daemon_args_.insert(daemon_args_.end(), {"--firecracker", fc});
      }
    }
    VmFixture::SetUp();
  }
};

TEST_F(FirecrackerE2eTest, AVmLivesSleepsAndWakesOnFirecracker) {
  nlohmann::json vm = CreateAndStart("fc", {"--wake", "on-packet"});
  EXPECT_EQ(vm.value("backend", ""), "firecracker");
  std::string ip = vm["ip"];
  auto boot = testing::HttpGetEventually(ip, 80, "/bootid", 30s);
  ASSERT_TRUE(boot && boot->status == 200);
  RunResult suspended = Cli({"vm", "suspend", "fc"});
  ASSERT_EQ(suspended.exit_code, 0) << suspended.err;
  auto woken = testing::HttpGet(ip, 80, "/bootid", 10s);
  ASSERT_TRUE(woken && woken->status == 200) << "a packet wakes the VM and reaches the guest";
  EXPECT_EQ(woken->body, boot->body) << "the same guest, resumed";
  EXPECT_EQ(Show("fc").value("state", ""), "running");
  RunResult stopped = Cli({"vm", "stop", "fc"});
  EXPECT_EQ(stopped.exit_code, 0) << stopped.err;
}

}  // namespace
}  // namespace hearth

// The driver contract (support/driver_contract.h) against the Firecracker driver running the
// Firecracker test double, which enforces the v1.16.1 API spec (tests/firecracker_double).
#include <unistd.h>

#include <fstream>

#include "common/paths.h"
#include "hv/firecracker/firecracker_driver.h"
#include "support/driver_contract.h"
#include "support/firecracker_double.h"
#include "support/temp_dir.h"

namespace hearth::testing {
namespace {

std::unique_ptr<DriverUnderTest> MakeFirecracker() {
  auto dir = std::make_shared<TempDir>();
  std::ofstream(dir->path() / "vmlinux") << "kernel";
  hv::firecracker::FirecrackerDriverOptions options;
  options.binary = FirecrackerDoublePaths().firecracker;
  auto dut = std::make_unique<DriverUnderTest>();
  dut->driver = std::make_shared<hv::firecracker::FirecrackerDriver>(options);
  dut->keep = dir;
  dut->spec = [dir](const std::string& name) {
    hv::MachineSpec spec;
    spec.vm_id = "vm-" + name + "-" + std::to_string(::getpid());
    spec.name = name;
    spec.vcpus = 1;
    spec.memory = MiB{128};
    spec.kernel = (dir->path() / "vmlinux").string();
    spec.cmdline = "console=ttyS0 hearth.name=" + name;
    hv::UseLayout(spec, Paths(dir->path() / "data"), spec.vm_id);
    return spec;
  };
  dut->no_identity_why =
      "the Firecracker double runs no guest: its snapshot holds the VM's configuration only";
  dut->boot_limit = std::chrono::seconds(10);
  dut->stop_limit = std::chrono::seconds(10);
  return dut;
}

INSTANTIATE_TEST_SUITE_P(FirecrackerDouble, DriverContract,
                         ::testing::Values(DriverContractParam{"FirecrackerDouble",
                                                               MakeFirecracker}),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace hearth::testing

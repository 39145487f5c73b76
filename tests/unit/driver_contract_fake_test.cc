// The driver contract (support/driver_contract.h) against the fake driver the node tests use, so
// that what the node is tested against behaves like the real drivers.
#include <unistd.h>

#include "fakes/fake_machinery.h"
#include "support/driver_contract.h"
#include "support/temp_dir.h"

namespace hearth::testing {
namespace {

std::unique_ptr<DriverUnderTest> MakeFake() {
  auto dir = std::make_shared<TempDir>();
  auto dut = std::make_unique<DriverUnderTest>();
  dut->driver = std::make_shared<FakeDriver>();
  dut->keep = dir;
  dut->spec = [dir](const std::string& name) {
    hv::MachineSpec spec;
    spec.vm_id = "vm-" + name + "-" + std::to_string(::getpid());
    spec.name = name;
    spec.vcpus = 1;
    spec.memory = MiB{64};
    spec.vm_dir = dir->path() / "vms" / spec.vm_id;
    spec.console_log = spec.vm_dir / "console.log";
    spec.vmm_log = spec.vm_dir / "vmm.log";
    spec.memory_file = spec.vm_dir / "memory";
    spec.qmp_socket = spec.vm_dir / "qmp.sock";
    spec.agent_pipe = spec.vm_dir / "agent";
    std::filesystem::create_directories(spec.vm_dir);
    return spec;
  };
  dut->no_identity_why = "the fake's guest is a sleep with no state of its own to compare";
  dut->known_gaps["launch without memory is invalid_argument"] =
      "the node tests launch the fake's bare VMMs (leftovers) from identity-only specs with no "
      "memory (NodeLifecycleTest.RecoveryRemovesLeftoversThatNoVmOwns)";
  dut->boot_limit = std::chrono::seconds(5);
  dut->stop_limit = std::chrono::seconds(5);
  return dut;
}

INSTANTIATE_TEST_SUITE_P(Fake, DriverContract,
                         ::testing::Values(DriverContractParam{"Fake", MakeFake}),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace hearth::testing

// The driver contract (support/driver_contract.h) against the QEMU driver with a real QEMU (TCG)
// and the default image. The guest's identity is its boot id over HTTP on its tap, so a save and
// restore is seen to resume the same boot.
#include <fmt/format.h>
#include <unistd.h>

#include "common/paths.h"
#include "hv/qemu/qemu_driver.h"
#include "model/host.h"
#include "net/linux_network.h"
#include "net/tap.h"
#include "node/machine.h"
#include "support/driver_contract.h"
#include "support/temp_dir.h"
#include "support/vm_env.h"

namespace hearth::testing {
namespace {

using namespace std::chrono_literals;

// The data directory, the network and the tap one test's VMs share (one VM at a time).
struct QemuWorld {
  TempDir dir;
  std::optional<net::AddressPool> pool;
  std::unique_ptr<net::Network> network;
  std::string tap;
  ~QemuWorld() {
    CleanUpHost(dir.path());
    if (network && !tap.empty()) network->RemoveTap(tap);
  }
};

std::unique_ptr<DriverUnderTest> MakeQemu() {
  auto world = std::make_shared<QemuWorld>();
  LinkDefaultImage(world->dir.path());
  auto pool = net::AddressPool::Parse(TestNetworkPool());
  EXPECT_TRUE(pool);
  if (!pool) return nullptr;
  world->pool = std::move(*pool);
  world->network = net::NewLinuxNetwork(net::NetworkOptions::ForDataDir(world->dir.path()));
  VmRecord vm;
  vm.name = "contract";
  // The tap's name is made of the id's first 12 digits: the pid goes there, so that the suite's
  // tests, each its own process, may run side by side.
  vm.id = fmt::format("vm-6c{:010x}0000", getpid());
  vm.spec.image = "default";
  vm.spec.memory = MiB{128};
  vm.ip = world->pool->Allocate({})->guest;
  auto host = ReadLinuxHostInfo();
  EXPECT_TRUE(host);
  if (!host) return nullptr;
  auto paths = std::make_shared<Paths>(world->dir.path());
  node::MachineContext ctx{paths.get(), &*world->pool, host->tsc_khz};
  auto machine = node::MachineFor(vm, ctx);
  EXPECT_TRUE(machine) << machine.error().message;
  if (!machine) return nullptr;
  auto address = world->pool->FromGuest(vm.ip);
  auto tap = world->network->EnsureTap({machine->tap, *address, machine->mac});
  EXPECT_TRUE(tap) << tap.error().message;
  world->tap = machine->tap;

  hv::qemu::QemuDriverOptions options;
  options.accel = [] { return hv::qemu::AccelChoice{hv::qemu::Accel::kTcg, "test"}; };
  auto dut = std::make_unique<DriverUnderTest>();
  dut->driver = std::make_shared<hv::qemu::QemuDriver>(options);
  dut->keep = world;
  hv::MachineSpec base = *machine;
  dut->spec = [base, paths](const std::string& name) {
    hv::MachineSpec spec = base;  // the same VM's files: its VMMs never run at the same time
    spec.name = name;
    return spec;
  };
  std::string ip = vm.ip;
  dut->guest_identity = [ip](const hv::MachineSpec&) -> Result<std::string> {
    auto reply = HttpGetEventually(ip, 80, "/bootid", 10s);
    if (!reply || reply->status != 200) {
      return Fail(Code::kUnavailable, fmt::format("no boot id from {}", ip));
    }
    return reply->body;
  };
  dut->boot_limit = 60s;
  dut->stop_limit = 30s;
  return dut;
}

INSTANTIATE_TEST_SUITE_P(QemuTcg, DriverContract,
                         ::testing::Values(DriverContractParam{"QemuTcg", MakeQemu}),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace hearth::testing

// Groundwork for "sleep", at the driver level: a running default-image guest is paused, its device
// state saved (RAM stays in the shared memory file) and QEMU ended; a new QEMU restores it and the
// guest carries on in the same boot, answering HTTP on its tap.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>

#include "common/paths.h"
#include "hv/qemu/qemu_driver.h"
#include "model/host.h"
#include "net/linux_network.h"
#include "net/tap.h"
#include "node/machine.h"
#include "support/scope_guard.h"
#include "support/temp_dir.h"
#include "support/vm_env.h"

namespace hearth {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

TEST(QemuSnapshotTest, SavedGuestResumesInTheSameBoot) {
  testing::TempDir dir;
  testing::LinkDefaultImage(dir.path());
  Paths paths(dir.path());
  auto pool = net::AddressPool::Parse(testing::TestNetworkPool());
  ASSERT_TRUE(pool);
  VmRecord vm;
  vm.name = "snap";
  vm.id = fmt::format("vm-{:016x}", 0x5a5a000000000000ull + getpid());
  vm.spec.image = "default";
  vm.spec.memory = MiB{128};
  vm.ip = pool->Allocate({})->guest;
  auto host = ReadLinuxHostInfo();
  ASSERT_TRUE(host);
  node::MachineContext ctx{&paths, &*pool, host->tsc_khz};
  auto machine = node::MachineFor(vm, ctx);
  ASSERT_TRUE(machine) << machine.error().message;

  auto network = net::NewLinuxNetwork(net::NetworkOptions::ForDataDir(dir.path()));
  auto address = pool->FromGuest(vm.ip);
  ASSERT_TRUE(network->EnsureTap({machine->tap, *address, machine->mac}));
  testing::Guard cleanup([&] {
    testing::CleanUpHost(dir.path());
    network->RemoveTap(machine->tap);
  });

  hv::qemu::QemuDriverOptions options;
  options.accel = [] { return hv::qemu::AccelChoice{hv::qemu::Accel::kTcg, "test"}; };
  hv::qemu::QemuDriver driver(options);
  auto process = driver.Launch(*machine);
  ASSERT_TRUE(process) << process.error().message;
  hv::CancelFlag never{false};
  ASSERT_TRUE(driver.WaitReady(*machine, *process, Clock::now() + 60s, never));
  auto boot_id = testing::HttpGetEventually(vm.ip, 80, "/bootid", 10s);
  ASSERT_TRUE(boot_id && boot_id->status == 200);

  // A save that the node abandons (say the manifest could not be written): the guest runs on.
  fs::path snapshot = dir.path() / "snapshot-test";
  fs::create_directories(snapshot);
  auto memory = driver.SaveState(*machine, *process, snapshot);
  ASSERT_TRUE(memory) << memory.error().message;
  EXPECT_EQ(*memory, machine->memory_file) << "RAM stays in the shared memory file";
  auto continued = driver.Continue(*machine, *process);
  ASSERT_TRUE(continued) << continued.error().message;
  auto same = testing::HttpGetEventually(vm.ip, 80, "/bootid", 10s);
  ASSERT_TRUE(same && same->status == 200);
  EXPECT_EQ(same->body, boot_id->body);

  fs::remove_all(snapshot);
  fs::create_directories(snapshot);
  auto t0 = Clock::now();
  memory = driver.SaveState(*machine, *process, snapshot);
  ASSERT_TRUE(memory) << memory.error().message;
  double save_ms = Ms(Clock::now() - t0);
  EXPECT_TRUE(hv::IsAlive(*process)) << "the node ends the VMM once the snapshot is complete";
  ASSERT_TRUE(driver.Kill(*process));
  hv::WaitForExit(*process, 5s);
  fs::path state = snapshot / hv::qemu::kStateFile;
  ASSERT_TRUE(fs::exists(state));
  auto state_bytes = fs::file_size(state);

  t0 = Clock::now();
  // While the node is asked, the guest is loaded but paused: it does not answer yet.
  bool answered_while_paused = true;
  Clock::duration asking{};  // not part of the restore
  auto restored = driver.Restore(*machine, snapshot, [&](const hv::ProcessId& p) -> Status {
    auto t = Clock::now();
    answered_while_paused = testing::HttpGet(vm.ip, 80, "/bootid", 300ms).has_value();
    asking = Clock::now() - t;
    return Ok();
  });
  ASSERT_TRUE(restored) << restored.error().message;
  testing::Guard end_restored([&] {
    hv::SignalProcess(*restored, SIGKILL);
    hv::WaitForExit(*restored, 2s);
  });
  EXPECT_FALSE(answered_while_paused);
  double running_ms = Ms(Clock::now() - t0 - asking);
  auto again = testing::HttpGetEventually(vm.ip, 80, "/bootid", 10s);
  double http_ms = Ms(Clock::now() - t0 - asking);
  ASSERT_TRUE(again && again->status == 200);
  EXPECT_EQ(again->body, boot_id->body) << "the same boot carries on";
  EXPECT_TRUE(driver.SyncClock(*machine, *restored));
  auto version = driver.Version();
  ASSERT_TRUE(version) << version.error().message;
  EXPECT_NE(version->find("QEMU"), std::string::npos) << *version;
  std::cerr << fmt::format(
      "save {:.0f} ms ({} bytes of device state); restore -> running {:.0f} ms, -> first HTTP "
      "{:.0f} ms; {}\n",
      save_ms, state_bytes, running_ms, http_ms, *version);
}

}  // namespace
}  // namespace hearth

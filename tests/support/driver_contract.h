// The contract every hypervisor driver keeps (src/hv/driver.h), as one value-parameterised suite
// run against each driver: the fake (unit), Firecracker with its spec-enforcing double
// (integration) and QEMU under TCG (e2e). A test file includes this header once and instantiates
// the suite with a factory:
//
//   INSTANTIATE_TEST_SUITE_P(Fake, DriverContract, ::testing::Values(DriverContractParam{...}));
//
// Each test is one ctest process, so the clauses that need a running guest share one boot in
// RunsSavesRestoresAndStopsAGuest. A clause a driver cannot show (e.g. a guest identity the
// double has none of) is reported with ContractClauseSkipped, never passed silently.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/result.h"
#include "hv/driver.h"
#include "hv/process.h"

namespace hearth::testing {

struct DriverUnderTest {
  std::shared_ptr<hv::HypervisorDriver> driver;
  // A VM that boots to the ready marker, its runtime files in a directory of their own (`name`
  // tells the VMs of one test apart; they never run at the same time).
  std::function<hv::MachineSpec(const std::string& name)> spec;
  // What tells one running guest from another (the default image's boot id); empty when the
  // driver's guests have nothing to observe, which the same-guest clauses then report.
  std::function<Result<std::string>(const hv::MachineSpec&)> guest_identity;
  std::string no_identity_why;
  // Clauses this driver is known not to keep, by the name ContractClause checks, with why; each
  // is reported when a test reaches it, and its check is not run.
  std::map<std::string, std::string> known_gaps;
  std::chrono::seconds boot_limit{10};
  std::chrono::seconds stop_limit{10};  // a graceful stop, from RequestShutdown to exit
  std::shared_ptr<void> keep;           // what the driver's VMs need (directories, a tap)
};

struct DriverContractParam {
  std::string name;
  std::function<std::unique_ptr<DriverUnderTest>()> make;
};

inline std::string PrintToString(const DriverContractParam& p) { return p.name; }

// Prints (and records as a test property) that `clause` was not checked on this driver, and why.
inline void ContractClauseSkipped(const std::string& clause, const std::string& why) {
  std::cerr << "[ CLAUSE SKIPPED ] " << clause << ": " << why << "\n";
  ::testing::Test::RecordProperty("skipped_clause", clause + ": " + why);
}

// A live process that is nobody's VMM (a sleep), for the adoption clauses.
inline Result<hv::ProcessId> ForeignProcess() {
  return hv::Spawn({"sleep", "60"}, hv::SpawnOptions{});
}

// A fresh, empty directory beside the VM's directory, for a snapshot.
inline std::filesystem::path SnapshotDir(const hv::MachineSpec& spec, const std::string& name) {
  std::filesystem::path dir = spec.vm_dir.parent_path() / (spec.vm_id + "-snapshot-" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

class DriverContract : public ::testing::TestWithParam<DriverContractParam> {
 protected:
  void SetUp() override {
    dut_ = GetParam().make();
    if (::testing::Test::IsSkipped()) return;
    ASSERT_TRUE(dut_ && dut_->driver);
  }
  hv::HypervisorDriver& driver() { return *dut_->driver; }
  std::chrono::steady_clock::time_point Deadline(std::chrono::seconds limit) {
    return std::chrono::steady_clock::now() + limit;
  }
  // Ends `process` if it still runs and tells the driver, as the node's supervisor would.
  void End(const hv::ProcessId& process) {
    driver().Kill(process);
    hv::WaitForExit(process, std::chrono::seconds(5));
    driver().Exited(process);
  }
  // The guest's identity, or "" when the driver has none (then `clause`, unless empty, is
  // reported as skipped).
  std::string Identity(const hv::MachineSpec& spec, const std::string& clause) {
    if (!dut_->guest_identity) {
      if (!clause.empty()) ContractClauseSkipped(clause, dut_->no_identity_why);
      return "";
    }
    auto id = dut_->guest_identity(spec);
    EXPECT_TRUE(id) << id.error().message;
    if (!id) return "";
    EXPECT_FALSE(id->empty());
    return *id;
  }

  // Whether `clause` is to be checked: false (and reported) when it is a known gap.
  bool ContractClause(const std::string& clause) {
    auto gap = dut_->known_gaps.find(clause);
    if (gap == dut_->known_gaps.end()) return true;
    ContractClauseSkipped(clause, gap->second);
    return false;
  }

  std::unique_ptr<DriverUnderTest> dut_;
  hv::CancelFlag never_{false};
};

// Clause: Backend() names the backend and Peek() agrees once it is decided; Version() is the
// hypervisor's version, the same on every call.
TEST_P(DriverContract, NamesItsBackendAndVersion) {
  std::string backend = driver().Backend();
  EXPECT_FALSE(backend.empty());
  EXPECT_EQ(driver().Peek().backend, backend);
  auto version = driver().Version();
  ASSERT_TRUE(version) << version.error().message;
  EXPECT_FALSE(version->empty());
  auto again = driver().Version();
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(*again, *version);
}

// Clause: a spec no VMM can run (no vCPU, no memory) is an invalid_argument error and leaves no
// VMM; Restore from a directory without a snapshot fails without calling before_running.
TEST_P(DriverContract, RefusesBadInput) {
  using Break = void (*)(hv::MachineSpec&);
  std::vector<std::pair<std::string, Break>> cases = {
      {"launch without a vCPU is invalid_argument", [](hv::MachineSpec& s) { s.vcpus = 0; }},
      {"launch without memory is invalid_argument", [](hv::MachineSpec& s) { s.memory = MiB{0}; }},
  };
  for (const auto& [clause, broken] : cases) {
    if (!ContractClause(clause)) continue;
    hv::MachineSpec spec = dut_->spec("bad");
    broken(spec);
    auto process = driver().Launch(spec);
    if (process) End(*process);
    ASSERT_FALSE(process) << "launched vcpus=" << spec.vcpus << " memory=" << spec.memory.value;
    EXPECT_EQ(process.error().code, Code::kInvalidArgument) << process.error().message;
  }
  hv::MachineSpec spec = dut_->spec("nosnap");
  bool called = false;
  auto restored = driver().Restore(spec, SnapshotDir(spec, "empty"), [&](const hv::ProcessId&) {
    called = true;
    return Status{};
  });
  if (restored) End(*restored);
  EXPECT_FALSE(restored) << "restored from an empty directory";
  EXPECT_FALSE(called);
}

// Clause: Adopt accepts only a live process that is this VM's VMM; Kill of a process that has
// already exited succeeds (idempotent), and so does Kill of a process never adopted.
TEST_P(DriverContract, AdoptsOnlyItsOwnLiveVmmAndKillsIdempotently) {
  hv::MachineSpec spec = dut_->spec("adopt");
  auto foreign = ForeignProcess();
  ASSERT_TRUE(foreign) << foreign.error().message;
  EXPECT_FALSE(driver().Adopt(spec, *foreign)) << "adopted a process that is not its VMM";
  EXPECT_TRUE(driver().Kill(*foreign));
  ASSERT_TRUE(hv::WaitForExit(*foreign, std::chrono::seconds(5)));
  auto dead = driver().Adopt(spec, *foreign);
  ASSERT_FALSE(dead) << "adopted a process that has exited";
  EXPECT_EQ(dead.error().code, Code::kNotFound) << dead.error().message;
  EXPECT_TRUE(driver().Kill(*foreign)) << "a second Kill of an exited process";
}

// Clause: WaitReady gives up, with an error and before its deadline, when `cancel` is set or
// when the VMM exits.
TEST_P(DriverContract, WaitReadyGivesUpOnCancelAndOnExit) {
  hv::MachineSpec spec = dut_->spec("giveup");
  auto process = driver().Launch(spec);
  ASSERT_TRUE(process) << process.error().message;
  EXPECT_TRUE(hv::IsAlive(*process)) << "Launch returns once the process runs";
  hv::CancelFlag cancel{true};
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(driver().WaitReady(spec, *process, Deadline(dut_->boot_limit), cancel));
  EXPECT_LT(std::chrono::steady_clock::now() - start, dut_->boot_limit / 2);
  End(*process);
  start = std::chrono::steady_clock::now();
  EXPECT_FALSE(driver().WaitReady(spec, *process, Deadline(dut_->boot_limit), never_));
  EXPECT_LT(std::chrono::steady_clock::now() - start, dut_->boot_limit / 2);
}

// Clauses, on one boot: Launch -> WaitReady; Adopt and Describe of the running VMM; SaveState
// leaves the VMM alive (paused) with the snapshot in the directory and RAM either there or in the
// returned file; Continue lets the same guest run on; Restore ends the new VMM when before_running
// fails, else calls it once with the new, live VMM and lets the same guest run; SyncClock after
// a restore; RequestShutdown ends the VMM gracefully; Kill and Adopt after the exit.
TEST_P(DriverContract, RunsSavesRestoresAndStopsAGuest) {
  hv::MachineSpec spec = dut_->spec("life");
  auto process = driver().Launch(spec);
  ASSERT_TRUE(process) << process.error().message;
  auto ready = driver().WaitReady(spec, *process, Deadline(dut_->boot_limit), never_);
  if (!ready) End(*process);
  ASSERT_TRUE(ready) << ready.error().message;
  EXPECT_TRUE(driver().Adopt(spec, *process));
  auto described = driver().Describe(spec, *process);
  EXPECT_TRUE(described && !described->empty());
  std::string identity = Identity(spec, "save -> continue/restore resumes the same guest");

  std::filesystem::path first = SnapshotDir(spec, "first");
  auto ram = driver().SaveState(spec, *process, first);
  ASSERT_TRUE(ram) << ram.error().message;
  EXPECT_TRUE(hv::IsAlive(*process)) << "the VMM stays after SaveState";
  EXPECT_FALSE(std::filesystem::is_empty(first));
  if (!ram->empty()) {
    EXPECT_TRUE(std::filesystem::exists(*ram)) << *ram;
    EXPECT_NE(ram->parent_path(), first) << "a RAM file inside the directory is not returned";
  }
  auto continued = driver().Continue(spec, *process);
  ASSERT_TRUE(continued) << continued.error().message;
  EXPECT_TRUE(hv::IsAlive(*process));
  if (!identity.empty()) {
    EXPECT_EQ(Identity(spec, ""), identity) << "after Continue";
  }

  std::filesystem::path second = SnapshotDir(spec, "second");
  ram = driver().SaveState(spec, *process, second);
  ASSERT_TRUE(ram) << ram.error().message;
  End(*process);  // the node ends the VMM once the snapshot is complete

  std::optional<hv::ProcessId> refused;
  auto abandoned = driver().Restore(spec, second, [&](const hv::ProcessId& p) -> Status {
    refused = p;
    return Fail(Code::kFailedPrecondition, "the node changed its mind");
  });
  ASSERT_FALSE(abandoned) << "Restore succeeded although before_running failed";
  EXPECT_EQ(abandoned.error().code, Code::kFailedPrecondition) << abandoned.error().message;
  ASSERT_TRUE(refused) << abandoned.error().message;
  EXPECT_TRUE(hv::WaitForExit(*refused, std::chrono::seconds(5))) << "the new VMM is ended";

  int calls = 0;
  bool alive_before = false;
  std::optional<hv::ProcessId> seen;
  auto restored = driver().Restore(spec, second, [&](const hv::ProcessId& p) -> Status {
    ++calls;
    seen = p;
    alive_before = hv::IsAlive(p);
    return Ok();
  });
  ASSERT_TRUE(restored) << restored.error().message;
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(alive_before);
  EXPECT_EQ(seen, *restored);
  EXPECT_TRUE(hv::IsAlive(*restored));
  if (!identity.empty()) {
    EXPECT_EQ(Identity(spec, ""), identity) << "after Restore";
  }
  EXPECT_TRUE(driver().SyncClock(spec, *restored));
  EXPECT_TRUE(driver().Adopt(spec, *restored));

  auto shutdown = driver().RequestShutdown(spec, *restored);
  ASSERT_TRUE(shutdown) << shutdown.error().message;
  bool exited = hv::WaitForExit(*restored, dut_->stop_limit);
  if (!exited) End(*restored);
  EXPECT_TRUE(exited) << "RequestShutdown did not end the VMM within " << dut_->stop_limit.count()
                      << " s";
  driver().Exited(*restored);
  EXPECT_TRUE(driver().Kill(*restored)) << "Kill of an exited VMM";
  EXPECT_FALSE(driver().Adopt(spec, *restored)) << "adopted an exited VMM";
  driver().Forget(spec);
}

}  // namespace hearth::testing

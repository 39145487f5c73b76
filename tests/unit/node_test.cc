#include "node/node.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <thread>

#include "fakes/fakes.h"

namespace hearth::node {
namespace {

using nlohmann::json;
using testing::FakeClock;
using testing::FakeFileProbe;
using testing::FakeStateStore;

class NodeTest : public ::testing::Test {
 protected:
  NodeTest() : node_(store_, testing::TestHost(), files_, clock_, Paths("/var/lib/hearth"), {}) {
    files_.AddKernel("/k/vmlinux");
    files_.AddFile("/d/a.img");
    EXPECT_TRUE(node_.Load());
  }

  CreateRequest Req(const std::string& name, int64_t mib = 256) {
    CreateRequest r;
    r.name = name;
    r.spec.kernel = "/k/vmlinux";
    r.spec.memory = MiB{mib};
    return r;
  }

  // Puts a VM in `state` directly into the store, as a driver would have, and reloads.
  void Preload(const std::string& name, VmState state, int64_t mib) {
    VmRecord vm;
    vm.name = name;
    vm.id = "id-" + name;
    vm.spec.kernel = "/k/vmlinux";
    vm.spec.memory = MiB{mib};
    vm.state = state;
    ASSERT_TRUE(store_.CreateVm(vm, Event{}));
    ASSERT_TRUE(node_.Load());
  }

  static EditRequest Edit(const std::string& fields, std::optional<int64_t> generation = {}) {
    EditRequest e;
    e.fields = json::parse(fields);
    e.generation = generation;
    return e;
  }

  FakeStateStore store_;
  FakeFileProbe files_;
  FakeClock clock_;
  Node node_;
};

TEST_F(NodeTest, CreateStoresTheVmAndAnEvent) {
  auto vm = node_.Create(Req("web"));
  ASSERT_TRUE(vm) << vm.error().message;
  EXPECT_EQ(vm->state, VmState::kCreated);
  EXPECT_EQ(vm->version, 1);
  EXPECT_EQ(vm->created_at, clock_.Now());
  EXPECT_EQ(vm->id.rfind("vm-", 0), 0u);
  EXPECT_EQ(**store_.GetVm("web"), *vm);
  auto events = node_.Events("web", 10);
  ASSERT_TRUE(events);
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].type, "created");
}

TEST_F(NodeTest, RefusedCreatesWriteNothing) {
  ASSERT_TRUE(node_.Create(Req("web")));
  int writes = store_.writes();
  auto dup = node_.Create(Req("web"));
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, Code::kAlreadyExists);
  EXPECT_FALSE(node_.Create(Req("Bad_Name")));
  EXPECT_FALSE(node_.Create(Req("odd", 255)));
  EXPECT_EQ(store_.writes(), writes);
  EXPECT_EQ(node_.List().size(), 1u);
}

TEST_F(NodeTest, EditBumpsVersionAndRecordsWhatChanged) {
  ASSERT_TRUE(node_.Create(Req("web")));
  clock_.Advance(Duration{5000});
  auto vm = node_.Edit("web", Edit(R"({"memory_mib": 512})", 1));
  ASSERT_TRUE(vm) << vm.error().message;
  EXPECT_EQ(vm->version, 2);
  EXPECT_EQ(vm->generation, 2);
  EXPECT_EQ(vm->spec.memory, MiB{512});
  EXPECT_EQ(vm->updated_at, clock_.Now());
  auto events = *node_.Events("web", 10);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].type, "edited");
  EXPECT_EQ(events[1].message, "memory_mib 256 -> 512");
}

TEST_F(NodeTest, StaleEditIsRefusedAndChangesNothing) {
  ASSERT_TRUE(node_.Create(Req("web")));
  ASSERT_TRUE(node_.Edit("web", Edit(R"({"vcpus": 2})", 1)));
  int writes = store_.writes();
  auto stale = node_.Edit("web", Edit(R"({"vcpus": 4})", 1));
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, Code::kFailedPrecondition);
  EXPECT_EQ(stale.error().field, "generation");
  EXPECT_NE(stale.error().message.find("based on generation 1 but vm 'web' is at generation 2"),
            std::string::npos);
  EXPECT_EQ(store_.writes(), writes);
  EXPECT_EQ(node_.Get("web")->spec.vcpus, 2);
  // A stale edit that would change nothing loses no update: it is answered as a no-op.
  auto same = node_.Edit("web", Edit(R"({"vcpus": 2})", 1));
  ASSERT_TRUE(same) << same.error().message;
  EXPECT_EQ(store_.writes(), writes);
}

// The generation follows the spec only: a record whose version moved with its state (a VM
// that ran, here as stored) is still edited on the generation its spec is at.
TEST_F(NodeTest, TheGenerationIgnoresStateChanges) {
  VmRecord vm;
  vm.name = "web";
  vm.id = "id-web";
  vm.spec.kernel = "/k/vmlinux";
  vm.state = VmState::kStopped;
  vm.version = 9;
  vm.generation = 2;
  ASSERT_TRUE(store_.CreateVm(vm, Event{}));
  ASSERT_TRUE(node_.Load());
  auto edited = node_.Edit("web", Edit(R"({"cmdline": "quiet"})", 2));
  ASSERT_TRUE(edited) << edited.error().message;
  EXPECT_EQ(edited->version, 10);
  EXPECT_EQ(edited->generation, 3);
  EXPECT_EQ((*store_.GetVm("web"))->generation, 3) << "stored with the record";
}

// A replace (PUT) gives the fields it leaves out their defaults; equal specs write nothing.
TEST_F(NodeTest, AReplaceResetsWhatItLeavesOut) {
  ASSERT_TRUE(node_.Create(Req("web", 512)));
  ASSERT_TRUE(node_.Edit("web", Edit(R"({"cmdline": "quiet", "wake": "on-packet"})")));
  EditRequest same = Edit(R"({"kernel": "/k/vmlinux", "memory_mib": 512, "cmdline": "quiet"})");
  same.replace = true;
  int writes = store_.writes();
  auto unchanged = node_.Edit("web", same);
  ASSERT_TRUE(unchanged) << unchanged.error().message;
  EXPECT_EQ(store_.writes(), writes) << "wake on-packet is the default: nothing differs";
  EditRequest less = Edit(R"({"kernel": "/k/vmlinux"})");
  less.replace = true;
  auto replaced = node_.Edit("web", less);
  ASSERT_TRUE(replaced) << replaced.error().message;
  EXPECT_EQ(replaced->spec.memory, MiB{256});
  EXPECT_EQ(replaced->spec.cmdline, "");
}

TEST_F(NodeTest, NoOpEditKeepsTheVersion) {
  ASSERT_TRUE(node_.Create(Req("web")));
  int writes = store_.writes();
  auto vm = node_.Edit("web", Edit(R"({"memory_mib": 256})"));
  ASSERT_TRUE(vm);
  EXPECT_EQ(vm->version, 1);
  EXPECT_EQ(store_.writes(), writes);
}

TEST_F(NodeTest, EditOfARunningVmNamesTheState) {
  Preload("web", VmState::kRunning, 256);
  auto r = node_.Edit("web", Edit(R"({"vcpus": 2})"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kFailedPrecondition);
  EXPECT_NE(r.error().message.find("running"), std::string::npos);
  EXPECT_TRUE(node_.Edit("web", Edit(R"({"restart": "always"})")));
}

TEST_F(NodeTest, DiscardingStateOnASuspendedVmStopsIt) {
  Preload("web", VmState::kSuspended, 256);
  EditRequest e = Edit(R"({"memory_mib": 512})");
  ASSERT_FALSE(node_.Edit("web", e));
  e.discard_state = true;
  auto vm = node_.Edit("web", e);
  ASSERT_TRUE(vm) << vm.error().message;
  EXPECT_EQ(vm->state, VmState::kStopped);
  EXPECT_FALSE(vm->snapshot.has_value());
}

TEST_F(NodeTest, StoreFailureLeavesMemoryUnchanged) {
  ASSERT_TRUE(node_.Create(Req("web")));
  store_.FailWrites(Error{Code::kUnavailable, "disk full"});
  auto r = node_.Edit("web", Edit(R"({"vcpus": 2})"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kUnavailable);
  EXPECT_NE(r.error().message.find("editing vm 'web': disk full"), std::string::npos);
  EXPECT_EQ(node_.Get("web")->spec.vcpus, 1);
  EXPECT_FALSE(node_.Create(Req("db")));
  EXPECT_FALSE(node_.Get("db"));
}

TEST_F(NodeTest, DeleteRules) {
  ASSERT_TRUE(node_.Create(Req("web")));
  ASSERT_TRUE(node_.Delete("web", false));
  EXPECT_EQ(node_.Get("web").error().code, Code::kNotFound);
  Preload("sleepy", VmState::kSuspended, 256);
  auto refused = node_.Delete("sleepy", false);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("--force"), std::string::npos);
  EXPECT_TRUE(node_.Delete("sleepy", true));
  Preload("busy", VmState::kStarting, 256);
  EXPECT_FALSE(node_.Delete("busy", true));
}

TEST_F(NodeTest, LifecycleWithoutADriverIsFailedPrecondition) {
  ASSERT_TRUE(node_.Create(Req("web")));
  auto r = node_.Start("web", false);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kFailedPrecondition);
  EXPECT_NE(r.error().message.find("no hypervisor driver"), std::string::npos);
  auto stop = node_.Stop("web", false);  // never started: nothing to stop, nothing written
  ASSERT_TRUE(stop) << stop.error().message;
  EXPECT_EQ(stop->state, VmState::kCreated);
  EXPECT_EQ(stop->version, 1);
  EXPECT_FALSE(node_.Suspend("web"));
  EXPECT_FALSE(node_.Resume("web"));
}

TEST_F(NodeTest, AdmissionCountsOnlyVmsHoldingMemory) {
  Preload("big", VmState::kRunning, 12288);
  Preload("asleep", VmState::kSuspended, 8192);  // holds no RAM
  Preload("off", VmState::kStopped, 8192);
  ASSERT_TRUE(node_.Create(Req("fits", 4096)));
  ASSERT_TRUE(node_.Create(Req("toobig", 4098)));
  auto fits = node_.Start("fits", false);
  EXPECT_EQ(fits.error().code, Code::kFailedPrecondition) << "admitted, then no driver";
  auto big = node_.Start("toobig", false);
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, Code::kResourceExhausted);
  EXPECT_NE(big.error().message.find("needs 4098 MiB but running VMs already hold 12288 MiB"),
            std::string::npos)
      << big.error().message;
  EXPECT_EQ(node_.Resume("asleep").error().code, Code::kResourceExhausted);
  NodeInfo info = node_.Info();
  EXPECT_EQ(info.memory_running, MiB{12288});
  EXPECT_EQ(info.vms_total, 5);
  EXPECT_EQ(info.vms_by_state["running"], 1);
}

TEST(CheckAdmissionTest, RatioScalesTheLimit) {
  VmRecord running, candidate;
  running.id = "a";
  running.state = VmState::kRunning;
  running.spec.memory = MiB{1024};
  candidate.id = "b";
  candidate.spec.memory = MiB{1024};
  EXPECT_FALSE(CheckAdmission({&running}, candidate, MiB{1536}, 1.0));
  EXPECT_TRUE(CheckAdmission({&running}, candidate, MiB{1536}, 1.5));
  EXPECT_TRUE(CheckAdmission({&running, &candidate}, candidate, MiB{2048}, 1.0))
      << "the candidate itself is not counted twice";
}

}  // namespace
}  // namespace hearth::node

namespace hearth::node {
namespace {

// Writes to different VMs run concurrently, yet conflicts between them are still caught: of many
// concurrent creates that publish the same host port, exactly one wins; edits to one VM are
// applied one after another, each on the version before it.
TEST_F(NodeTest, ConcurrentWritesKeepConflictsAndVersionsRight) {
  constexpr int kThreads = 8;
  std::atomic<int> won{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      CreateRequest r = Req(fmt::format("web{}", t));
      r.spec.publish = {{8080, 80, Protocol::kTcp}};
      if (node_.Create(r)) ++won;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(won, 1);
  threads.clear();
  ASSERT_TRUE(node_.Create(Req("shared")));
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10; ++i) {
        auto vm = node_.Edit("shared", Edit(fmt::format(R"({{"cmdline": "t{}"}})", i)));
        EXPECT_TRUE(vm) << vm.error().message;
      }
    });
  }
  for (auto& t : threads) t.join();
  auto events = node_.Events("shared", 1000);
  ASSERT_TRUE(events);
  EXPECT_EQ(node_.Get("shared")->version, 1 + static_cast<int64_t>(events->size()) - 1);
}

}  // namespace
}  // namespace hearth::node

// The QEMU driver's QMP flows: the builders as data (qmp_calls.h), and the driver running them
// against a scripted QEMU behind the QmpChannel seam: which commands each operation sends, in
// which order, with which arguments and files, and how it reacts to refusals and failed
// migrations. Restore runs a stand-in "qemu" process (a sleep) so that its ending can be checked.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <deque>
#include <fstream>
#include <map>
#include <mutex>

#include "hv/qemu/qemu_driver.h"
#include "hv/qemu/qmp_calls.h"
#include "hv/qemu/qmp_channel.h"
#include "hv/qemu/qmp_migration.h"
#include "support/temp_dir.h"

namespace hearth::hv::qemu {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;

// A scripted QEMU: answers per command name and event data per event name, consumed in order;
// a command without a scripted answer succeeds with {}, an event without one never comes.
struct FakeQemu {
  std::mutex mu;
  std::vector<QmpCall> sent;
  std::vector<std::string> passed;  // per descriptor sent: the file it is open on
  std::vector<QmpEventWait> awaited;
  std::map<std::string, std::deque<Result<json>>> answers;
  std::map<std::string, std::deque<json>> events;
  int connects = 0;

  void Answer(const std::string& command, Result<json> answer) {
    answers[command].push_back(std::move(answer));
  }
  void Event(const std::string& name, json data) { events[name].push_back(std::move(data)); }
  std::vector<std::string> Commands() {
    std::lock_guard lock(mu);
    std::vector<std::string> out;
    for (const auto& c : sent) out.push_back(c.execute);
    return out;
  }
};

Error Refusal(const std::string& command, const std::string& desc) {
  return Error{Code::kFailedPrecondition, "qmp " + command + ": GenericError: " + desc};
}

class FakeChannel final : public QmpChannel {
 public:
  explicit FakeChannel(FakeQemu* qemu) : qemu_(qemu) {}
  Result<json> Send(const QmpCall& call, int fd) override {
    std::lock_guard lock(qemu_->mu);
    qemu_->sent.push_back(call);
    if (fd >= 0) {
      qemu_->passed.push_back(fs::read_symlink(fs::path("/proc/self/fd") / std::to_string(fd)));
    }
    auto& queue = qemu_->answers[call.execute];
    if (queue.empty()) return json::object();
    auto answer = queue.front();
    queue.pop_front();
    return answer;
  }
  Result<json> Await(const QmpEventWait& wait) override {
    std::lock_guard lock(qemu_->mu);
    qemu_->awaited.push_back(wait);
    auto& queue = qemu_->events[wait.event];
    if (queue.empty()) {
      return Fail(Code::kUnavailable,
                  "qmp: no answer in time: waiting for the " + wait.event + " event");
    }
    json data = queue.front();
    queue.pop_front();
    return data;
  }

 private:
  FakeQemu* qemu_;
};

TEST(QmpCallsTest, SaveFlowIsCapabilitiesGetfdStopMigrate) {
  auto flow = SaveFlow("/vm/snap/state.part");
  ASSERT_EQ(flow.size(), 4u);
  EXPECT_EQ(flow[0].execute, "migrate-set-capabilities");
  EXPECT_EQ(flow[0].arguments,
            json::parse(R"({"capabilities":[{"capability":"x-ignore-shared","state":true},)"
                        R"({"capability":"events","state":true}]})"));
  EXPECT_EQ(flow[1].execute, "getfd");
  EXPECT_EQ(flow[1].arguments, json({{"fdname", "hearth-state"}}));
  EXPECT_EQ(flow[1].pass_file, (QmpFile{"/vm/snap/state.part", O_WRONLY | O_CREAT | O_TRUNC}));
  EXPECT_EQ(flow[2].execute, "stop");
  EXPECT_EQ(flow[2].arguments, json::object());
  EXPECT_EQ(flow[3].execute, "migrate");
  EXPECT_EQ(flow[3].arguments, json({{"uri", "fd:hearth-state"}}));
  EXPECT_EQ(flow[3].then_wait,
            (QmpEventWait{"MIGRATION", {"completed", "failed", "cancelled"}, 60s}));
  EXPECT_EQ(flow[3].expect, (QmpExpect{"status", "completed"}));
  for (const auto& call : flow) EXPECT_FALSE(call.poll) << call.execute;
}

TEST(QmpCallsTest, RestoreAndContinueFlows) {
  auto flow = RestoreFlow("/vm/snap/state");
  ASSERT_EQ(flow.size(), 4u);
  EXPECT_EQ(flow[0], MigrationCapabilities());
  EXPECT_EQ(flow[1].pass_file, (QmpFile{"/vm/snap/state", O_RDONLY}));
  EXPECT_EQ(flow[2].execute, "migrate-incoming");
  EXPECT_EQ(flow[2].arguments, json({{"uri", "fd:hearth-state"}}));
  EXPECT_EQ(flow[2].then_wait, MigrationEnded(60s));
  EXPECT_EQ(flow[3].execute, "query-status");
  EXPECT_EQ(flow[3].expect, (QmpExpect{"status", "paused"}));
  EXPECT_EQ(RunFlow(), std::vector<QmpCall>{Cont()});
  auto resume = ContinueFlow();
  ASSERT_EQ(resume.size(), 2u);
  EXPECT_EQ(resume[0].execute, "query-status");
  EXPECT_EQ(resume[0].poll, (QmpPoll{"status", "finish-migrate", 5s, 2ms}));
  EXPECT_EQ(resume[1].execute, "cont");
  EXPECT_EQ(SaveAbortFlow(false), std::vector<QmpCall>{CloseState()});
  EXPECT_EQ(SaveAbortFlow(true), std::vector<QmpCall>{MigrateCancel()});
  EXPECT_EQ(MigrateCancel().then_wait, MigrationEnded(5s));
  EXPECT_EQ(CloseState().arguments, json({{"fdname", "hearth-state"}}));
}

TEST(QmpCallsTest, UnexpectedSaysWhatCameInstead) {
  EXPECT_EQ(Unexpected(MigrateOut(), json{{"status", "completed"}}), std::nullopt);
  EXPECT_EQ(Unexpected(MigrateOut(), json{{"status", "failed"}}), "failed");
  EXPECT_EQ(Unexpected(MigrateOut(), json{{"status", 3}}), "");
  EXPECT_EQ(Unexpected(MigrateOut(), json::array()), "");
  EXPECT_EQ(Unexpected(Stop(), json::object()), std::nullopt);
}

class QmpFlowTest : public ::testing::Test {
 protected:
  QmpFlowTest() {
    // A "qemu" that takes any arguments and stays until killed.
    fs::path binary = dir_ / "qemu";
    std::ofstream(binary) << "#!/bin/bash\nexec -a \"fake-qemu $*\" sleep 60\n";
    fs::permissions(binary, fs::perms::owner_all);
    std::ofstream(dir_ / "vmlinux") << "kernel";
    QemuDriverOptions o;
    o.binary = binary.string();
    o.accel = [] { return AccelChoice{Accel::kTcg, "test"}; };
    o.qmp = [this](const fs::path&, std::chrono::milliseconds,
                   bool) -> Result<std::unique_ptr<QmpChannel>> {
      std::lock_guard lock(qemu_.mu);
      ++qemu_.connects;
      return std::make_unique<FakeChannel>(&qemu_);
    };
    driver_ = std::make_unique<QemuDriver>(std::move(o));
    spec_.vm_id = "vm-1";
    spec_.name = "web";
    spec_.memory = MiB{4};
    spec_.kernel = (dir_ / "vmlinux").string();
    spec_.cmdline = "console=ttyS0";
    spec_.vm_dir = dir_ / "vm";
    spec_.console_log = dir_ / "vm" / "console.log";
    spec_.vmm_log = dir_ / "vm" / "vmm.log";
    spec_.memory_file = dir_ / "vm" / "memory";
    spec_.qmp_socket = dir_ / "vm" / "qmp.sock";
    spec_.agent_pipe = dir_ / "vm" / "agent";
    fs::create_directories(spec_.vm_dir);
    fs::create_directories(snap_);
    std::ofstream(snap_ / "state") << "device state";
  }

  testing::TempDir dir_;
  fs::path snap_ = dir_ / "snap";
  FakeQemu qemu_;
  std::unique_ptr<QemuDriver> driver_;
  MachineSpec spec_;
  ProcessId process_{12345, 1};
};

using Commands = std::vector<std::string>;

TEST_F(QmpFlowTest, SaveSendsTheSaveFlowAndNamesTheStateOnceComplete) {
  qemu_.Event("MIGRATION", {{"status", "completed"}});
  auto memory = driver_->SaveState(spec_, process_, snap_);
  ASSERT_TRUE(memory) << memory.error().message;
  EXPECT_EQ(*memory, spec_.memory_file);
  EXPECT_EQ(qemu_.sent, SaveFlow(snap_ / "state.part"));
  EXPECT_EQ(qemu_.passed, std::vector<std::string>{(snap_ / "state.part").string()});
  EXPECT_EQ(qemu_.awaited, std::vector<QmpEventWait>{MigrationEnded(60s)});
  EXPECT_TRUE(fs::exists(snap_ / "state"));
  EXPECT_FALSE(fs::exists(snap_ / "state.part"));
}

TEST_F(QmpFlowTest, AFailedMigrationSaysWhyAndGivesTheDescriptorBack) {
  fs::remove(snap_ / "state");
  qemu_.Event("MIGRATION", {{"status", "failed"}});
  qemu_.Answer("query-migrate", json{{"status", "failed"}, {"error-desc", "disk on fire"}});
  auto memory = driver_->SaveState(spec_, process_, snap_);
  ASSERT_FALSE(memory);
  EXPECT_EQ(memory.error().code, Code::kInternal);
  EXPECT_NE(memory.error().message.find("vm 'web': saving state: disk on fire"), std::string::npos)
      << memory.error().message;
  EXPECT_EQ(qemu_.Commands(), (Commands{"migrate-set-capabilities", "getfd", "stop", "migrate",
                                        "query-migrate", "closefd"}));
  EXPECT_FALSE(fs::exists(snap_ / "state.part"));
  EXPECT_FALSE(fs::exists(snap_ / "state"));
}

TEST_F(QmpFlowTest, AMigrationThatDoesNotEndIsCancelled) {
  // No MIGRATION event ever comes, neither for the migration nor for its cancel.
  auto memory = driver_->SaveState(spec_, process_, snap_);
  ASSERT_FALSE(memory);
  EXPECT_EQ(memory.error().code, Code::kUnavailable) << memory.error().message;
  EXPECT_EQ(qemu_.Commands(),
            (Commands{"migrate-set-capabilities", "getfd", "stop", "migrate", "migrate_cancel"}));
  EXPECT_EQ(qemu_.awaited, (std::vector<QmpEventWait>{MigrationEnded(60s), MigrationEnded(5s)}));
  EXPECT_FALSE(fs::exists(snap_ / "state.part"));
}

TEST_F(QmpFlowTest, ARefusedStopClosesTheDescriptorAndMigratesNothing) {
  qemu_.Answer("stop", Fail(Refusal("stop", "no")));
  auto memory = driver_->SaveState(spec_, process_, snap_);
  ASSERT_FALSE(memory);
  EXPECT_EQ(memory.error().code, Code::kFailedPrecondition);
  EXPECT_NE(memory.error().message.find("saving state: stop: qmp stop"), std::string::npos)
      << memory.error().message;
  EXPECT_EQ(qemu_.Commands(), (Commands{"migrate-set-capabilities", "getfd", "stop", "closefd"}));
  EXPECT_FALSE(fs::exists(snap_ / "state.part"));
}

TEST_F(QmpFlowTest, ARefusedGetfdSendsNothingMore) {
  qemu_.Answer("getfd", Fail(Refusal("getfd", "no")));
  auto memory = driver_->SaveState(spec_, process_, snap_);
  ASSERT_FALSE(memory);
  EXPECT_NE(memory.error().message.find("handing"), std::string::npos) << memory.error().message;
  EXPECT_EQ(qemu_.Commands(), (Commands{"migrate-set-capabilities", "getfd"}));
}

TEST_F(QmpFlowTest, ContinueWaitsForFinishMigrateToEndBeforeCont) {
  qemu_.Answer("query-status", json{{"status", "finish-migrate"}});
  qemu_.Answer("query-status", json{{"status", "finish-migrate"}});
  qemu_.Answer("query-status", json{{"status", "paused"}});
  auto s = driver_->Continue(spec_, process_);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(qemu_.Commands(), (Commands{"query-status", "query-status", "query-status", "cont"}));
}

TEST_F(QmpFlowTest, ARefusedContIsAnError) {
  qemu_.Answer("cont", Fail(Refusal("cont", "Migration is not finalized yet")));
  auto s = driver_->Continue(spec_, process_);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kFailedPrecondition);
  EXPECT_NE(s.error().message.find("vm 'web': cont: qmp cont"), std::string::npos)
      << s.error().message;
}

TEST_F(QmpFlowTest, ARunStateStuckInFinishMigrateEndsTheWait) {
  for (int i = 0; i < 1000; ++i) qemu_.Answer("query-status", json{{"status", "finish-migrate"}});
  FakeChannel channel(&qemu_);
  auto s = WaitMigrationFinalized(channel, 20ms);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kUnavailable);
  EXPECT_NE(s.error().message.find("run state 'finish-migrate'"), std::string::npos)
      << s.error().message;
  for (const auto& c : qemu_.Commands()) EXPECT_EQ(c, "query-status");
}

TEST_F(QmpFlowTest, RestoreLoadsRunsBeforeRunningWhilePausedThenConts) {
  qemu_.Event("MIGRATION", {{"status", "completed"}});
  qemu_.Answer("query-status", json{{"status", "paused"}, {"running", false}});
  Commands before;
  auto process = driver_->Restore(spec_, snap_, [&](const ProcessId& p) -> Status {
    EXPECT_TRUE(IsAlive(p));
    before = qemu_.Commands();
    return Ok();
  });
  ASSERT_TRUE(process) << process.error().message;
  EXPECT_TRUE(IsAlive(*process));
  auto expected = RestoreFlow(snap_ / "state");
  expected.push_back(Cont());
  EXPECT_EQ(qemu_.sent, expected);
  EXPECT_EQ(before.size(), 4u);
  EXPECT_EQ(qemu_.passed, std::vector<std::string>{(snap_ / "state").string()});
  driver_->Kill(*process);
  EXPECT_TRUE(WaitForExit(*process, 5s));
}

TEST_F(QmpFlowTest, AFailedLoadEndsTheNewQemu) {
  qemu_.Event("MIGRATION", {{"status", "failed"}});
  std::optional<ProcessId> seen;
  auto process = driver_->Restore(spec_, snap_, [&](const ProcessId& p) -> Status {
    seen = p;
    return Ok();
  });
  ASSERT_FALSE(process);
  EXPECT_NE(process.error().message.find("loading the state ended 'failed'"), std::string::npos)
      << process.error().message;
  EXPECT_FALSE(seen) << "before_running only for a loaded guest";
  EXPECT_EQ(qemu_.Commands(), (Commands{"migrate-set-capabilities", "getfd", "migrate-incoming"}));
}

TEST_F(QmpFlowTest, AGuestNotPausedAfterTheLoadOrARefusalBeforeRunningEndsTheRestore) {
  qemu_.Event("MIGRATION", {{"status", "completed"}});
  qemu_.Answer("query-status", json{{"status", "running"}});
  auto running = driver_->Restore(spec_, snap_, [](const ProcessId&) { return Status{}; });
  ASSERT_FALSE(running);
  EXPECT_NE(running.error().message.find("the loaded VM is 'running', not paused"),
            std::string::npos)
      << running.error().message;

  qemu_.sent.clear();
  qemu_.Event("MIGRATION", {{"status", "completed"}});
  qemu_.Answer("query-status", json{{"status", "paused"}});
  std::optional<ProcessId> refused;
  auto restored = driver_->Restore(spec_, snap_, [&](const ProcessId& p) -> Status {
    refused = p;
    return Fail(Code::kPermissionDenied, "the node changed its mind");
  });
  ASSERT_FALSE(restored);
  EXPECT_EQ(restored.error().code, Code::kPermissionDenied);
  ASSERT_TRUE(refused);
  EXPECT_FALSE(IsAlive(*refused)) << "the new QEMU is ended";
  EXPECT_EQ(qemu_.Commands().back(), "query-status") << "no cont";
}

TEST_F(QmpFlowTest, ARestoreWithoutAStateFileSendsNoMigration) {
  fs::remove(snap_ / "state");
  auto process = driver_->Restore(spec_, snap_, [](const ProcessId&) { return Status{}; });
  ASSERT_FALSE(process);
  EXPECT_NE(process.error().message.find("opening"), std::string::npos) << process.error().message;
  EXPECT_EQ(qemu_.Commands(), (Commands{"migrate-set-capabilities"}));
}

TEST_F(QmpFlowTest, ABootHasNoQmpConversation) {
  auto process = driver_->Launch(spec_);
  ASSERT_TRUE(process) << process.error().message;
  EXPECT_EQ(qemu_.connects, 0);
  EXPECT_TRUE(qemu_.sent.empty());
  driver_->Kill(*process);
  EXPECT_TRUE(WaitForExit(*process, 5s));
}

TEST_F(QmpFlowTest, ShutdownDescribeAndMeteringAreOneQueryEach) {
  qemu_.Answer("query-status", json{{"status", "running"}, {"running", true}});
  qemu_.Answer("query-cpus-fast", json::array({json{{"cpu-index", 1}, {"thread-id", 11}},
                                               json{{"cpu-index", 0}, {"thread-id", 10}}}));
  ASSERT_TRUE(driver_->RequestShutdown(spec_, process_));
  auto described = driver_->Describe(spec_, process_);
  ASSERT_TRUE(described) << described.error().message;
  EXPECT_EQ(json::parse(*described)["status"], "running");
  auto threads = driver_->VcpuThreads(spec_, process_);
  ASSERT_TRUE(threads) << threads.error().message;
  EXPECT_EQ(*threads, (std::vector<int64_t>{10, 11}));
  ASSERT_TRUE(driver_->Disks(spec_, process_));
  EXPECT_EQ(qemu_.sent, (std::vector<QmpCall>{SystemPowerdown(), QueryStatus(2s), QueryCpusFast(),
                                              QueryBlockstats()}));
  qemu_.Answer("system_powerdown", Fail(Refusal("system_powerdown", "no")));
  auto refused = driver_->RequestShutdown(spec_, process_);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("vm 'web': system_powerdown"), std::string::npos);
}

}  // namespace
}  // namespace hearth::hv::qemu

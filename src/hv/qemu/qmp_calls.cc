#include "hv/qemu/qmp_calls.h"

#include <fcntl.h>
#include <fmt/format.h>

namespace hearth::hv::qemu {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;

bool operator==(const QmpCall& a, const QmpCall& b) {
  return a.execute == b.execute && a.arguments == b.arguments && a.timeout == b.timeout &&
         a.pass_file == b.pass_file && a.poll == b.poll && a.then_wait == b.then_wait &&
         a.expect == b.expect && a.what == b.what;
}

namespace {

QmpCall Command(std::string execute, json arguments = json::object()) {
  QmpCall call;
  call.execute = std::move(execute);
  call.arguments = std::move(arguments);
  return call;
}

std::string StateUri() { return fmt::format("fd:{}", kStateFdName); }

}  // namespace

QmpEventWait MigrationEnded(std::chrono::milliseconds timeout) {
  return QmpEventWait{"MIGRATION", {"completed", "failed", "cancelled"}, timeout};
}

QmpCall MigrationCapabilities() {
  QmpCall call =
      Command("migrate-set-capabilities", {{"capabilities",
                                            {{{"capability", "x-ignore-shared"}, {"state", true}},
                                             {{"capability", "events"}, {"state", true}}}}});
  call.what = "migrate-set-capabilities x-ignore-shared, events";
  return call;
}

QmpCall PassState(const fs::path& path, int flags) {
  QmpCall call = Command("getfd", {{"fdname", kStateFdName}});
  call.pass_file = QmpFile{path, flags};
  call.what = fmt::format("handing {} to qemu", path.string());
  return call;
}

QmpCall CloseState() {
  QmpCall call = Command("closefd", {{"fdname", kStateFdName}});
  call.timeout = 2s;
  return call;
}

QmpCall Stop() {
  QmpCall call = Command("stop");
  call.what = "stop";
  return call;
}

QmpCall MigrateOut() {
  QmpCall call = Command("migrate", {{"uri", StateUri()}});
  call.then_wait = MigrationEnded(60s);  // QEMU writes the last of the state before `completed`
  call.expect = QmpExpect{"status", "completed"};
  call.what = "migrate";
  return call;
}

QmpCall MigrateIn() {
  QmpCall call = Command("migrate-incoming", {{"uri", StateUri()}});
  call.then_wait = MigrationEnded(60s);  // QEMU ends itself when a load fails
  call.expect = QmpExpect{"status", "completed"};
  return call;
}

QmpCall MigrateCancel() {
  QmpCall call = Command("migrate_cancel");
  call.then_wait = MigrationEnded(5s);
  call.what = "migrate_cancel";
  return call;
}

QmpCall QueryMigrate() { return Command("query-migrate"); }

QmpCall QueryStatus(std::chrono::milliseconds timeout) {
  QmpCall call = Command("query-status");
  call.timeout = timeout;
  return call;
}

QmpCall WaitFinalized() {
  QmpCall call = Command("query-status");
  call.poll = QmpPoll{"status", "finish-migrate", 5s, 2ms};
  call.what = "query-status";
  return call;
}

QmpCall Cont() {
  QmpCall call = Command("cont");
  call.what = "cont";
  return call;
}

QmpCall SystemPowerdown() {
  QmpCall call = Command("system_powerdown");
  call.timeout = 2s;
  return call;
}

QmpCall QueryCpusFast() {
  QmpCall call = Command("query-cpus-fast");
  call.timeout = 1s;
  return call;
}

QmpCall QueryBlockstats() {
  QmpCall call = Command("query-blockstats");
  call.timeout = 1s;
  return call;
}

std::vector<QmpCall> SaveFlow(const fs::path& partial) {
  return {MigrationCapabilities(), PassState(partial, O_WRONLY | O_CREAT | O_TRUNC), Stop(),
          MigrateOut()};
}

std::vector<QmpCall> SaveAbortFlow(bool migrating) {
  if (migrating) return {MigrateCancel()};
  return {CloseState()};
}

std::vector<QmpCall> RestoreFlow(const fs::path& state) {
  QmpCall status = QueryStatus();
  status.expect = QmpExpect{"status", "paused"};  // the saved guest was stopped
  return {MigrationCapabilities(), PassState(state, O_RDONLY), MigrateIn(), status};
}

std::vector<QmpCall> RunFlow() { return {Cont()}; }

std::vector<QmpCall> ContinueFlow() { return {WaitFinalized(), Cont()}; }

}  // namespace hearth::hv::qemu

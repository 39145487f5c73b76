// The QMP conversations the QEMU driver has with a VM's QEMU, built as plain data with no I/O:
// each call is a command with its arguments, its timeout, the file hearthd hands over beside it
// (getfd), and what the driver waits for after the answer (a MIGRATION event, a run state left).
// A flow is the list of calls one driver operation sends, in order; qmp_channel.h runs them.
//
// The flows (the Launch of a cold boot has none: QEMU runs the guest from its command line):
//   save     migrate-set-capabilities, getfd <dir>/state.part, stop, migrate fd: (then the
//            MIGRATION event that ends it, expected "completed")
//   abort    closefd before `migrate` took the descriptor, migrate_cancel (and its end) after
//   restore  migrate-set-capabilities, getfd <dir>/state, migrate-incoming fd: (then the
//            MIGRATION event, expected "completed"), query-status (expected "paused"); the
//            node's before_running; cont
//   continue query-status until the run state leaves finish-migrate, cont
//   others   system_powerdown (shutdown), query-status (adopt, describe), query-cpus-fast and
//            query-blockstats (metering)
#pragma once

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hearth::hv::qemu {

// The name under which QEMU holds the state file it was handed.
inline constexpr char kStateFdName[] = "hearth-state";

// A file hearthd opens (`flags` plus O_CLOEXEC, mode 0600 when created) and passes beside the
// command (SCM_RIGHTS); hearthd's copy is closed once the command is answered.
struct QmpFile {
  std::filesystem::path path;
  int flags = 0;
  bool operator==(const QmpFile&) const = default;
};

// An event to wait for: `event` whose data's "status" is one of `statuses`.
struct QmpEventWait {
  std::string event;
  std::vector<std::string> statuses;
  std::chrono::milliseconds timeout{0};
  bool operator==(const QmpEventWait&) const = default;
};

// Repeats the command (every `interval`, for up to `limit`) while its answer's `field` is `value`.
struct QmpPoll {
  std::string field;
  std::string value;
  std::chrono::milliseconds limit{0};
  std::chrono::milliseconds interval{0};
  bool operator==(const QmpPoll&) const = default;
};

// What the outcome (the answer, or the awaited event's data) must hold: `field` equal to `value`.
// The driver checks it and says what it got instead.
struct QmpExpect {
  std::string field;
  std::string value;
  bool operator==(const QmpExpect&) const = default;
};

struct QmpCall {
  std::string execute;
  nlohmann::json arguments = nlohmann::json::object();
  std::chrono::milliseconds timeout = std::chrono::seconds(10);
  std::optional<QmpFile> pass_file;
  std::optional<QmpPoll> poll;
  std::optional<QmpEventWait> then_wait;  // after the answer
  std::optional<QmpExpect> expect;
  // Context for an error of the command (empty: QMP's own message says enough).
  std::string what;
};
bool operator==(const QmpCall& a, const QmpCall& b);

// The MIGRATION event that ends a migration: completed, failed or cancelled.
QmpEventWait MigrationEnded(std::chrono::milliseconds timeout);

// x-ignore-shared (guest RAM stays in the shared RAM file) and events, on the source before
// `migrate` and on the destination before `migrate-incoming`.
QmpCall MigrationCapabilities();
// getfd kStateFdName with `path` opened with `flags`.
QmpCall PassState(const std::filesystem::path& path, int flags);
// closefd kStateFdName, for when no migration took the descriptor.
QmpCall CloseState();
QmpCall Stop();
// `migrate fd:` into the handed-over file, then its end (expected "completed").
QmpCall MigrateOut();
// `migrate-incoming fd:` from the handed-over file, then its end (expected "completed").
QmpCall MigrateIn();
// Cancels an outgoing migration and waits for its end, so that a guest continued afterwards is
// not stopped again by a migration finishing late.
QmpCall MigrateCancel();
QmpCall QueryMigrate();
QmpCall QueryStatus(std::chrono::milliseconds timeout = std::chrono::seconds(10));
// query-status until the run state leaves finish-migrate: QEMU's migration thread reports
// `completed` before the main loop leaves it, and `cont` is refused until then.
QmpCall WaitFinalized();
QmpCall Cont();
QmpCall SystemPowerdown();
QmpCall QueryCpusFast();
QmpCall QueryBlockstats();

// Saving into `partial` (the state file's temporary name).
std::vector<QmpCall> SaveFlow(const std::filesystem::path& partial);
// What ends a save that failed: before `migrate` took the descriptor (`migrating` false), its
// closefd; after, migrate_cancel.
std::vector<QmpCall> SaveAbortFlow(bool migrating);
// Loading `state` into a QEMU started with -incoming defer, up to the paused guest.
std::vector<QmpCall> RestoreFlow(const std::filesystem::path& state);
// Letting the restored guest run (after the node's before_running).
std::vector<QmpCall> RunFlow();
// Letting a guest paused by a save run on.
std::vector<QmpCall> ContinueFlow();

}  // namespace hearth::hv::qemu

// The QMP side of moving a VM's device state out of QEMU and back in, shared by the driver and the
// benchmarks' hand-run comparison. hearthd opens the state file itself and hands the descriptor
// over (`getfd`), then `migrate fd:NAME` / `migrate-incoming fd:NAME`: QEMU reads or writes the
// file directly, with no shell, `cat` or pipe on the way. Guest RAM stays in the shared RAM file
// (capability x-ignore-shared on both sides), and QEMU's MIGRATION events say when it is over, so
// nothing polls. The commands are qmp_calls.h's; these run them one at a time on any QmpChannel.
// Also the QMP socket hearthd binds before QEMU exists (QmpListener).
#pragma once

#include <chrono>
#include <filesystem>
#include <string>

#include "common/result.h"
#include "hv/qemu/qmp_client.h"

namespace hearth::hv::qemu {

// x-ignore-shared and events, on the source before `migrate` and on the destination before
// `migrate-incoming`.
Status SetMigrationCapabilities(QmpChannel& qmp);

// Opens `path` with `flags` (O_CLOEXEC added, mode 0600 when created) and hands the descriptor to
// QEMU as kStateFdName; hearthd's copy is closed again.
Status PassStateFile(QmpChannel& qmp, const std::filesystem::path& path, int flags);

// Closes the handed-over descriptor inside QEMU, for when no migration took it. Best effort.
void ForgetStateFile(QmpChannel& qmp);

// Waits for the migration to end and returns how: "completed", "failed" or "cancelled".
Result<std::string> WaitMigration(QmpChannel& qmp, std::chrono::milliseconds limit);

// Waits up to `limit` for QEMU's run state to leave `finish-migrate`, which it does on its main
// loop shortly after the migration thread reported `completed`. Polls `query-status`; only the
// rare path that lets a saved guest run on needs it.
Status WaitMigrationFinalized(QmpChannel& qmp, std::chrono::milliseconds limit);

// Cancels an outgoing migration under way and waits up to `limit` for QEMU to say it ended, so
// that a guest continued afterwards is not stopped again by a migration finishing late.
Status CancelMigration(QmpChannel& qmp, std::chrono::milliseconds limit);

// A unix socket bound to `path` and listening, for QEMU to take over (-chardev socket,fd=N): a
// client connects at once and is greeted as soon as QEMU runs its main loop, instead of polling
// for QEMU to create the socket. Close it once QEMU has its copy, so that a QEMU that dies leaves
// no listener and a client sees that at once.
class QmpListener {
 public:
  static Result<QmpListener> Open(const std::filesystem::path& path);
  QmpListener(QmpListener&& other) noexcept;
  QmpListener& operator=(QmpListener&&) = delete;
  ~QmpListener() { Close(); }
  int fd() const { return fd_; }
  void Close();

 private:
  QmpListener() = default;
  int fd_ = -1;
};

}  // namespace hearth::hv::qemu

// A synchronous QMP (QEMU Machine Protocol) client over QEMU's unix socket. QMP is one JSON
// object per line: a greeting, then {"execute": ...} answered by {"return": ...} or
// {"error": {"class", "desc"}}, with asynchronous {"event": ...} lines in between. Every call has
// a deadline; a dead or wedged QEMU is an ordinary error (unavailable), not a hang.
// Not thread-safe: one client per VM, used by that VM's driver only.
#pragma once

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/result.h"
#include "hv/qemu/qmp_channel.h"

namespace hearth::hv::qemu {

class QmpClient final : public QmpChannel {
 public:
  // Connects to `socket_path`, retrying until `timeout` while QEMU has not created it yet, reads
  // the greeting and negotiates capabilities. `bound_before`: hearthd bound the socket before
  // QEMU started (QmpListener), so a refused or missing socket means QEMU is gone: no retry.
  static Result<QmpClient> Connect(const std::string& socket_path,
                                   std::chrono::milliseconds timeout, bool bound_before = false);

  QmpClient(QmpClient&& other) noexcept;
  QmpClient& operator=(QmpClient&& other) noexcept;
  QmpClient(const QmpClient&) = delete;
  QmpClient& operator=(const QmpClient&) = delete;
  ~QmpClient() override;

  // QmpChannel: Execute / ExecuteWithFd with the call's command, arguments and timeout, and
  // WaitEvent for a MIGRATION-style event whose data's "status" is one of the awaited ones.
  Result<nlohmann::json> Send(const QmpCall& call, int fd) override;
  Result<nlohmann::json> Await(const QmpEventWait& wait) override;

  // Runs `command` and returns its "return" value. A QMP error becomes failed_precondition with
  // QEMU's class and description; a broken connection or no answer within `timeout`, unavailable.
  Result<nlohmann::json> Execute(const std::string& command,
                                 const nlohmann::json& arguments = nlohmann::json::object(),
                                 std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // Execute with the descriptor `fd` passed beside the command (SCM_RIGHTS), as QMP's `getfd`
  // expects. The caller keeps its own copy of `fd`.
  Result<nlohmann::json> ExecuteWithFd(
      int fd, const std::string& command, const nlohmann::json& arguments,
      std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // Waits until QEMU sends the event `name` whose "data" satisfies `match`, and returns that data.
  // Events received earlier count; the others stay queued. No such event within `timeout`, or a
  // closed connection, is unavailable.
  Result<nlohmann::json> WaitEvent(const std::string& name,
                                   const std::function<bool(const nlohmann::json& data)>& match,
                                   std::chrono::milliseconds timeout);

  // The events received so far (e.g. STOP, RESUME, SHUTDOWN, MIGRATION), oldest first; clears them.
  std::vector<nlohmann::json> TakeEvents();

 private:
  explicit QmpClient(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  // Sends `command` (with `fd` as ancillary data when >= 0) and reads its answer.
  Result<nlohmann::json> Call(int fd, const std::string& command, const nlohmann::json& arguments,
                              std::chrono::milliseconds timeout);
  // Reads the next message, event or not.
  Result<nlohmann::json> ReadAny(std::chrono::steady_clock::time_point deadline);
  // Reads the next non-event message; events met on the way are queued.
  Result<nlohmann::json> ReadMessage(std::chrono::steady_clock::time_point deadline);

  int fd_ = -1;
  std::string path_;
  std::string buffer_;
  std::vector<nlohmann::json> events_;
};

}  // namespace hearth::hv::qemu

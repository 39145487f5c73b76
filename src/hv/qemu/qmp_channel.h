// The seam between the QEMU driver and a QEMU's QMP socket: a channel runs one QmpCall's command
// and waits for events. QmpClient (qmp_client.h) is the real one; tests script a fake QEMU behind
// it. RunCall carries out everything else a QmpCall says (the file to hand over, the polling, the
// event to wait for), so that a driver operation is a flow from qmp_calls.h run call by call.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/result.h"
#include "hv/qemu/qmp_calls.h"

namespace hearth::hv::qemu {

class QmpChannel {
 public:
  virtual ~QmpChannel() = default;
  // Sends `call`'s command with its arguments (with descriptor `fd` beside it when >= 0; the
  // caller keeps its copy) and returns its "return" value within call.timeout. A QMP error is
  // failed_precondition with QEMU's class and description; a broken connection or no answer in
  // time, unavailable. Ignores the rest of `call` (RunCall's part).
  virtual Result<nlohmann::json> Send(const QmpCall& call, int fd) = 0;
  // Waits for the event `wait` describes and returns its data; events received earlier count.
  // Not within wait.timeout, or a closed connection: unavailable.
  virtual Result<nlohmann::json> Await(const QmpEventWait& wait) = 0;
};

// Opens a channel to the QMP socket at `socket`, retrying for up to `timeout` while it does not
// exist yet; `bound_before`: hearthd bound the socket before QEMU started (QmpListener), so a
// refused connection means QEMU is gone and is not retried.
using QmpConnector = std::function<Result<std::unique_ptr<QmpChannel>>(
    const std::filesystem::path& socket, std::chrono::milliseconds timeout, bool bound_before)>;
// The real connector: QmpClient::Connect.
QmpConnector RealQmpConnector();

// Runs `call`: opens and hands over its file, sends the command (again while its poll says so),
// then waits for its event. Returns the outcome: the awaited event's data, else the answer.
// `answered` (optional) tells whether QEMU accepted the command, i.e. whether a failure came
// while waiting for the event. Errors carry call.what as context.
Result<nlohmann::json> RunCall(QmpChannel& channel, const QmpCall& call, bool* answered = nullptr);

// What the outcome holds instead of call.expect ("" when the field is missing); nullopt when it
// holds what is expected or nothing is.
std::optional<std::string> Unexpected(const QmpCall& call, const nlohmann::json& outcome);

}  // namespace hearth::hv::qemu

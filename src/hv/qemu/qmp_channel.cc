#include "hv/qemu/qmp_channel.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "hv/qemu/qmp_client.h"

namespace hearth::hv::qemu {
namespace {

using nlohmann::json;

std::string Field(const json& outcome, const std::string& field) {
  if (!outcome.is_object()) return "";
  auto it = outcome.find(field);
  if (it == outcome.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

// Sends the command again while the poll says so.
Result<json> SendPolling(QmpChannel& channel, const QmpCall& call, int fd) {
  if (!call.poll) return channel.Send(call, fd);
  const QmpPoll& poll = *call.poll;
  auto deadline = std::chrono::steady_clock::now() + poll.limit;
  std::string value;
  do {
    auto r = channel.Send(call, fd);
    if (!r) return r;
    value = Field(*r, poll.field);
    if (value != poll.value) return r;
    std::this_thread::sleep_for(poll.interval);
  } while (std::chrono::steady_clock::now() < deadline);
  return Fail(Code::kUnavailable, fmt::format("qemu stayed in {} '{}' for {} ms",
                                              poll.field == "status" ? "run state" : poll.field,
                                              value, poll.limit.count()));
}

}  // namespace

QmpConnector RealQmpConnector() {
  return [](const std::filesystem::path& socket, std::chrono::milliseconds timeout,
            bool bound_before) -> Result<std::unique_ptr<QmpChannel>> {
    auto client = QmpClient::Connect(socket.string(), timeout, bound_before);
    if (!client) return Fail(client.error());
    return std::make_unique<QmpClient>(std::move(*client));
  };
}

Result<json> RunCall(QmpChannel& channel, const QmpCall& call, bool* answered) {
  if (answered) *answered = false;
  int fd = -1;
  if (call.pass_file) {
    fd = ::open(call.pass_file->path.c_str(), call.pass_file->flags | O_CLOEXEC, 0600);
    if (fd < 0) {
      return Fail(Code::kInternal,
                  fmt::format("opening {}: {}", call.pass_file->path.string(), strerror(errno)));
    }
  }
  auto r = SendPolling(channel, call, fd);
  if (fd >= 0) ::close(fd);
  if (!r) return Fail(call.what.empty() ? r.error() : r.error().Wrap(call.what));
  if (answered) *answered = true;
  if (!call.then_wait) return r;
  auto event = channel.Await(*call.then_wait);
  if (!event && !call.what.empty()) return Fail(event.error().Wrap(call.what));
  return event;
}

std::optional<std::string> Unexpected(const QmpCall& call, const json& outcome) {
  if (!call.expect) return std::nullopt;
  std::string got = Field(outcome, call.expect->field);
  if (got == call.expect->value) return std::nullopt;
  return got;
}

}  // namespace hearth::hv::qemu

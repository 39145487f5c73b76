#include "hv/qemu/qmp_client.h"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "hv/qemu/qmp_message.h"

namespace hearth::hv::qemu {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() <= 0 ? 0 : static_cast<int>(left.count());
}

}  // namespace

Result<QmpClient> QmpClient::Connect(const std::string& socket_path,
                                     std::chrono::milliseconds timeout, bool bound_before) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(addr.sun_path)) {
    return Fail(Code::kInvalidArgument, fmt::format("qmp: socket path too long: {}", socket_path));
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  auto deadline = Clock::now() + timeout;
  int last_errno = 0;
  while (true) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return Fail(Code::kInternal, fmt::format("qmp: socket: {}", strerror(errno)));
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
      QmpClient client(fd, socket_path);
      auto greeting = client.ReadMessage(deadline);
      if (!greeting) return Fail(greeting.error());
      if (!greeting->contains("QMP")) {
        return Fail(Code::kUnavailable,
                    fmt::format("qmp {}: unexpected greeting {}", socket_path, greeting->dump()));
      }
      auto caps = client.Execute("qmp_capabilities", json::object(),
                                 std::chrono::milliseconds(RemainingMs(deadline) + 1));
      if (!caps) return Fail(caps.error());
      return client;
    }
    last_errno = errno;
    close(fd);
    if (bound_before && (last_errno == ECONNREFUSED || last_errno == ENOENT)) {
      return Fail(Code::kUnavailable,
                  fmt::format("qmp: {} is no longer listening ({}): the VMM ended", socket_path,
                              strerror(last_errno)));
    }
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return Fail(Code::kUnavailable, fmt::format("qmp: cannot connect to {} within {} ms: {}",
                                              socket_path, timeout.count(), strerror(last_errno)));
}

QmpClient::QmpClient(QmpClient&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      path_(std::move(other.path_)),
      buffer_(std::move(other.buffer_)),
      events_(std::move(other.events_)) {}

QmpClient& QmpClient::operator=(QmpClient&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    path_ = std::move(other.path_);
    buffer_ = std::move(other.buffer_);
    events_ = std::move(other.events_);
  }
  return *this;
}

QmpClient::~QmpClient() {
  if (fd_ >= 0) close(fd_);
}

Result<json> QmpClient::ReadAny(Clock::time_point deadline) {
  while (true) {
    size_t newline = buffer_.find('\n');
    if (newline != std::string::npos) {
      std::string line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      return ParseQmpLine(line, fmt::format("qmp {}", path_));
    }
    pollfd p{fd_, POLLIN, 0};
    int ready = poll(&p, 1, RemainingMs(deadline));
    if (ready == 0) {
      return Fail(Code::kUnavailable, fmt::format("qmp {}: no answer in time", path_));
    }
    if (ready < 0) {
      if (errno == EINTR) continue;
      return Fail(Code::kUnavailable, fmt::format("qmp {}: poll: {}", path_, strerror(errno)));
    }
    char chunk[4096];
    ssize_t n = read(fd_, chunk, sizeof(chunk));
    if (n == 0)
      return Fail(Code::kUnavailable, fmt::format("qmp {}: QEMU closed the socket", path_));
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return Fail(Code::kUnavailable, fmt::format("qmp {}: read: {}", path_, strerror(errno)));
    }
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

Result<json> QmpClient::ReadMessage(Clock::time_point deadline) {
  while (true) {
    auto message = ReadAny(deadline);
    if (!message || !IsQmpEvent(*message)) return message;
    events_.push_back(std::move(*message));
  }
}

Result<json> QmpClient::Execute(const std::string& command, const json& arguments,
                                std::chrono::milliseconds timeout) {
  return Call(-1, command, arguments, timeout);
}

Result<json> QmpClient::ExecuteWithFd(int fd, const std::string& command, const json& arguments,
                                      std::chrono::milliseconds timeout) {
  if (fd < 0) return Fail(Code::kInvalidArgument, fmt::format("qmp {}: no descriptor", command));
  return Call(fd, command, arguments, timeout);
}

Result<json> QmpClient::Call(int fd, const std::string& command, const json& arguments,
                             std::chrono::milliseconds timeout) {
  if (fd_ < 0) return Fail(Code::kUnavailable, "qmp: not connected");
  json request = {{"execute", command}};
  if (!arguments.empty()) request["arguments"] = arguments;
  std::string line = request.dump() + "\n";
  size_t sent = 0;
  while (sent < line.size()) {
    iovec iov{line.data() + sent, line.size() - sent};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    if (fd >= 0 && sent == 0) {  // the descriptor travels with the command's first byte
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    ssize_t n = sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(Code::kUnavailable,
                  fmt::format("qmp {}: sending {}: {}", path_, command, strerror(errno)));
    }
    sent += static_cast<size_t>(n);
  }
  auto answer = ReadMessage(Clock::now() + timeout);
  if (!answer) return Fail(answer.error().Wrap(fmt::format("qmp {}", command)));
  return QmpCommandAnswer(*answer, command);
}

Result<json> QmpClient::WaitEvent(const std::string& name,
                                  const std::function<bool(const json& data)>& match,
                                  std::chrono::milliseconds timeout) {
  auto matches = [&](const json& e) { return QmpEventName(e) == name && match(QmpEventData(e)); };
  for (auto it = events_.begin(); it != events_.end(); ++it) {
    if (!matches(*it)) continue;
    json data = QmpEventData(*it);
    events_.erase(it);
    return data;
  }
  auto deadline = Clock::now() + timeout;
  while (true) {
    auto message = ReadAny(deadline);
    if (!message) {
      return Fail(message.error().Wrap(fmt::format("waiting for the {} event", name)));
    }
    if (!IsQmpEvent(*message)) continue;  // an answer nobody waits for
    if (matches(*message)) return QmpEventData(*message);
    events_.push_back(std::move(*message));
  }
}

Result<json> QmpClient::Send(const QmpCall& call, int fd) {
  if (fd >= 0) return ExecuteWithFd(fd, call.execute, call.arguments, call.timeout);
  return Execute(call.execute, call.arguments, call.timeout);
}

Result<json> QmpClient::Await(const QmpEventWait& wait) {
  auto match = [&](const json& data) {
    std::string status = MigrationStatus(data);
    for (const auto& s : wait.statuses) {
      if (s == status) return true;
    }
    return false;
  };
  return WaitEvent(wait.event, match, wait.timeout);
}

std::vector<json> QmpClient::TakeEvents() {
  std::vector<json> out;
  out.swap(events_);
  return out;
}

}  // namespace hearth::hv::qemu

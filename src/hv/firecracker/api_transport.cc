#include "hv/firecracker/api_transport.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace hearth::hv::firecracker {
namespace {

using Clock = std::chrono::steady_clock;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

int MillisLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Waits for `events` on `fd` until the deadline; false on timeout or error.
bool Await(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int rc = poll(&p, 1, MillisLeft(deadline));
    if (rc < 0 && errno == EINTR) continue;
    return rc > 0;
  }
}

}  // namespace

std::string FormatRequest(const ApiRequest& r) {
  std::string out = fmt::format("{} {} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n",
                                r.method, r.path);
  if (!r.body.empty()) {
    out += fmt::format("Content-Type: application/json\r\nContent-Length: {}\r\n", r.body.size());
  }
  out += "\r\n";
  out += r.body;
  return out;
}

Result<std::optional<ApiResponse>> ParseResponse(std::string_view raw, bool closed) {
  auto head_end = raw.find("\r\n\r\n");
  if (head_end == std::string_view::npos) {
    if (closed) {
      return Fail(
          Code::kUnavailable,
          fmt::format("the connection closed after {} bytes, before a whole answer", raw.size()));
    }
    return std::nullopt;
  }
  std::string_view head = raw.substr(0, head_end);
  auto line_end = head.find("\r\n");
  std::string_view status_line = head.substr(0, line_end);
  // "HTTP/1.1 204 " or "HTTP/1.1 400 Bad Request"
  if (status_line.substr(0, 7) != "HTTP/1." || status_line.size() < 12) {
    return Fail(Code::kInvalidArgument,
                fmt::format("not an HTTP/1.x status line: '{}'", status_line));
  }
  ApiResponse response;
  std::string_view code = status_line.substr(9, 3);
  auto [ptr, ec] = std::from_chars(code.data(), code.data() + code.size(), response.status);
  if (ec != std::errc{} || ptr != code.data() + code.size()) {
    return Fail(Code::kInvalidArgument, fmt::format("bad status code in '{}'", status_line));
  }
  std::optional<size_t> length;
  std::string_view rest = line_end == std::string_view::npos ? "" : head.substr(line_end + 2);
  while (!rest.empty()) {
    auto end = rest.find("\r\n");
    std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? "" : rest.substr(end + 2);
    auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string name = Lower(Trim(line.substr(0, colon)));
    std::string_view value = Trim(line.substr(colon + 1));
    if (name == "content-length") {
      size_t n = 0;
      auto [p, e] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (e != std::errc{} || p != value.data() + value.size()) {
        return Fail(Code::kInvalidArgument, fmt::format("bad Content-Length '{}'", value));
      }
      length = n;
    } else if (name == "transfer-encoding" && Lower(value) != "identity") {
      return Fail(Code::kInvalidArgument,
                  fmt::format("Transfer-Encoding '{}' is not supported", value));
    }
  }
  std::string_view body = raw.substr(head_end + 4);
  bool no_body = response.status / 100 == 1 || response.status == 204 || response.status == 304;
  if (no_body) length = 0;
  if (length) {
    if (body.size() < *length) {
      if (closed) {
        return Fail(
            Code::kUnavailable,
            fmt::format("the connection closed after {} of {} body bytes", body.size(), *length));
      }
      return std::nullopt;
    }
    response.body = std::string(body.substr(0, *length));
    return response;
  }
  if (!closed) return std::nullopt;  // the body runs to the end of the connection
  response.body = std::string(body);
  return response;
}

Result<ApiResponse> UnixSocketTransport::Send(const ApiRequest& request,
                                              std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  auto fail = [&](int fd, std::string what) -> tl::unexpected<Error> {
    int err = errno;
    if (fd >= 0) ::close(fd);
    return Fail(Code::kUnavailable,
                fmt::format("{} {} on {}: {}", request.method, request.path, socket_.string(),
                            what.empty() ? strerror(err) : what));
  };
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_.string().size() >= sizeof(addr.sun_path)) {
    return Fail(Code::kInvalidArgument,
                fmt::format("socket path {} is too long for a unix socket", socket_.string()));
  }
  std::strncpy(addr.sun_path, socket_.c_str(), sizeof(addr.sun_path) - 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return fail(-1, "");
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 &&
      errno != EINPROGRESS) {
    return fail(fd, "connecting");
  }
  std::string out = FormatRequest(request);
  size_t sent = 0;
  while (sent < out.size()) {
    if (!Await(fd, POLLOUT, deadline)) return fail(fd, "timed out sending");
    ssize_t n = ::send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n < 0) return fail(fd, "");
    sent += static_cast<size_t>(n);
  }
  std::string raw;
  char buf[8192];
  for (;;) {
    if (!Await(fd, POLLIN, deadline)) {
      return fail(fd, fmt::format("no whole answer within {} ms", timeout.count()));
    }
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n < 0) return fail(fd, "");
    if (n > 0) raw.append(buf, static_cast<size_t>(n));
    auto parsed = ParseResponse(raw, n == 0);
    if (!parsed) {
      ::close(fd);
      return Fail(parsed.error().Wrap(
          fmt::format("{} {} on {}", request.method, request.path, socket_.string())));
    }
    if (*parsed) {
      ::close(fd);
      return **parsed;
    }
  }
}

}  // namespace hearth::hv::firecracker

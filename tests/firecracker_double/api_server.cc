#include "firecracker_double/api_server.h"

#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "firecracker_double/host.h"

namespace hearth::fcdouble {
namespace {

constexpr size_t kMaxHeaderBytes = 16 * 1024;

std::string Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 413:
      return "Payload Too Large";
    default:
      return "Internal Server Error";
  }
}

bool WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

std::string Render(const ApiResponse& r) {
  std::string out =
      fmt::format("HTTP/1.1 {} {}\r\nServer: Firecracker API\r\n", r.status, Reason(r.status));
  if (!r.body.empty()) out += "Content-Type: application/json\r\n";
  out += fmt::format("Content-Length: {}\r\n\r\n", r.body.size());
  out += r.body;
  return out;
}

std::string LowerCopy(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Serves one connection until the peer closes it or a request asks to close.
void ServeConnection(int fd, size_t limit, std::mutex& mu,
                     const std::function<ApiResponse(const ApiRequest&)>& handler) {
  std::string buf;
  char chunk[8192];
  auto fill = [&]() {
    ssize_t n;
    do n = ::recv(fd, chunk, sizeof(chunk), 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0) return false;
    buf.append(chunk, static_cast<size_t>(n));
    return true;
  };
  for (;;) {
    size_t end;
    while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
      if (buf.size() > kMaxHeaderBytes || !fill()) return;
    }
    std::string head = buf.substr(0, end);
    buf.erase(0, end + 4);
    ApiRequest req;
    std::string version;
    bool close_after = false;
    bool bad = false;
    std::string bad_message = "Invalid HTTP request.";
    size_t content_length = 0;
    bool has_length = false;
    {
      size_t line_end = head.find("\r\n");
      std::string line = head.substr(0, line_end);
      size_t s1 = line.find(' ');
      size_t s2 = s1 == std::string::npos ? s1 : line.find(' ', s1 + 1);
      if (s1 == std::string::npos || s2 == std::string::npos) {
        bad = true;
      } else {
        req.method = line.substr(0, s1);
        std::string target = line.substr(s1 + 1, s2 - s1 - 1);
        version = line.substr(s2 + 1);
        req.path = target.substr(0, target.find('?'));
        if (version != "HTTP/1.1" && version != "HTTP/1.0") bad = true;
        if (version == "HTTP/1.0") close_after = true;
      }
      size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
      while (pos < head.size()) {
        size_t e = head.find("\r\n", pos);
        if (e == std::string::npos) e = head.size();
        std::string h = head.substr(pos, e - pos);
        pos = e + 2;
        size_t colon = h.find(':');
        if (colon == std::string::npos) continue;
        std::string name = LowerCopy(h.substr(0, colon));
        std::string value = h.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.erase(0, 1);
        while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.pop_back();
        if (name == "content-length") {
          try {
            content_length = std::stoull(value);
            has_length = true;
          } catch (...) {
            bad = true;
          }
        } else if (name == "connection") {
          if (LowerCopy(value) == "close") close_after = true;
        } else if (name == "transfer-encoding") {
          bad = true;
          bad_message = "Transfer-Encoding is not supported.";
        }
      }
    }
    ApiResponse resp;
    if (!bad && has_length && content_length > limit) {
      resp =
          Fault(fmt::format("Request payload with size {} is larger than the limit of {} "
                            "allowed by server.",
                            content_length, limit));
      close_after = true;
    } else if (bad) {
      resp = Fault(bad_message);
      close_after = true;
    } else {
      while (buf.size() < content_length) {
        if (!fill()) return;
      }
      req.body = buf.substr(0, content_length);
      buf.erase(0, content_length);
      std::lock_guard lock(mu);
      resp = handler(req);
    }
    if (!WriteAll(fd, Render(resp))) return;
    if (resp.exit_after >= 0) {
      std::fflush(stdout);
      ::_exit(resp.exit_after);
    }
    if (close_after) return;
  }
}

}  // namespace

ApiResponse Fault(std::string message, int status) {
  ApiResponse r;
  r.status = status;
  r.body = nlohmann::json{{"fault_message", std::move(message)}}.dump();
  return r;
}

Result<ApiServer> ApiServer::Bind(const std::string& socket_path, size_t payload_limit) {
  // Checked here too, for Firecracker's wording of it.
  if (socket_path.size() >= sizeof(sockaddr_un::sun_path)) {
    return Fail(Code::kInvalidArgument,
                fmt::format("IO error: path must be shorter than SUN_LEN: {}", socket_path));
  }
  int err = 0;
  auto fd = ListenUnix(socket_path, 64, &err);
  if (!fd) {
    if (fd.error().code == Code::kInternal) {  // no socket
      return Fail(Code::kInternal, fmt::format("IO error: {}", std::strerror(err)));
    }
    return Fail(Code::kUnavailable,
                fmt::format("IO error: {} (os error {})",
                            err == EADDRINUSE ? "Address in use" : std::strerror(err), err));
  }
  return ApiServer(fd->Release(), payload_limit);
}

void ApiServer::Serve(std::function<ApiResponse(const ApiRequest&)> handler) {
  auto shared = std::make_shared<std::function<ApiResponse(const ApiRequest&)>>(std::move(handler));
  static std::mutex mu;
  for (;;) {
    int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      std::fprintf(stderr, "firecracker double: accept: %s\n", std::strerror(errno));
      ::_exit(1);
    }
    size_t limit = limit_;
    std::thread([c, limit, shared] {
      ServeConnection(c, limit, mu, *shared);
      ::close(c);
    }).detach();
  }
}

}  // namespace hearth::fcdouble

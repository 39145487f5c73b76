#include "support/firecracker_double.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#ifndef FC_DOUBLE_BIN_DIR
#error "FC_DOUBLE_BIN_DIR must be defined by tests/CMakeLists.txt"
#endif
#ifndef FC_DOUBLE_SPEC_PATH
#error "FC_DOUBLE_SPEC_PATH must be defined by tests/CMakeLists.txt"
#endif

extern char** environ;

namespace hearth::testing {
namespace {

using Clock = std::chrono::steady_clock;

int Connect(const std::filesystem::path& socket) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string p = socket.string();
  if (p.size() >= sizeof(addr.sun_path)) return -1;
  std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

FcDoublePaths FirecrackerDoublePaths() {
  const std::filesystem::path bin = FC_DOUBLE_BIN_DIR;
  return {bin / "firecracker", bin / "jailer", FC_DOUBLE_SPEC_PATH};
}

std::string FcJournalEntry::Text() const { return fmt::format("{} {} {}", method, path, status); }

std::vector<FcJournalEntry> ReadFcJournal(const std::filesystem::path& journal) {
  std::vector<FcJournalEntry> out;
  std::ifstream in(journal);
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    FcJournalEntry e;
    if (words >> e.method >> e.path >> e.status) out.push_back(e);
  }
  return out;
}

Result<FcResponse> FcApiCall(const std::filesystem::path& socket, const std::string& method,
                             const std::string& path, const std::string& body,
                             std::chrono::milliseconds timeout) {
  int fd = Connect(socket);
  if (fd < 0) {
    return Fail(Code::kUnavailable,
                fmt::format("connecting to {}: {}", socket.string(), std::strerror(errno)));
  }
  std::string req =
      fmt::format("{} {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n", method, path);
  if (!body.empty()) {
    req += fmt::format("Content-Type: application/json\r\nContent-Length: {}\r\n", body.size());
  }
  req += "\r\n" + body;
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    ::close(fd);
    return Fail(Code::kUnavailable, "sending the request failed");
  }
  std::string raw;
  const auto deadline = Clock::now() + timeout;
  char buf[8192];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      ::close(fd);
      return Fail(Code::kUnavailable, fmt::format("no answer to {} {} in time", method, path));
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  size_t end = raw.find("\r\n\r\n");
  if (!raw.starts_with("HTTP/1.1 ") || end == std::string::npos) {
    return Fail(Code::kUnavailable, fmt::format("not an HTTP answer: '{}'", raw));
  }
  FcResponse r;
  r.status = std::atoi(raw.c_str() + 9);
  std::istringstream head(raw.substr(0, end));
  std::string line;
  std::getline(head, line);
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    r.headers[name] = value;
  }
  r.body = raw.substr(end + 4);
  return r;
}

Result<FcDoubleProcess> FcDoubleProcess::Start(const std::vector<std::string>& argv,
                                               const std::map<std::string, std::string>& env,
                                               const std::filesystem::path& output) {
  std::vector<std::string> envs;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv = *e;
    if (!env.contains(kv.substr(0, kv.find('=')))) envs.push_back(kv);
  }
  for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
  std::vector<char*> cargv, cenv;
  std::vector<std::string> args = argv;
  for (auto& a : args) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  for (auto& e : envs) cenv.push_back(e.data());
  cenv.push_back(nullptr);
  const std::string out = output.string();
  pid_t pid = ::fork();
  if (pid < 0) return Fail(Code::kInternal, "fork failed");
  if (pid == 0) {
    int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execve(cargv[0], cargv.data(), cenv.data());
    ::_exit(127);
  }
  return FcDoubleProcess(pid);
}

FcDoubleProcess::~FcDoubleProcess() {
  if (pid_ > 0 && status_ < 0) {
    ::kill(pid_, SIGKILL);
    int st;
    ::waitpid(pid_, &st, 0);
  }
}

bool FcDoubleProcess::Running() {
  if (status_ >= 0) return false;
  int st;
  pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return false;
  }
  return true;
}

Status FcDoubleProcess::WaitForSocket(const std::filesystem::path& socket,
                                      std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    int fd = Connect(socket);
    if (fd >= 0) {
      ::close(fd);
      return Ok();
    }
    if (!Running()) {
      return Fail(Code::kUnavailable, fmt::format("the process exited with {} before {} was up",
                                                  status_, socket.string()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return Fail(Code::kUnavailable, fmt::format("{} did not come up in time", socket.string()));
}

Result<int> FcDoubleProcess::Wait(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Running()) {
    if (Clock::now() >= deadline) return Fail(Code::kUnavailable, "the process is still running");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return status_;
}

}  // namespace hearth::testing

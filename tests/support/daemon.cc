#include "support/daemon.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>

#include "support/vm_env.h"

namespace hearth::testing {
namespace {

std::vector<char*> CArgs(const std::vector<std::string>& args) {
  std::vector<char*> out;
  for (const auto& a : args) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

}  // namespace

std::filesystem::path BuildDir() { return HEARTH_BUILD_DIR; }

Result<std::unique_ptr<DaemonProcess>> DaemonProcess::Start(const std::filesystem::path& data_dir,
                                                            std::vector<std::string> extra_args) {
  std::vector<std::string> args = {(BuildDir() / "hearthd").string(),
                                   "--data-dir",
                                   data_dir.string(),
                                   "--listen",
                                   "127.0.0.1:0",
                                   "--log-level",
                                   "warn"};
  // VMs of tests never share addresses with each other or with a production hearthd.
  if (std::find(extra_args.begin(), extra_args.end(), "--network-pool") == extra_args.end()) {
    args.insert(args.end(), {"--network-pool", TestNetworkPool()});
  }
  // Tests boot /bin/true "kernels", files in their TempDirs and the build's images: allow
  // exactly those places, unless the test sets its own.
  if (std::find(extra_args.begin(), extra_args.end(), "--allowed-paths") == extra_args.end()) {
    args.insert(args.end(), {"--allowed-paths", "/usr/bin,/tmp," + BuildDir().string()});
  }
  for (auto& a : extra_args) args.push_back(std::move(a));
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return Fail(Code::kInternal, "pipe failed");
  pid_t pid = fork();
  if (pid < 0) return Fail(Code::kInternal, "fork failed");
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    auto argv = CArgs(args);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  std::unique_ptr<DaemonProcess> d(new DaemonProcess());
  d->pid_ = pid;
  d->data_dir_ = data_dir;
  std::string line;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{out[0], POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char c;
    ssize_t n = read(out[0], &c, 1);
    if (n <= 0) break;
    if (c != '\n') {
      line += c;
      continue;
    }
    auto at = line.find("http://127.0.0.1:");
    if (at != std::string::npos) {
      d->port_ = static_cast<uint16_t>(std::stoi(line.substr(at + 17)));
      close(out[0]);  // hearthd prints nothing else on stdout
      return d;
    }
    line.clear();
  }
  close(out[0]);
  int status = d->Reap(0);
  return Fail(Code::kUnavailable,
              fmt::format("hearthd did not report listening (exit status {}); last line: {}",
                          status, line));
}

DaemonProcess::~DaemonProcess() {
  if (pid_ > 0) Terminate();
  if (clean_up_host_) CleanUpHost(data_dir_);
}

std::string DaemonProcess::token() const {
  std::ifstream in(data_dir_ / "admin.token");
  std::string t;
  std::getline(in, t);
  return t;
}

http::ClientOptions DaemonProcess::UnixClient() const {
  http::ClientOptions o;
  o.unix_socket = socket().string();
  return o;
}

http::ClientOptions DaemonProcess::TcpClient(bool with_token) const {
  http::ClientOptions o;
  o.host = "127.0.0.1";
  o.port = port_;
  if (with_token) o.token = token();
  return o;
}

int DaemonProcess::Reap(int timeout_ms) {
  if (pid_ <= 0) return -1;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  int status = 0;
  while (true) {
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

void DaemonProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  Reap(10000);
}

std::optional<int> DaemonProcess::WaitForExit(int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (pid_ > 0) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return std::nullopt;
}

int DaemonProcess::Terminate() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  return Reap(10000);
}

RunResult RunProgram(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                     const std::string& stdin_data) {
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) return {};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    for (const auto& e : env) putenv(const_cast<char*>(e.c_str()));
    auto args = CArgs(argv);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  if (!stdin_data.empty()) {
    ssize_t n = write(in[1], stdin_data.data(), stdin_data.size());
    (void)n;
  }
  close(in[1]);
  RunResult r;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0) {
    if (poll(fds, 2, 30000) <= 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      char buf[4096];
      ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      }
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  return r;
}

RunResult HearthCli(const DaemonProcess& daemon, std::vector<std::string> args) {
  args.insert(args.begin(), (BuildDir() / "hearth").string());
  return RunProgram(args, {"HEARTH_SOCKET=" + daemon.socket().string()});
}

nlohmann::json ShowVm(const DaemonProcess& daemon, const std::string& name) {
  RunResult r = HearthCli(daemon, {"vm", "show", name, "-o", "json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return nlohmann::json::parse(r.out, nullptr, false);
}

}  // namespace hearth::testing

#include "support/clickhouse_server.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

#include "http/clickhouse_http_transport.h"

namespace hearth::testing {
namespace {

// Where Debian's clickhouse-server package puts the server.
constexpr const char* kBinary = "/usr/sbin/clickhouse-server";

// The lowest port the kernel hands out for outgoing connections.
int EphemeralLow() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 32768;
  in >> low;
  return low;
}

// A port nothing is bound to now, below the ephemeral range: the server is stopped and started
// again on the same ports, and while it is down, an outgoing connection of another test must not
// be given its port.
uint16_t FreePort() {
  static std::mt19937 rng(std::random_device{}());
  int low = std::max(EphemeralLow(), 20001);
  std::uniform_int_distribution<int> pick(20000, low - 1);
  for (int attempt = 0; attempt < 100; ++attempt) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(pick(rng)));
    bool free = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    close(fd);
    if (free) return ntohs(a.sin_port);
  }
  return 0;
}

// The last lines of a log, for an error message.
std::string LogTail(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::string line, tail;
  std::vector<std::string> lines;
  while (std::getline(in, line)) lines.push_back(line);
  for (size_t i = lines.size() > 5 ? lines.size() - 5 : 0; i < lines.size(); ++i) {
    tail += lines[i] + "\n";
  }
  return tail.empty() ? fmt::format("{} is empty", path.string()) : tail;
}

}  // namespace

Result<std::unique_ptr<ClickHouseServer>> ClickHouseServer::Start() {
  if (access(kBinary, X_OK) != 0) {
    return Fail(Code::kUnavailable,
                "clickhouse-server is not installed; run scripts/deps.sh (as root)");
  }
  std::unique_ptr<ClickHouseServer> s(new ClickHouseServer());
  s->http_port_ = FreePort();
  s->tcp_port_ = FreePort();
  const std::filesystem::path& d = s->dir_.path();
  std::ofstream(d / "config.xml") << fmt::format(
      R"(<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{0}/server.log</log><errorlog>{0}/server.err.log</errorlog>
    <size>10M</size><count>1</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{1}</http_port>
  <tcp_port>{2}</tcp_port>
  <path>{0}/data/</path>
  <tmp_path>{0}/tmp/</tmp_path>
  <user_files_path>{0}/user_files/</user_files_path>
  <format_schema_path>{0}/format_schemas/</format_schema_path>
  <users_config>/etc/clickhouse-server/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <timezone>UTC</timezone>
</yandex>
)",
      d.string(), s->http_port_, s->tcp_port_);
  if (auto st = s->Spawn(); !st) return Fail(st.error());
  return s;
}

Status ClickHouseServer::Spawn() {
  // Built before fork: the child of a threaded process must not allocate.
  std::string config_arg = "--config-file=" + (dir_.path() / "config.xml").string();
  std::string log = (dir_.path() / "stdout.log").string();
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return Fail(Code::kInternal, "fork failed");
  if (pid == 0) {
    // Dies with the test process, however that ends.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
    }
    execl(kBinary, "clickhouse-server", config_arg.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  pid_ = pid;
  // Generous: under a loaded CI machine its start has taken tens of seconds.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  while (std::chrono::steady_clock::now() < deadline) {
    if (Query("SELECT 1")) return Ok();
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return Fail(Code::kUnavailable, fmt::format("clickhouse-server exited at start: {}",
                                                  LogTail(dir_.path() / "server.err.log")));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  Stop(true);
  return Fail(Code::kUnavailable, fmt::format("clickhouse-server did not answer within 90 s: {}",
                                              LogTail(dir_.path() / "server.err.log")));
}

ClickHouseServer::~ClickHouseServer() { Stop(true); }

std::string ClickHouseServer::Url(const std::string& database) const {
  return fmt::format("http://127.0.0.1:{}/{}", http_port_, database);
}

void ClickHouseServer::Stop(bool kill) {
  if (pid_ <= 0) return;
  ::kill(pid_, kill ? SIGKILL : SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  int status;
  while (waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) ::kill(pid_, SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  pid_ = -1;
}

Status ClickHouseServer::StartAgain() {
  if (pid_ > 0) return Ok();
  return Spawn();
}

Result<std::string> ClickHouseServer::Query(const std::string& sql) const {
  metering::ClickHouseEndpoint e;
  e.host = "127.0.0.1";
  e.port = http_port_;
  http::ClickHouseHttpTransport t(e, std::chrono::seconds(10));
  auto r = t.Execute(sql, {});
  if (!r) return Fail(r.error());
  if (r->status != 200) {
    return Fail(Code::kInternal, fmt::format("clickhouse: HTTP {}: {}", r->status, r->body));
  }
  return std::move(r->body);
}

}  // namespace hearth::testing

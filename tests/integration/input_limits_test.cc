// The real hearthd against input that is cut or overflows, and against paths an API caller may
// name (hardening points 3 and 4): each repro of the issue is refused with 400 naming the field,
// and none of them creates a VM. Over the unix socket, which needs no token: what is refused here
// is refused to the admin token too.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "http/client.h"
#include "support/daemon.h"
#include "support/scope_guard.h"
#include "support/temp_dir.h"

namespace hearth::testing {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

class InputLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = DaemonProcess::Start(dir_ / "data");
    ASSERT_TRUE(d) << d.error().message;
    daemon_ = std::move(*d);
    client_ = std::make_unique<http::Client>(daemon_->UnixClient());
  }

  void TearDown() override {
    if (!client_) return;
    auto r = client_->Request("GET", "/v1/vms");
    ASSERT_TRUE(r);
    json vms = json::parse(r->body)["vms"];
    std::vector<std::string> names;
    for (const json& vm : vms) names.push_back(vm["name"].get<std::string>());
    EXPECT_EQ(names, allowed_vms_) << "only the good requests created VMs";
  }

  // Sends `body` to POST /v1/vms; expects 400 with `field` and `says` in the message.
  void ExpectRefused(const std::string& body, const std::string& field, const std::string& says) {
    SCOPED_TRACE(body.substr(0, 200));
    auto r = client_->Request("POST", "/v1/vms", body);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->status, 400) << r->body;
    json err = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(err.is_object() && err["error"].is_object()) << r->body;
    EXPECT_EQ(err["error"]["code"], "invalid_argument");
    EXPECT_EQ(err["error"]["field"], field) << r->body;
    EXPECT_THAT(err["error"]["message"].get<std::string>(), HasSubstr(says));
  }

  TempDir dir_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<http::Client> client_;
  std::vector<std::string> allowed_vms_;
};

TEST_F(InputLimitsTest, ControlCharactersInPathsAreRefused) {
  // Before: 201, and QEMU's -drive would have lost ",format=qcow2" at the NUL.
  ExpectRefused(json{{"name", "cut"},
                     {"kernel", "/bin/true"},
                     {"rootfs", std::string("/bin/true\0,format=qcow2", 23)}}
                    .dump(),
                "rootfs", "contains a NUL byte (byte 0x00 at offset 9)");
  ExpectRefused(json{{"name", "cut"}, {"kernel", std::string("/bin/true\0", 10)}}.dump(), "kernel",
                "NUL byte");
  ExpectRefused(
      json{{"name", "esc"}, {"kernel", "/bin/true"}, {"initrd", "/bin/true\x1b[2J"}}.dump(),
      "initrd", "/bin/true\\x1b[2J' contains an escape");
  ExpectRefused(json{{"name", "tab"}, {"kernel", "/bin/true"}, {"cmdline", "a\tb"}}.dump(),
                "cmdline", "a tab");
}

TEST_F(InputLimitsTest, PathsOutsideTheAllowedOnesAndHearthsOwnFilesAreRefused) {
  std::string data = daemon_->data_dir().string();
  ExpectRefused(json{{"name", "a"}, {"kernel", "/bin/true"}, {"initrd", "/etc/shadow"}}.dump(),
                "initrd", "'/etc/shadow' is outside the paths hearthd allows");
  ExpectRefused(
      json{{"name", "a"}, {"kernel", "/bin/true"}, {"initrd", data + "/admin.token"}}.dump(),
      "initrd", "is one of hearth's own files");
  ExpectRefused(json{{"name", "a"}, {"kernel", "/bin/true"}, {"rootfs", data + "/state.db"}}.dump(),
                "rootfs", "is one of hearth's own files");
  ExpectRefused(
      json{{"name", "a"}, {"kernel", "/bin/true"}, {"rootfs", data + "/images/../state.db"}}.dump(),
      "rootfs", "is one of hearth's own files");
  // A symlink in an allowed directory does not lead out of it.
  std::filesystem::create_symlink(data + "/admin.token", dir_ / "token-link");
  ExpectRefused(
      json{{"name", "a"}, {"kernel", "/bin/true"}, {"initrd", (dir_ / "token-link").string()}}
          .dump(),
      "initrd", "resolves to '" + data + "/admin.token'");
  if (std::filesystem::is_block_file("/dev/loop0")) {
    ExpectRefused(json{{"name", "a"}, {"kernel", "/bin/true"}, {"rootfs", "/dev/loop0"}}.dump(),
                  "rootfs", "'/dev/loop0' is a block device");
  }
  ExpectRefused(json{{"name", "a"}, {"kernel", "/proc/self/exe"}}.dump(), "kernel",
                "is under /proc");
  // What the allowed paths hold is still accepted.
  auto r =
      client_->Request("POST", "/v1/vms", json{{"name", "fine"}, {"kernel", "/bin/true"}}.dump());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 201) << r->body;
  allowed_vms_ = {"fine"};
}

TEST_F(InputLimitsTest, DurationsAndRangesThatOverflowAreRefused) {
  // Before: 201, and NextTimer's due time wrapped into the past (the timer fired at once).
  ExpectRefused(
      json{{"name", "t"}, {"kernel", "/bin/true"}, {"timers", {{"stop_after", "106751991167d"}}}}
          .dump(),
      "timers.stop_after", "the maximum is 36500d");
  ExpectRefused(
      json{{"name", "t"}, {"kernel", "/bin/true"}, {"timers", {{"idle_timeout", "2900000d"}}}}
          .dump(),
      "timers.idle_timeout", "too long");
  for (const char* query :
       {"since=1000000000d", "since=106751991167d&until=9999-12-31T00:00:00Z&by=minute"}) {
    SCOPED_TRACE(query);
    auto r = client_->Request("GET", fmt::format("/v1/usage?{}", query));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << r->body;
    EXPECT_THAT(r->body, HasSubstr("is before 1970-01-01T00:00:00Z"));
  }
}

TEST_F(InputLimitsTest, DuplicateJsonKeysAreRefused) {
  ExpectRefused(R"({"name":"d","kernel":"/bin/true","kernel":"/etc/shadow"})", "kernel",
                "kernel: the key is given twice");
  ExpectRefused(R"({"name":"d","kernel":"/bin/true","timers":{"on_timer":"stop","on_timer":"x"}})",
                "timers.on_timer", "given twice");
}

// Binds `port` (0: any) on 127.0.0.1; returns the fd and the port, -1 on failure.
std::pair<int, int> Bind(int type) {
  int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
      (type == SOCK_STREAM && listen(fd, 1) != 0) ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return {-1, -1};
  }
  return {fd, ntohs(addr.sin_port)};
}

TEST_F(InputLimitsTest, APortHeldByAHostProcessCannotBePublished) {
  std::string me = fmt::format("(pid {})", getpid());
  for (auto [type, proto] : {std::pair{SOCK_STREAM, "tcp"}, std::pair{SOCK_DGRAM, "udp"}}) {
    auto [fd, port] = Bind(type);
    ASSERT_GE(fd, 0) << strerror(errno);
    Guard close_it([fd = fd] { close(fd); });
    ExpectRefused(json{{"name", "p"},
                       {"kernel", "/bin/true"},
                       {"publish", {fmt::format("{}:80/{}", port, proto)}}}
                      .dump(),
                  "publish[0].host_port",
                  fmt::format("host port {}/{} is held on this host by ", port, proto));
    auto r = client_->Request("POST", "/v1/vms",
                              json{{"name", "p"},
                                   {"kernel", "/bin/true"},
                                   {"publish", {fmt::format("{}:80/{}", port, proto)}}}
                                  .dump());
    ASSERT_TRUE(r);
    EXPECT_THAT(r->body, HasSubstr(me)) << "names this test process as the holder";
  }
}

TEST(InputLimitsDaemonTest, NetworkPoolsThatCannotRouteToVmsAreRefused) {
  TempDir dir;
  auto run = [&](const std::string& pool) {
    return RunProgram({(BuildDir() / "hearthd").string(), "--data-dir", (dir / "data").string(),
                       "--listen", "none", "--network-pool", pool});
  };
  for (auto [pool, says] :
       {std::pair{"127.0.0.0/16", "loopback"}, std::pair{"224.0.0.0/8", "multicast"},
        std::pair{"169.254.0.0/16", "link-local"}}) {
    RunResult r = run(pool);
    EXPECT_EQ(r.exit_code, 2) << pool;
    EXPECT_THAT(r.err, HasSubstr(says));
  }
  // The host's own subnet: a dummy interface of this test's, removed however the test ends.
  std::string name = fmt::format("hrtpool{}", getpid() % 100000);
  std::string net = fmt::format("10.213.{}.0/24", getpid() % 250);
  ASSERT_EQ(RunProgram({"ip", "link", "add", name, "type", "dummy"}).exit_code, 0);
  Guard remove([&] { RunProgram({"ip", "link", "del", name}); });
  ASSERT_EQ(
      RunProgram({"ip", "addr", "add", fmt::format("10.213.{}.1/24", getpid() % 250), "dev", name})
          .exit_code,
      0);
  RunResult r = run(net);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr(fmt::format("overlaps {} of host interface {}", net, name)));
  EXPECT_FALSE(std::filesystem::exists(dir / "data")) << "refused before touching the host";
}

}  // namespace
}  // namespace hearth::testing

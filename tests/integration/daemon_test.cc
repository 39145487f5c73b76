// hearthd as a process: tokens, the data dir lock, configuration errors, admission control.
#include "support/daemon.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "api/auth.h"
#include "support/temp_dir.h"

namespace hearth::testing {
namespace {

using nlohmann::json;

std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(DaemonTest, AdminTokenIsPrivateStoredHashedAndKeptAcrossRestarts) {
  TempDir dir;
  std::string token;
  {
    auto d = DaemonProcess::Start(dir.path());
    ASSERT_TRUE(d) << d.error().message;
    token = (*d)->token();
    ASSERT_EQ(token.size(), 68u);
    struct stat st {};
    ASSERT_EQ(stat((dir / "admin.token").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    ASSERT_EQ(stat((*d)->socket().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    ASSERT_EQ(stat(dir.path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    http::Client good((*d)->TcpClient());
    EXPECT_EQ(good.Request("GET", "/v1/vms")->status, 200);
    EXPECT_EQ((*d)->Terminate(), 0) << "SIGTERM is a clean exit";
    EXPECT_FALSE(std::filesystem::exists(dir / "hearthd.sock"));
  }
  std::string db = ReadFile(dir / "state.db") + ReadFile(dir / "state.db-wal");
  EXPECT_EQ(db.find(token), std::string::npos) << "the store holds no plaintext token";
  EXPECT_NE(db.find(api::Sha256Hex(token)), std::string::npos) << "it holds the hash";

  auto again = DaemonProcess::Start(dir.path());
  ASSERT_TRUE(again);
  EXPECT_EQ((*again)->token(), token) << "a restart keeps the token";
  http::ClientOptions old_token = (*again)->TcpClient();
  EXPECT_EQ(http::Client(old_token).Request("GET", "/v1/node")->status, 200);
  old_token.token = token + "x";
  EXPECT_EQ(http::Client(old_token).Request("GET", "/v1/node")->status, 401);
}

TEST(DaemonTest, ALostTokenFileIsReplacedAndTheOldTokenStopsWorking) {
  TempDir dir;
  std::string first;
  {
    auto d = DaemonProcess::Start(dir.path());
    ASSERT_TRUE(d);
    first = (*d)->token();
  }
  std::filesystem::remove(dir / "admin.token");
  auto d = DaemonProcess::Start(dir.path());
  ASSERT_TRUE(d);
  std::string second = (*d)->token();
  EXPECT_NE(second, first);
  http::ClientOptions o = (*d)->TcpClient();
  EXPECT_EQ(http::Client(o).Request("GET", "/v1/vms")->status, 200);
  o.token = first;
  EXPECT_EQ(http::Client(o).Request("GET", "/v1/vms")->status, 401);
}

TEST(DaemonTest, OneDaemonPerDataDir) {
  TempDir dir;
  auto d = DaemonProcess::Start(dir.path());
  ASSERT_TRUE(d);
  RunResult second = RunProgram({(BuildDir() / "hearthd").string(), "--data-dir",
                                 dir.path().string(), "--listen", "127.0.0.1:0"});
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_NE(second.err.find(fmt::format("another hearthd (pid {})", (*d)->pid())),
            std::string::npos)
      << second.err;
  http::Client c((*d)->UnixClient());
  EXPECT_EQ(c.Request("GET", "/healthz")->status, 200) << "the first one is unaffected";
}

TEST(DaemonTest, BadConfigurationIsRefusedBeforeTouchingTheHost) {
  TempDir dir;
  std::filesystem::path data = dir / "data";
  std::ofstream(dir / "bad.yaml") << "memory-ratio: 2\nlisten: 127.0.0.1:99999\n";
  std::ofstream(dir / "unknown.yaml") << "colour: blue\n";
  struct Case {
    std::vector<std::string> args;
    const char* says;
  } cases[] = {
      {{"--memory-ratio", "0"}, "--memory-ratio: 0 is out of range"},
      {{"--listen", "127.0.0.1:99999"}, "--listen: '127.0.0.1:99999'"},
      {{"--hypervisor", "xen"}, "--hypervisor: 'xen'"},
      {{"--store", "postgresql://db"}, "--store"},
      {{"--log-level", "chatty"}, "--log-level: 'chatty'"},
      {{"--config", (dir / "bad.yaml").string()}, "--listen: '127.0.0.1:99999'"},
      {{"--config", (dir / "unknown.yaml").string()}, "unknown key 'colour'"},
      {{"--frobnicate"}, "frobnicate"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.says);
    std::vector<std::string> argv = {(BuildDir() / "hearthd").string(), "--data-dir",
                                     data.string()};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    RunResult r = RunProgram(argv);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
    EXPECT_FALSE(std::filesystem::exists(data)) << "nothing was created";
  }
  RunResult help = RunProgram({(BuildDir() / "hearthd").string(), "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--memory-ratio"), std::string::npos);
  EXPECT_NE(help.out.find("Examples"), std::string::npos);
}

TEST(DaemonTest, AdmissionControlRefusesStartsBeyondTheMemoryRatio) {
  TempDir dir;
  // A ratio so small that even the smallest VM does not fit.
  auto d = DaemonProcess::Start(dir.path(), {"--memory-ratio", "0.001"});
  ASSERT_TRUE(d);
  http::Client c((*d)->UnixClient());
  auto node = c.Request("GET", "/v1/node");
  ASSERT_TRUE(node);
  json info = json::parse(node->body);
  EXPECT_GT(info["memory_mib"].get<int64_t>(), 0);
  EXPECT_EQ(info["memory_ratio"], 0.001);
  EXPECT_EQ(info["memory_running_mib"], 0);
  ASSERT_EQ(info["backends"].size(), 1u) << info.dump();
  EXPECT_EQ(info["backends"][0].get<std::string>().rfind("qemu-", 0), 0u) << info.dump();
  EXPECT_FALSE(info["backend_note"].get<std::string>().empty());
  ASSERT_EQ(c.Request("POST", "/v1/vms", R"({"name":"web","kernel":"/bin/true","memory_mib":64})")
                ->status,
            201);
  auto start = c.Request("POST", "/v1/vms/web/start");
  ASSERT_TRUE(start);
  EXPECT_EQ(start->status, 429);
  json err = json::parse(start->body)["error"];
  EXPECT_EQ(err["code"], "resource_exhausted");
  EXPECT_NE(err["message"].get<std::string>().find("--memory-ratio"), std::string::npos);
  EXPECT_EQ(json::parse(c.Request("GET", "/v1/vms/web")->body)["state"], "created");
}

}  // namespace
}  // namespace hearth::testing

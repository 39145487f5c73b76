#include "hv/qemu/qmp_client.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <thread>

#include "hv/qemu/qmp_migration.h"
#include "support/temp_dir.h"

namespace hearth::hv::qemu {
namespace {

using namespace std::chrono_literals;

// A one-connection QMP server that answers with a script: for each line received, the lines in
// the matching reply (which may include events before the answer). Given `listen_when`, it
// creates its socket only once that is ready (like QEMU, some time after its exec).
class FakeQmpServer {
 public:
  FakeQmpServer(const std::string& path, std::vector<std::vector<std::string>> replies,
                std::shared_future<void> listen_when = {})
      : thread_([=, this] { Run(path, replies, listen_when); }) {}
  ~FakeQmpServer() { thread_.join(); }
  std::vector<std::string> received;
  std::vector<int> fds;  // descriptors that came with the commands, in order

 private:
  void Run(const std::string& path, const std::vector<std::vector<std::string>>& replies,
           const std::shared_future<void>& listen_when) {
    if (listen_when.valid()) listen_when.wait();
    int listener = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, path.c_str());
    bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(listener, 1);
    int fd = accept(listener, nullptr, nullptr);
    Send(fd, R"({"QMP": {"version": {}, "capabilities": []}})");
    std::string buffer;
    for (const auto& reply : replies) {
      char chunk[1024];
      while (buffer.find('\n') == std::string::npos) {
        iovec iov{chunk, sizeof(chunk)};
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof(control);
        ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
        if (n <= 0) break;
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
          if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
          int passed;
          std::memcpy(&passed, CMSG_DATA(c), sizeof(int));
          fds.push_back(passed);
        }
        buffer.append(chunk, static_cast<size_t>(n));
      }
      auto nl = buffer.find('\n');
      if (nl == std::string::npos) break;
      received.push_back(buffer.substr(0, nl));
      buffer.erase(0, nl + 1);
      for (const auto& line : reply) Send(fd, line);
    }
    // Out of script: stay silent until the client hangs up.
    char sink[1024];
    while (read(fd, sink, sizeof(sink)) > 0) {
    }
    close(fd);
    close(listener);
  }
  static void Send(int fd, const std::string& line) {
    std::string out = line + "\n";
    ssize_t n = write(fd, out.data(), out.size());
    (void)n;
  }
  std::thread thread_;
};

TEST(QmpClientTest, NegotiatesRunsCommandsAndQueuesEvents) {
  testing::TempDir dir;
  std::string path = (dir / "qmp.sock").string();
  std::vector<std::string> received;
  {
    std::promise<void> qemu_listens;
    FakeQmpServer server(path,
                         {{R"({"return": {}})"},
                          {R"({"event": "STOP", "timestamp": {}})", R"({"return": {}})"},
                          {R"({"return": {"status": "paused", "running": false}})"},
                          {R"({"error": {"class": "GenericError", "desc": "no such thing"}})"}},
                         qemu_listens.get_future().share());
    // QEMU creates its socket a little after exec: not there yet, then there.
    auto early = QmpClient::Connect(path, 20ms);
    ASSERT_FALSE(early);
    EXPECT_EQ(early.error().code, Code::kUnavailable);
    qemu_listens.set_value();
    auto qmp = QmpClient::Connect(path, 2s);
    ASSERT_TRUE(qmp) << qmp.error().message;
    ASSERT_TRUE(qmp->Execute("stop"));
    auto status = qmp->Execute("query-status");
    ASSERT_TRUE(status);
    EXPECT_EQ((*status)["status"], "paused");
    auto events = qmp->TakeEvents();
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0]["event"], "STOP");
    EXPECT_TRUE(qmp->TakeEvents().empty());
    auto bad = qmp->Execute("frobnicate", {{"x", 1}});
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, Code::kFailedPrecondition);
    EXPECT_NE(bad.error().message.find("GenericError: no such thing"), std::string::npos);
    auto gone = qmp->Execute("query-status", nlohmann::json::object(), 100ms);
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().code, Code::kUnavailable);
    received = server.received;
  }
  ASSERT_EQ(received.size(), 4u);
  EXPECT_EQ(received[0], R"({"execute":"qmp_capabilities"})");
  EXPECT_EQ(received[3], R"({"arguments":{"x":1},"execute":"frobnicate"})");
}

TEST(QmpClientTest, PassesADescriptorWithTheCommand) {
  testing::TempDir dir;
  std::string path = (dir / "qmp.sock").string();
  FakeQmpServer server(path, {{R"({"return": {}})"}, {R"({"return": {}})"}});
  auto qmp = QmpClient::Connect(path, 2s);
  ASSERT_TRUE(qmp) << qmp.error().message;
  int fd = open((dir / "state").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(qmp->ExecuteWithFd(fd, "getfd", {{"fdname", "state"}}));
  close(fd);
  ASSERT_EQ(server.fds.size(), 1u);
  EXPECT_EQ(server.received.back(), R"({"arguments":{"fdname":"state"},"execute":"getfd"})");
  // The server's copy is the same open file.
  ASSERT_EQ(write(server.fds[0], "saved", 5), 5);
  close(server.fds[0]);
  std::ifstream in(dir / "state");
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "saved");
  EXPECT_FALSE(qmp->ExecuteWithFd(-1, "getfd", {{"fdname", "x"}}));
}

TEST(QmpClientTest, WaitsForAMatchingEventAndKeepsTheOthers) {
  testing::TempDir dir;
  std::string path = (dir / "qmp.sock").string();
  FakeQmpServer server(
      path, {{R"({"return": {}})"},
             // The first matching event comes with the answer, before anybody waits for it.
             {R"({"event": "MIGRATION", "data": {"status": "setup"}})", R"({"return": {}})",
              R"({"event": "STOP"})", R"({"event": "MIGRATION", "data": {"status": "completed"}})"},
             {R"({"return": {}})", R"({"event": "MIGRATION", "data": {"status": "failed"}})"}});
  auto qmp = QmpClient::Connect(path, 2s);
  ASSERT_TRUE(qmp) << qmp.error().message;
  auto ended = [](const nlohmann::json& data) { return data.value("status", "") != "setup"; };
  ASSERT_TRUE(qmp->Execute("migrate"));
  auto done = qmp->WaitEvent("MIGRATION", ended, 2s);
  ASSERT_TRUE(done) << done.error().message;
  EXPECT_EQ((*done)["status"], "completed");
  ASSERT_TRUE(qmp->Execute("migrate"));
  auto failed = qmp->WaitEvent("MIGRATION", ended, 2s);
  ASSERT_TRUE(failed) << failed.error().message;
  EXPECT_EQ((*failed)["status"], "failed");
  auto events = qmp->TakeEvents();  // the ones nobody waited for, in order
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0]["data"]["status"], "setup");
  EXPECT_EQ(events[1]["event"], "STOP");
  auto none = qmp->WaitEvent("MIGRATION", ended, 100ms);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, Code::kUnavailable);
  EXPECT_NE(none.error().message.find("waiting for the MIGRATION event"), std::string::npos)
      << none.error().message;
}

// QEMU's bytes are untrusted: members of the wrong type are errors or ignored, never exceptions.
TEST(QmpClientTest, MalformedAnswersAndEventsAreErrorsNotExceptions) {
  testing::TempDir dir;
  std::string path = (dir / "qmp.sock").string();
  FakeQmpServer server(path,
                       {{R"({"return": {}})"},
                        {R"({"error": "boom"})"},
                        {R"({"error": {"class": 7, "desc": null}})"},
                        {R"({"event": 5, "data": {"status": "completed"}})",
                         R"({"event": "MIGRATION", "data": "completed"})",
                         R"({"event": "MIGRATION", "data": {"status": 3}})", R"({"return": {}})",
                         R"({"event": "MIGRATION", "data": {"status": "completed"}})"}});
  auto qmp = QmpClient::Connect(path, 2s);
  ASSERT_TRUE(qmp) << qmp.error().message;
  for (const char* command : {"stop", "cont"}) {
    auto r = qmp->Execute(command);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Code::kFailedPrecondition) << r.error().message;
  }
  ASSERT_TRUE(qmp->Execute("migrate"));
  auto how = WaitMigration(*qmp, 2s);
  ASSERT_TRUE(how) << how.error().message;
  EXPECT_EQ(*how, "completed");
}

TEST(QmpClientTest, TheMigrationStepsSendWhatQemuExpects) {
  testing::TempDir dir;
  std::string path = (dir / "qmp.sock").string();
  std::vector<std::string> received;
  {
    FakeQmpServer server(
        path, {{R"({"return": {}})"},
               {R"({"return": {}})"},  // capabilities
               {R"({"return": {}})"},  // getfd
               {R"({"return": {}})"},  // closefd
               {R"({"return": {}})", R"({"event": "MIGRATION", "data": {"status": "cancelling"}})",
                R"({"event": "MIGRATION", "data": {"status": "cancelled"}})"}});  // migrate_cancel
    auto qmp = QmpClient::Connect(path, 2s);
    ASSERT_TRUE(qmp) << qmp.error().message;
    ASSERT_TRUE(SetMigrationCapabilities(*qmp));
    ASSERT_TRUE(PassStateFile(*qmp, dir / "state.part", O_WRONLY | O_CREAT | O_TRUNC));
    EXPECT_TRUE(std::filesystem::exists(dir / "state.part"));
    ForgetStateFile(*qmp);
    auto cancelled = CancelMigration(*qmp, 2s);
    EXPECT_TRUE(cancelled) << cancelled.error().message;
    ASSERT_EQ(server.fds.size(), 1u);
    close(server.fds[0]);
    received = server.received;
  }
  ASSERT_EQ(received.size(), 5u);
  EXPECT_EQ(received[1],
            R"({"arguments":{"capabilities":[{"capability":"x-ignore-shared","state":true},)"
            R"({"capability":"events","state":true}]},"execute":"migrate-set-capabilities"})");
  EXPECT_EQ(received[2], R"({"arguments":{"fdname":"hearth-state"},"execute":"getfd"})");
  EXPECT_EQ(received[3], R"({"arguments":{"fdname":"hearth-state"},"execute":"closefd"})");
  EXPECT_EQ(received[4], R"({"execute":"migrate_cancel"})");
  // A file that cannot be opened is not handed over, and says which.
  testing::TempDir other;
  FakeQmpServer quiet((other / "qmp.sock").string(), {{R"({"return": {}})"}});
  auto qmp = QmpClient::Connect((other / "qmp.sock").string(), 2s);
  ASSERT_TRUE(qmp);
  auto missing = PassStateFile(*qmp, other / "no" / "state", O_RDONLY);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("no/state"), std::string::npos);
}

TEST(QmpClientTest, ABoundSocketNobodyListensOnFailsAtOnce) {
  testing::TempDir dir;
  std::string path = (dir / "qmp.sock").string();
  {
    auto listener = QmpListener::Open(path);
    ASSERT_TRUE(listener) << listener.error().message;
  }  // closed: like a QEMU that died before it took the socket over
  auto start = std::chrono::steady_clock::now();
  auto qmp = QmpClient::Connect(path, 5s, /*bound_before=*/true);
  ASSERT_FALSE(qmp);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  EXPECT_NE(qmp.error().message.find("no longer listening"), std::string::npos)
      << qmp.error().message;
}

TEST(QmpClientTest, NoSocketIsUnavailableAfterTheTimeout) {
  testing::TempDir dir;
  auto start = std::chrono::steady_clock::now();
  auto qmp = QmpClient::Connect((dir / "none.sock").string(), 200ms);
  ASSERT_FALSE(qmp);
  EXPECT_EQ(qmp.error().code, Code::kUnavailable);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 200ms);
}

TEST(QmpClientTest, SilentServerTimesOut) {
  testing::TempDir dir;
  std::string path = (dir / "qmp.sock").string();
  FakeQmpServer server(path, {{R"({"return": {}})"}, {}});  // never answers the second command
  auto qmp = QmpClient::Connect(path, 2s);
  ASSERT_TRUE(qmp) << qmp.error().message;
  auto r = qmp->Execute("query-status", nlohmann::json::object(), 100ms);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("no answer in time"), std::string::npos);
}

}  // namespace
}  // namespace hearth::hv::qemu

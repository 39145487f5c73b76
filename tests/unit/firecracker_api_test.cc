// The Firecracker API client: the HTTP/1.1 wire format, the unix-socket transport against a
// scripted server, the request sequences hearth sends (order and bodies, against the v1.16.1
// spec's required fields) and how refusals become hearth errors.
#include <gtest/gtest.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <thread>

#include "hv/firecracker/api_calls.h"
#include "hv/firecracker/api_transport.h"
#include "support/temp_dir.h"

namespace hearth::hv::firecracker {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

TEST(FirecrackerWireTest, FormatsRequestsWithContentLength) {
  EXPECT_EQ(FormatRequest({"PUT", "/actions", R"({"action_type":"InstanceStart"})"}),
            "PUT /actions HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
            "Content-Type: application/json\r\nContent-Length: 31\r\n\r\n"
            R"({"action_type":"InstanceStart"})");
  EXPECT_EQ(FormatRequest({"GET", "/", ""}),
            "GET / HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n");
}

TEST(FirecrackerWireTest, ParsesAnswersAndWaitsForWholeOnes) {
  auto no_content = ParseResponse("HTTP/1.1 204 \r\nServer: Firecracker API\r\n\r\n", false);
  ASSERT_TRUE(no_content && *no_content);
  EXPECT_EQ((*no_content)->status, 204);
  EXPECT_EQ((*no_content)->body, "");

  std::string fault = R"({"fault_message":"bad"})";
  std::string raw = "HTTP/1.1 400 \r\ncontent-length: " + std::to_string(fault.size()) +
                    "\r\nContent-Type: application/json\r\n\r\n" + fault;
  for (size_t cut : {size_t{5}, raw.find("\r\n\r\n") + 2, raw.size() - 1}) {
    auto partial = ParseResponse(raw.substr(0, cut), false);
    ASSERT_TRUE(partial) << cut;
    EXPECT_FALSE(*partial) << "incomplete at " << cut;
  }
  auto whole = ParseResponse(raw, false);
  ASSERT_TRUE(whole && *whole);
  EXPECT_EQ((*whole)->status, 400);
  EXPECT_EQ((*whole)->body, fault);
  // Without a length the body runs to the close; a close inside the head is an error.
  auto to_close = ParseResponse("HTTP/1.1 200 OK\r\n\r\n{}", true);
  ASSERT_TRUE(to_close && *to_close);
  EXPECT_EQ((*to_close)->body, "{}");
  EXPECT_FALSE(ParseResponse("HTTP/1.1 200 OK\r\nContent-Le", true));
  EXPECT_FALSE(ParseResponse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", true));
  EXPECT_FALSE(ParseResponse("SSH-2.0-OpenSSH\r\n\r\n", false));
  EXPECT_FALSE(ParseResponse("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", false));
}

// Waits (at most 2 s) until the peer has read everything written to `fd`, so that the next piece
// reaches it in a read of its own. The kernel signals no such event: this yields, it does not
// sleep.
void AwaitRead(int fd) {
  const auto until = std::chrono::steady_clock::now() + 2s;
  int queued = 0;
  while (ioctl(fd, SIOCOUTQ, &queued) == 0 && queued > 0 &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::yield();
  }
}

// A unix-socket server answering each connection with the next scripted reply, written in small
// pieces, each read by the client before the next is written; an empty reply means: read the
// request and never answer.
class ScriptedServer {
 public:
  ScriptedServer(std::string path, std::vector<std::string> replies) : path_(std::move(path)) {
    listener_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, path_.c_str());
    EXPECT_EQ(bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    listen(listener_, 4);
    thread_ = std::thread([this, replies] {
      for (const auto& reply : replies) {
        int fd = accept(listener_, nullptr, nullptr);
        if (fd < 0) return;
        std::string request;
        char buf[4096];
        while (request.find("\r\n\r\n") == std::string::npos) {
          ssize_t n = read(fd, buf, sizeof(buf));
          if (n <= 0) break;
          request.append(buf, static_cast<size_t>(n));
        }
        auto length_at = request.find("Content-Length: ");
        size_t length =
            length_at == std::string::npos ? 0 : std::stoul(request.substr(length_at + 16));
        while (request.size() < request.find("\r\n\r\n") + 4 + length) {
          ssize_t n = read(fd, buf, sizeof(buf));
          if (n <= 0) break;
          request.append(buf, static_cast<size_t>(n));
        }
        received.push_back(request);
        if (reply.empty()) {
          while (read(fd, buf, sizeof(buf)) > 0) {
          }
        } else {
          for (size_t i = 0; i < reply.size(); i += 7) {
            (void)!write(fd, reply.data() + i, std::min<size_t>(7, reply.size() - i));
            AwaitRead(fd);
          }
        }
        close(fd);
      }
    });
  }
  ~ScriptedServer() {
    shutdown(listener_, SHUT_RDWR);
    thread_.join();
    close(listener_);
  }
  std::vector<std::string> received;

 private:
  std::string path_;
  int listener_ = -1;
  std::thread thread_;
};

TEST(FirecrackerTransportTest, SendsOverTheUnixSocketAndReadsSplitAnswers) {
  testing::TempDir dir;
  std::string fault =
      R"({"fault_message":"The requested operation is not supported after starting the microVM."})";
  ScriptedServer server(
      (dir / "api.sock").string(),
      {"HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n",
       "HTTP/1.1 400 \r\nServer: Firecracker API\r\nContent-Type: application/json\r\n"
       "Content-Length: " +
           std::to_string(fault.size()) + "\r\n\r\n" + fault});
  UnixSocketTransport transport(dir / "api.sock");
  auto ok = transport.Send({"PUT", "/actions", R"({"action_type":"InstanceStart"})"}, 2s);
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->status, 204);
  auto refused = transport.Send({"PUT", "/boot-source", R"({"kernel_image_path":"/k"})"}, 2s);
  ASSERT_TRUE(refused) << refused.error().message;
  EXPECT_EQ(refused->status, 400);
  EXPECT_EQ(refused->body, fault);
  ASSERT_EQ(server.received.size(), 2u);
  EXPECT_EQ(server.received[1],
            FormatRequest({"PUT", "/boot-source", R"({"kernel_image_path":"/k"})"}));
}

TEST(FirecrackerTransportTest, AMissingSocketOrASilentServerIsUnavailableWithinTheDeadline) {
  testing::TempDir dir;
  UnixSocketTransport missing(dir / "none.sock");
  auto r = missing.Send({"GET", "/", ""}, 1s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kUnavailable);
  EXPECT_NE(r.error().message.find("none.sock"), std::string::npos);

  ScriptedServer silent((dir / "silent.sock").string(), {""});
  UnixSocketTransport transport(dir / "silent.sock");
  auto t0 = std::chrono::steady_clock::now();
  auto timed_out = transport.Send({"GET", "/", ""}, 200ms);
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(timed_out);
  EXPECT_EQ(timed_out.error().code, Code::kUnavailable);
  EXPECT_NE(timed_out.error().message.find("within 200 ms"), std::string::npos);
  EXPECT_LT(took, 2s);
}

// A transport that records requests and answers from a queue (204 when it runs out).
class FakeTransport final : public ApiTransport {
 public:
  Result<ApiResponse> Send(const ApiRequest& request, std::chrono::milliseconds) override {
    sent.push_back(request);
    if (answers.empty()) return ApiResponse{204, ""};
    auto a = answers.front();
    answers.pop_front();
    return a;
  }
  std::vector<ApiRequest> sent;
  std::deque<Result<ApiResponse>> answers;
};

BootConfig Boot() {
  BootConfig b;
  b.log_path = "/vm/firecracker.log";
  b.metrics_path = "/vm/metrics.fifo";
  b.kernel = "/img/vmlinux";
  b.initrd = "/img/initrd.img";
  b.boot_args = "console=ttyS0 reboot=k";
  b.vcpus = 2;
  b.memory_mib = 256;
  b.tap = "hth0123456789ab";
  b.mac = "52:54:ac:1e:00:02";
  return b;
}

std::vector<std::string> Routes(const std::vector<ApiCall>& calls) {
  std::vector<std::string> out;
  for (const auto& c : calls) out.push_back(c.request.method + " " + c.request.path);
  return out;
}

TEST(FirecrackerCallsTest, BootFollowsTheSpecsOrderWithItsRequiredFields) {
  auto calls = BootCalls(Boot());
  ASSERT_TRUE(calls) << calls.error().message;
  EXPECT_EQ(Routes(*calls),
            (std::vector<std::string>{"PUT /logger", "PUT /metrics", "PUT /boot-source",
                                      "PUT /machine-config", "PUT /network-interfaces/eth0",
                                      "PUT /actions"}));
  auto body = [&](size_t i) { return json::parse((*calls)[i].request.body); };
  EXPECT_EQ(body(0)["log_path"], "/vm/firecracker.log");
  EXPECT_EQ(body(1), (json{{"metrics_path", "/vm/metrics.fifo"}}));
  EXPECT_EQ(body(2), (json{{"kernel_image_path", "/img/vmlinux"},
                           {"initrd_path", "/img/initrd.img"},
                           {"boot_args", "console=ttyS0 reboot=k"}}));
  EXPECT_EQ(body(3), (json{{"vcpu_count", 2}, {"mem_size_mib", 256}}));
  EXPECT_EQ(body(4), (json{{"iface_id", "eth0"},
                           {"host_dev_name", "hth0123456789ab"},
                           {"guest_mac", "52:54:ac:1e:00:02"}}));
  EXPECT_EQ(body(5), (json{{"action_type", "InstanceStart"}}));

  // A root disk goes between the machine and the network; without an initrd it is the root.
  BootConfig disk = Boot();
  disk.initrd.clear();
  disk.rootfs = "/img/rootfs.img";
  disk.rootfs_readonly = true;
  disk.tap.clear();
  auto with_disk = BootCalls(disk);
  ASSERT_TRUE(with_disk);
  EXPECT_EQ(Routes(*with_disk), (std::vector<std::string>{"PUT /logger", "PUT /metrics",
                                                          "PUT /boot-source", "PUT /machine-config",
                                                          "PUT /drives/rootfs", "PUT /actions"}));
  EXPECT_EQ(json::parse((*with_disk)[4].request.body), (json{{"drive_id", "rootfs"},
                                                             {"path_on_host", "/img/rootfs.img"},
                                                             {"is_root_device", true},
                                                             {"is_read_only", true},
                                                             {"cache_type", "Writeback"}}));
  EXPECT_FALSE(json::parse((*with_disk)[2].request.body).contains("initrd_path"));
}

TEST(FirecrackerCallsTest, BootRefusesWhatFirecrackerWould) {
  for (auto [mutate, says] : std::vector<std::pair<void (*)(BootConfig&), const char*>>{
           {[](BootConfig& b) { b.kernel.clear(); }, "kernel"},
           {[](BootConfig& b) { b.vcpus = 33; }, "33 vCPUs"},
           {[](BootConfig& b) { b.memory_mib = 0; }, "memory"},
           {[](BootConfig& b) { b.mac.clear(); }, "MAC"}}) {
    BootConfig b = Boot();
    mutate(b);
    auto r = BootCalls(b);
    ASSERT_FALSE(r) << says;
    EXPECT_NE(r.error().message.find(says), std::string::npos) << r.error().message;
  }
}

TEST(FirecrackerCallsTest, RestoreLoadsOnAFreshProcessAfterLoggerAndMetrics) {
  RestoreConfig c{"/log", "/metrics.fifo", "/snap/state", "/vm/memory", "hth0123456789ab"};
  auto calls = RestoreCalls(c);
  EXPECT_EQ(Routes(calls),
            (std::vector<std::string>{"PUT /logger", "PUT /metrics", "PUT /snapshot/load"}));
  EXPECT_EQ(json::parse(calls[2].request.body),
            (json{{"snapshot_path", "/snap/state"},
                  {"mem_backend", {{"backend_type", "File"}, {"backend_path", "/vm/memory"}}},
                  {"resume_vm", false},
                  {"clock_realtime", true},
                  {"network_overrides",
                   json::array({{{"iface_id", "eth0"}, {"host_dev_name", "hth0123456789ab"}}})}}));
  c.tap.clear();
  EXPECT_FALSE(json::parse(RestoreCalls(c)[2].request.body).contains("network_overrides"));

  EXPECT_EQ(json::parse(CreateSnapshot("/s", "/m").request.body),
            (json{{"snapshot_type", "Full"}, {"snapshot_path", "/s"}, {"mem_file_path", "/m"}}));
  EXPECT_EQ(Pause().request.method, "PATCH");
  EXPECT_EQ(json::parse(Pause().request.body), (json{{"state", "Paused"}}));
  EXPECT_EQ(json::parse(Resume().request.body), (json{{"state", "Resumed"}}));
  EXPECT_EQ(json::parse(SendCtrlAltDel().request.body), (json{{"action_type", "SendCtrlAltDel"}}));
  EXPECT_EQ(DescribeInstance().request, (ApiRequest{"GET", "/", ""}));
}

TEST(FirecrackerCallsTest, BootArgsAddWhatFirecrackerNeedsOnce) {
  std::string base = "console=ttyS0 quiet 8250.nr_uarts=1 tsc_early_khz=2000000 hearth.name=web";
  EXPECT_EQ(BootArgs(base),
            base + " reboot=k panic=1 pci=off i8042.noaux i8042.nomux i8042.dumbkbd");
  EXPECT_EQ(BootArgs("panic=5 reboot=t"),
            "panic=5 reboot=t console=ttyS0 pci=off i8042.noaux i8042.nomux i8042.dumbkbd");
}

TEST(FirecrackerCallsTest, ARefusalBecomesAnErrorWithContextAndTheFaultMessage) {
  FakeTransport t;
  t.answers.push_back(ApiResponse{400, R"({"fault_message":"Invalid kernel path."})"});
  auto r = Execute(t, BootCalls(Boot())->at(2), "web");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kFailedPrecondition);
  EXPECT_EQ(r.error().message,
            "configuring the boot source of vm 'web': Firecracker said: Invalid kernel path.");
  t.answers.push_back(ApiResponse{500, "oops"});
  auto internal = Execute(t, Pause(), "web");
  ASSERT_FALSE(internal);
  EXPECT_EQ(internal.error().code, Code::kInternal);
  EXPECT_NE(internal.error().message.find("HTTP 500 oops"), std::string::npos);
  t.answers.push_back(Fail(Code::kUnavailable, "GET / on /x: connecting: No such file"));
  auto gone = Execute(t, DescribeInstance(), "web");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().message,
            "describing the instance of vm 'web': GET / on /x: connecting: No such file");
  t.answers.push_back(ApiResponse{200, R"({"id":"vm-1","state":"Running"})"});
  auto info = Execute(t, DescribeInstance(), "web");
  ASSERT_TRUE(info);
  EXPECT_EQ((*info)["state"], "Running");
  auto done = Execute(t, Resume(), "web");
  ASSERT_TRUE(done);
  EXPECT_TRUE(done->is_null());
}

// Adopt compares this with the VM's id: an answer of another shape is another instance, not an
// exception out of the driver.
TEST(FirecrackerCallsTest, InstanceIdReadsOnlyAStringId) {
  EXPECT_EQ(InstanceId(nlohmann::json::parse(R"({"id":"vm-1","state":"Running"})")), "vm-1");
  for (const char* body :
       {R"({"id":7})", R"({"id":null})", R"([{"id":"vm-1"}])", R"("vm-1")", "null", "{}"}) {
    EXPECT_EQ(InstanceId(nlohmann::json::parse(body)), "") << body;
  }
}

}  // namespace
}  // namespace hearth::hv::firecracker

// Wake on packet with real VMs: a suspended VM resumes when a packet for it arrives (from a client
// namespace, through a published port, after a hearthd restart, during a suspend), the packet
// reaches the guest (the first SYN is answered: no TCP retransmission), and a flood wakes it once.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "support/vm_env.h"
#include "support/vm_fixture.h"

namespace hearth {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::RunResult;

class VmWakeTest : public testing::VmFixture {
 protected:
  void Suspend(const std::string& name) {
    RunResult r = Cli({"vm", "suspend", name});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  std::vector<std::string> EventTypes(const std::string& name) {
    RunResult r = Cli({"vm", "events", name, "-o", "json"});
    json j = json::parse(r.out, nullptr, false);
    std::vector<std::string> out;
    for (const auto& e : j.value("events", json::array())) out.push_back(e.value("type", ""));
    return out;
  }
  int Count(const std::string& name, const std::string& type) {
    auto types = EventTypes(name);
    return static_cast<int>(std::count(types.begin(), types.end(), type));
  }
  std::string LastWoken(const std::string& name) {
    RunResult r = Cli({"vm", "events", name, "-o", "json"});
    json j = json::parse(r.out, nullptr, false);
    std::string message;
    for (const auto& e : j.value("events", json::array())) {
      if (e.value("type", "") == "woken") message = e.value("message", "");
    }
    return message;
  }
  bool WaitState(const std::string& name, const std::string& state, std::chrono::seconds limit) {
    for (auto until = std::chrono::steady_clock::now() + limit;
         std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(50ms)) {
      if (Show(name).value("state", "") == state) return true;
    }
    return false;
  }
};

TEST_F(VmWakeTest, APacketWakesTheVmAndTheFirstSynIsAnswered) {
  json vm = CreateAndStart("sleepy", {"--wake", "on-packet", "--publish", "18480:80"});
  std::string ip = vm["ip"];
  auto boot = testing::HttpGetEventually(ip, 80, "/bootid", 10s);
  ASSERT_TRUE(boot && boot->status == 200);
  testing::ClientNamespace client(getpid() % 250);

  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(round);
    Suspend("sleepy");
    int64_t syn_retrans = client.SynRetransmissions(), retrans = client.SegmentsRetransmitted();
    RunResult r = client.Run({"curl", "-sS", "-m", "10", "-o", "/dev/null", "-w",
                              "%{http_code} %{time_connect} %{time_total}",
                              fmt::format("http://{}/bootid", ip)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::cerr << "wake from a namespace: " << r.out << "\n  " << LastWoken("sleepy") << "\n";
    EXPECT_EQ(r.out.substr(0, 3), "200");
    EXPECT_EQ(client.SynRetransmissions(), syn_retrans) << "the first SYN was answered";
    std::cerr << "  segments retransmitted: " << client.SegmentsRetransmitted() - retrans << "\n";
    EXPECT_EQ(Show("sleepy")["state"], "running");
  }
  EXPECT_EQ(Count("sleepy", "woken"), 3);
  auto again = testing::HttpGet(ip, 80, "/bootid");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->body, boot->body) << "the same guest carries on";

  // Through the published port on the host.
  Suspend("sleepy");
  auto published = testing::HttpGet("127.0.0.1", 18480, "/bootid", 10s);
  ASSERT_TRUE(published && published->status == 200);
  EXPECT_EQ(published->body, boot->body);
  EXPECT_EQ(Count("sleepy", "woken"), 4);

  // After a restart of hearthd the suspended VM still wakes.
  Suspend("sleepy");
  daemon_->KeepHostState();
  daemon_.reset();
  StartDaemon();
  auto after_restart = testing::HttpGet(ip, 80, "/bootid", 10s);
  ASSERT_TRUE(after_restart && after_restart->status == 200);
  EXPECT_EQ(after_restart->body, boot->body);
}

TEST_F(VmWakeTest, AFloodWakesOnceAndAPacketDuringTheSuspendIsNotLost) {
  json vm = CreateAndStart("flood", {"--wake", "on-packet"});
  std::string ip = vm["ip"];
  ASSERT_TRUE(testing::HttpGetEventually(ip, 80, "/", 10s));
  Suspend("flood");
  int resumes_before = Count("flood", "resuming");
  // 10,000 UDP datagrams from 4 senders while it sleeps.
  std::vector<std::thread> senders;
  for (int t = 0; t < 4; ++t) {
    senders.emplace_back([&] {
      int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(9);
      inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
      for (int i = 0; i < 2500; ++i) {
        sendto(s, "x", 1, 0, reinterpret_cast<sockaddr*>(&a), sizeof(a));
      }
      close(s);
    });
  }
  for (auto& s : senders) s.join();
  ASSERT_TRUE(WaitState("flood", "running", 30s));
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(Count("flood", "resuming") - resumes_before, 1) << "one wake for the whole flood";
  std::cerr << "flood: " << LastWoken("flood") << "\n";

  // Packets that keep arriving while a suspend is under way: the suspend completes, and the
  // first packet queued on the tap wakes the VM right after (none is lost in between).
  int woken_before = Count("flood", "woken");
  std::atomic<bool> sending{true};
  std::thread sender([&] {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(9);
    inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
    while (sending.load()) {
      sendto(s, "x", 1, 0, reinterpret_cast<sockaddr*>(&a), sizeof(a));
      std::this_thread::sleep_for(2ms);
    }
    close(s);
  });
  RunResult suspending = Cli({"vm", "suspend", "flood", "--no-wait"});
  EXPECT_EQ(suspending.exit_code, 0) << suspending.err;
  for (auto until = std::chrono::steady_clock::now() + 20s;
       Count("flood", "woken") == woken_before && std::chrono::steady_clock::now() < until;) {
    std::this_thread::sleep_for(50ms);
  }
  sending = false;
  sender.join();
  auto types = EventTypes("flood");
  auto suspended_at = std::find(types.rbegin(), types.rend(), "suspended");
  auto woken_at = std::find(types.rbegin(), types.rend(), "woken");
  EXPECT_TRUE(suspended_at != types.rend() && woken_at < suspended_at)
      << "suspended, then woken by the packets that kept coming";
  EXPECT_EQ(Count("flood", "woken"), woken_before + 1);
  EXPECT_TRUE(WaitState("flood", "running", 10s));
  auto answer = testing::HttpGet(ip, 80, "/", 10s);
  ASSERT_TRUE(answer && answer->status == 200);
}

TEST_F(VmWakeTest, TwentyVmsWokenAtOnceAllResumeAndAnswer) {
  constexpr int kVms = 20, kBootsAtOnce = 4;  // TCG boots share the host's cores
  std::vector<std::string> names, ips;
  std::vector<std::string> boots(kVms);
  for (int i = 0; i < kVms; ++i) {
    names.push_back(fmt::format("crowd{}", i));
    RunResult created = Cli({"vm", "create", names.back(), "--image", "default", "--memory", "128M",
                             "--wake", "on-packet"});
    ASSERT_EQ(created.exit_code, 0) << created.err;
  }
  for (int first = 0; first < kVms; first += kBootsAtOnce) {
    int end = std::min(kVms, first + kBootsAtOnce);
    for (int i = first; i < end; ++i) {
      RunResult started = Cli({"vm", "start", names[i], "--no-wait"});
      ASSERT_EQ(started.exit_code, 0) << started.err;
      // It says where the VM is, not where it is going.
      EXPECT_EQ(started.out, "vm '" + names[i] + "' is starting\n");
    }
    for (int i = first; i < end; ++i) {
      ASSERT_TRUE(WaitState(names[i], "running", 120s)) << Show(names[i]).dump();
      ips.push_back(Show(names[i])["ip"]);
      auto boot = testing::HttpGetEventually(ips[i], 80, "/bootid", 60s);
      ASSERT_TRUE(boot && boot->status == 200) << names[i];
      boots[i] = boot->body;
    }
  }
  for (const auto& name : names) ASSERT_EQ(Cli({"vm", "suspend", name, "--no-wait"}).exit_code, 0);
  for (const auto& name : names) ASSERT_TRUE(WaitState(name, "suspended", 60s)) << name;

  // One GET to each, all at the same moment.
  std::vector<std::optional<testing::HttpReply>> answers(kVms);
  std::vector<double> seconds(kVms);
  std::vector<std::thread> clients;
  auto go = std::chrono::steady_clock::now() + 200ms;
  for (int i = 0; i < kVms; ++i) {
    clients.emplace_back([&, i] {
      std::this_thread::sleep_until(go);
      auto r = testing::HttpGet(ips[i], 80, "/bootid", 60s);
      seconds[i] = std::chrono::duration<double>(std::chrono::steady_clock::now() - go).count();
      if (r) answers[i] = *r;
    });
  }
  for (auto& c : clients) c.join();
  for (int i = 0; i < kVms; ++i) {
    SCOPED_TRACE(names[i]);
    ASSERT_TRUE(answers[i].has_value());
    EXPECT_EQ(answers[i]->status, 200);
    EXPECT_EQ(answers[i]->body, boots[i]) << "the same guest, resumed";
    EXPECT_EQ(Show(names[i])["state"], "running");
    EXPECT_EQ(Count(names[i], "woken"), 1);
  }
  std::sort(seconds.begin(), seconds.end());
  std::cerr << fmt::format(
      "{} VMs woken at once: first answer after {:.2f} s, median {:.2f} s, "
      "last {:.2f} s\n",
      kVms, seconds.front(), seconds[kVms / 2], seconds.back());
}

}  // namespace
}  // namespace hearth

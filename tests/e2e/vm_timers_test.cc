// Timers on real VMs through the real hearthd and CLI (QEMU, short timeouts): stop-after
// suspends a VM within a second of its time; idle-timeout suspends a VM that sees no packets but
// not one kept busy with HTTP requests, until they stop.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "common/clock.h"
#include "support/vm_env.h"
#include "support/vm_fixture.h"

namespace hearth {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::RunResult;

class VmTimersTest : public testing::VmFixture {
 protected:
  // Polls until the VM is in `state`; returns whether it got there within `limit`.
  bool WaitState(const std::string& name, const std::string& state, std::chrono::seconds limit) {
    for (auto until = std::chrono::steady_clock::now() + limit;
         std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(100ms)) {
      if (Show(name).value("state", "") == state) return true;
    }
    return false;
  }
  // The VM's events of `type`, oldest first.
  std::vector<json> EventsOf(const std::string& name, const std::string& type) {
    RunResult r = Cli({"vm", "events", name, "-o", "json"});
    json j = json::parse(r.out, nullptr, false);
    std::vector<json> out;
    for (const auto& e : j.value("events", json::array())) {
      if (e.value("type", "") == type) out.push_back(e);
    }
    return out;
  }
  std::vector<json> TimerEvents(const std::string& name) { return EventsOf(name, "timer"); }
};

Timestamp Time(const json& v) {
  auto t = ParseTime(v.is_string() ? v.get<std::string>() : "");
  EXPECT_TRUE(t) << v.dump();
  return t ? *t : Timestamp{};
}

double Seconds(Duration d) { return std::chrono::duration<double>(d).count(); }

// How late the firing in `event` was: its time minus when it was due, per its message
// ("... (no packets since T)" for idle-timeout: T + `timeout`).
Duration IdleLateness(const json& event, Duration timeout) {
  std::smatch m;
  std::string message = event.value("message", "");
  if (!std::regex_search(message, m, std::regex(R"(no packets since (\S+)\))"))) {
    ADD_FAILURE() << message;
    return Duration::max();
  }
  return Time(event["time"]) - (Time(json(m[1].str())) + timeout);
}

TEST_F(VmTimersTest, StopAfterSuspendsTheVmWithinASecondOfItsTime) {
  json vm = CreateAndStart("nap", {"--stop-after", "3s"});
  ASSERT_TRUE(vm["running_since"].is_string()) << vm.dump();
  Timestamp due = Time(vm["running_since"]) + 3s;
  ASSERT_TRUE(vm["next_timer"].is_object()) << vm.dump();
  EXPECT_EQ(vm["next_timer"]["kind"], "stop-after");
  EXPECT_EQ(vm["next_timer"]["action"], "suspend");
  EXPECT_EQ(Time(vm["next_timer"]["at"]), due);

  ASSERT_TRUE(WaitState("nap", "suspended", 30s)) << Show("nap").dump();
  auto timers = TimerEvents("nap");
  ASSERT_EQ(timers.size(), 1u);
  Duration late = Time(timers[0]["time"]) - due;
  auto saved = EventsOf("nap", "suspended");
  ASSERT_EQ(saved.size(), 1u);
  std::cerr << fmt::format(
      "stop-after 3s fired {:.3f} s after it was due; suspended {:.3f} s later\n", Seconds(late),
      Seconds(Time(saved[0]["time"]) - Time(timers[0]["time"])));
  EXPECT_GE(late.count(), 0) << timers[0].dump();
  EXPECT_LE(late, 1s) << timers[0].dump();
  json suspended = Show("nap");
  EXPECT_EQ(suspended["next_timer"], nullptr);
  EXPECT_EQ(suspended["running_since"], nullptr);
  ASSERT_TRUE(suspended["snapshot"].is_object());
  RunResult ls = Cli({"vm", "ls"});
  EXPECT_NE(ls.out.find("suspended ("), std::string::npos) << ls.out;
  RunResult show = Cli({"vm", "show", "nap"});
  EXPECT_NE(show.out.find("MiB on disk, taken "), std::string::npos) << show.out;
}

TEST_F(VmTimersTest, IdleTimeoutSuspendsAQuietVmButNotOneKeptBusy) {
  json busy = CreateAndStart("busy", {"--idle-timeout", "3s"});
  std::string ip = busy["ip"];
  Timestamp busy_since = Time(busy["running_since"]);
  std::atomic<bool> traffic{true};
  std::atomic<int> answers{0};
  std::thread client([&] {
    while (traffic) {
      auto reply = testing::HttpGet(ip, 80, "/", 2s);
      if (reply && reply->status == 200) ++answers;
      std::this_thread::sleep_for(500ms);
    }
  });
  json quiet = CreateAndStart("quiet", {"--idle-timeout", "3s"});
  RunResult ls = Cli({"vm", "ls"});
  EXPECT_NE(ls.out.find("suspend in "), std::string::npos) << ls.out;

  bool slept = WaitState("quiet", "suspended", 30s);
  auto quiet_timers = TimerEvents("quiet");
  // Busy for well past its timeout by now (quiet booted meanwhile): still running.
  while (SystemClock().Now() < busy_since + 7s) std::this_thread::sleep_for(100ms);
  json still = Show("busy");
  traffic = false;
  client.join();
  std::cerr << "requests to the busy VM stopped at " << FormatTime(SystemClock().Now()) << "\n";
  ASSERT_TRUE(slept) << Show("quiet").dump();
  ASSERT_EQ(quiet_timers.size(), 1u);
  Duration late = IdleLateness(quiet_timers[0], 3s);
  std::cerr << fmt::format(
      "idle-timeout 3s fired {:.3f} s after it was due (running since {}): {}\n", Seconds(late),
      quiet["running_since"].get<std::string>(), quiet_timers[0]["message"].get<std::string>());
  EXPECT_GE(late.count(), 0);
  EXPECT_LE(late, 1s);
  EXPECT_EQ(still["state"], "running") << still.dump();
  EXPECT_TRUE(TimerEvents("busy").empty());
  EXPECT_GT(answers.load(), 8) << "the busy VM answered throughout";

  // Once the requests stop, it goes to sleep too.
  ASSERT_TRUE(WaitState("busy", "suspended", 30s)) << Show("busy").dump();
  auto busy_timers = TimerEvents("busy");
  ASSERT_EQ(busy_timers.size(), 1u);
  late = IdleLateness(busy_timers[0], 3s);
  std::cerr << fmt::format("idle-timeout 3s (after traffic) fired {:.3f} s after it was due: {}\n",
                           Seconds(late), busy_timers[0]["message"].get<std::string>());
  EXPECT_LE(late, 1s);
}

}  // namespace
}  // namespace hearth

// TimerBook on its own: no node, no thread, no clock but the times passed in.
#include "node/timer_book.h"

#include <gtest/gtest.h>

namespace hearth::node {
namespace {

using namespace std::chrono_literals;

const Timestamp kT0 = Timestamp{} + std::chrono::hours(24 * 365 * 50);

VmRecord Running(const std::string& name, Timers timers) {
  VmRecord vm;
  vm.name = name;
  vm.id = "vm-" + name;
  vm.ip = "172.30.0.2";
  vm.state = VmState::kRunning;
  vm.running_since = kT0;
  vm.updated_at = kT0;
  vm.spec.timers = timers;
  return vm;
}

auto NotBusy() {
  return [](const std::string&) { return false; };
}

TEST(TimerBookTest, StopAfterFallsDueAtItsTimeOnceAndIsRetriedAfterARefusal) {
  TimerBook book;
  book.Start(kT0);
  VmMap vms{{"web", Running("web", Timers{.stop_after = 10s})}};
  auto early = book.Run(vms, {}, kT0 + 9s, NotBusy());
  EXPECT_TRUE(early.due.empty());
  EXPECT_EQ(early.next, kT0 + 10s);
  auto due = book.Run(vms, {}, kT0 + 10s, NotBusy());
  ASSERT_EQ(due.due.size(), 1u);
  EXPECT_EQ(due.due[0].name, "web");
  EXPECT_EQ(due.due[0].due.kind, TimerKind::kStopAfter);
  // The action was refused and the VM runs on: not again at once, but after the retry delay.
  EXPECT_TRUE(book.Run(vms, {}, kT0 + 11s, NotBusy()).due.empty());
  EXPECT_EQ(book.Next(vms.at("web"))->at, kT0 + 10s + kTimerRetry);
  EXPECT_EQ(book.Run(vms, {}, kT0 + 10s + kTimerRetry, NotBusy()).due.size(), 1u);
}

TEST(TimerBookTest, AVmOwnedByAJobIsLookedAtAgainLater) {
  TimerBook book;
  book.Start(kT0);
  VmMap vms{{"web", Running("web", Timers{.stop_after = 1s})}};
  auto pass = book.Run(vms, {}, kT0 + 2s, [](const std::string&) { return true; });
  EXPECT_TRUE(pass.due.empty());
  EXPECT_EQ(pass.next, kT0 + 2s + kMaxTimerSleep);
  EXPECT_EQ(book.Run(vms, {}, kT0 + 3s, NotBusy()).due.size(), 1u);
}

TEST(TimerBookTest, TrafficOnTheTapPostponesTheIdleTimeout) {
  TimerBook book;
  book.Start(kT0);
  VmMap vms{{"web", Running("web", Timers{.idle_timeout = 10s})}};
  ASSERT_EQ(TimerBook::TapsToRead(vms).size(), 1u);
  TapReadings quiet{{"web", net::TapCounters{}}};
  auto first = book.Run(vms, quiet, kT0 + 1s, NotBusy());
  EXPECT_TRUE(first.polling);
  net::TapCounters busy{};
  busy.rx_packets = 5;
  EXPECT_TRUE(book.Run(vms, {{"web", busy}}, kT0 + 8s, NotBusy()).due.empty());
  // Idle from 8 s on: due at 18 s, not at 10 s.
  EXPECT_TRUE(book.Run(vms, {{"web", busy}}, kT0 + 12s, NotBusy()).due.empty());
  EXPECT_EQ(book.Run(vms, {{"web", busy}}, kT0 + 18s, NotBusy()).due.size(), 1u);
}

TEST(TimerBookTest, ANewRunStartsAFreshWatchAndAStoppedVmHasNoTimer) {
  TimerBook book;
  book.Start(kT0);
  VmMap vms{{"web", Running("web", Timers{.stop_after = 1s})}};
  EXPECT_EQ(book.Run(vms, {}, kT0 + 1s, NotBusy()).due.size(), 1u);
  vms.at("web").running_since = kT0 + 5s;  // resumed: a new run, no retry pending
  EXPECT_EQ(book.Next(vms.at("web"))->at, kT0 + 6s);
  vms.at("web").state = VmState::kStopped;
  EXPECT_FALSE(book.Next(vms.at("web")));
  EXPECT_TRUE(book.Run(vms, {}, kT0 + 1h, NotBusy()).due.empty());
}

}  // namespace
}  // namespace hearth::node

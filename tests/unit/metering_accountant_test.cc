// The Accountant: state time split exactly at transitions, across ticks and a restart (trackers
// through their JSON), counters as deltas across VMM restarts and counter resets, metering
// events with their durations and latencies.
#include <gtest/gtest.h>

#include <numeric>

#include "metering/accountant.h"

namespace hearth::metering {
namespace {

using namespace std::chrono_literals;

const Timestamp kT0{Duration{1'700'000'000'000}};

class AccountantTest : public ::testing::Test {
 protected:
  // An event for VM "a" at kT0 + `at` that leaves it in `state`.
  store::RecordedEvent Ev(std::string type, Duration at, std::optional<VmState> state,
                          int64_t snapshot_bytes = 0) {
    store::RecordedEvent e;
    e.event.seq = ++seq_;
    e.event.vm_id = "vm-a";
    e.event.vm_name = "a";
    e.event.time = kT0 + at;
    e.event.type = std::move(type);
    e.event.message = "why";
    e.state = state;
    e.vcpus = 2;
    e.memory = MiB{512};
    e.snapshot_bytes = snapshot_bytes;
    return e;
  }
  store::RecordedEvent Deleted(Duration at) {
    auto e = Ev("deleted", at, std::nullopt);
    e.deleted = true;
    return e;
  }

  TickResult Tick(std::vector<store::RecordedEvent> events, Duration at,
                  std::map<std::string, VmReading> readings = {}) {
    TickResult r = acc_.Tick(events, kT0 + at, readings);
    for (const auto& s : r.samples) samples_.push_back(s);
    for (const auto& e : r.events) events_.push_back(e);
    acc_.Accept(r);
    return r;
  }

  Usage Total() const {
    Usage u;
    for (const auto& s : samples_) u += s.usage;
    return u;
  }
  int64_t Ms(StateClass c) const { return Total().ms(c); }

  // Persists and reloads the trackers, as a restarted hearthd does.
  void Restart() {
    std::map<std::string, Tracker> loaded;
    for (const auto& [id, t] : acc_.trackers()) {
      auto back = TrackerFromJson(TrackerToJson(t));
      ASSERT_TRUE(back) << back.error().message;
      EXPECT_EQ(*back, t);
      loaded.emplace(id, *back);
    }
    acc_ = Accountant();
    acc_.Load(std::move(loaded));
  }

  static VmReading Vmm(int64_t pid, int64_t cpu_ms, std::optional<TapStats> tap = {}) {
    VmReading r;
    r.process = hv::ProcessId{pid, 1000 + static_cast<uint64_t>(pid)};
    r.stats = ProcessStats{cpu_ms, {cpu_ms / 2, cpu_ms / 4}, 64 << 20};
    r.tap = tap;
    return r;
  }

  Accountant acc_;
  std::vector<Sample> samples_;
  std::vector<UsageEvent> events_;
  int64_t seq_ = 0;
};

TEST_F(AccountantTest, StateTimeIsSplitExactlyAtTransitions) {
  Tick({Ev("created", 0ms, VmState::kCreated)}, 1000ms);
  Tick({Ev("starting", 2500ms, VmState::kStarting), Ev("launched", 2600ms, VmState::kStarting)},
       5000ms);
  Tick({Ev("started", 7250ms, VmState::kRunning)}, 10000ms);
  Tick({Ev("suspending", 12000ms, VmState::kSuspending),
        Ev("suspended", 12040ms, VmState::kSuspended, 300 << 20)},
       15000ms);
  Tick({}, 20000ms);
  Tick({Ev("resuming", 21000ms, VmState::kResuming), Ev("resumed", 21300ms, VmState::kRunning)},
       25000ms);

  // Every ms from creation to the last tick is in exactly one class.
  EXPECT_EQ(Ms(StateClass::kStopped), 2500);
  EXPECT_EQ(Ms(StateClass::kTransition), (7250 - 2500) + 40 + 300);
  EXPECT_EQ(Ms(StateClass::kRunning), (12000 - 7250) + (25000 - 21300));
  EXPECT_EQ(Ms(StateClass::kSuspended), 21000 - 12040);
  Usage u = Total();
  EXPECT_EQ(std::accumulate(u.state_ms.begin(), u.state_ms.end(), int64_t{0}), 25000);
  EXPECT_EQ(u.ram_mib_ms, 512 * Ms(StateClass::kRunning));
  EXPECT_EQ(u.snapshot_kib_ms, (300 << 10) * Ms(StateClass::kSuspended));
  // Samples tile time: each starts where the previous one ended.
  for (size_t i = 1; i < samples_.size(); ++i) EXPECT_EQ(samples_[i].start, samples_[i - 1].end);
  EXPECT_EQ(samples_.back().state, VmState::kRunning);
}

TEST_F(AccountantTest, NothingIsLostOrDoubledAcrossARestart) {
  Tick({Ev("created", 0ms, VmState::kCreated), Ev("starting", 100ms, VmState::kStarting)}, 1000ms);
  Tick({Ev("started", 1500ms, VmState::kRunning)}, 2000ms);
  Restart();
  // While no hearthd ran, the VM was suspended; the next hearthd reads those events late.
  Tick({Ev("suspending", 4000ms, VmState::kSuspending),
        Ev("suspended", 4100ms, VmState::kSuspended, 1 << 20)},
       9000ms);
  Restart();
  Tick({}, 70000ms);  // a quiet VM: flushed after a minute
  Usage u = Total();
  EXPECT_EQ(std::accumulate(u.state_ms.begin(), u.state_ms.end(), int64_t{0}), 70000);
  EXPECT_EQ(Ms(StateClass::kRunning), 4000 - 1500);
  EXPECT_EQ(Ms(StateClass::kSuspended), 70000 - 4100);
}

TEST_F(AccountantTest, AnEventThatRacedATickLandsAtItsEndNotBefore) {
  Tick({Ev("created", 0ms, VmState::kCreated), Ev("starting", 0ms, VmState::kStarting),
        Ev("started", 10ms, VmState::kRunning)},
       1000ms);
  // Committed after the tick at 1000 read the stream, but stamped 990: counted from 1000.
  Tick({Ev("stopping", 990ms, VmState::kStopping), Ev("stopped", 1200ms, VmState::kStopped)},
       2000ms);
  EXPECT_EQ(Ms(StateClass::kRunning), 990);
  EXPECT_EQ(Ms(StateClass::kTransition), 10 + 200);
  EXPECT_EQ(Ms(StateClass::kStopped), 800);
}

TEST_F(AccountantTest, CountersAreDeltasAcrossVmmRestartsAndTapResets) {
  Tick({Ev("created", 0ms, VmState::kCreated), Ev("started", 0ms, VmState::kRunning)}, 1ms,
       {{"vm-a", Vmm(10, 100, TapStats{1000, 2000, 10, 20})}});
  Tick({}, 1000ms, {{"vm-a", Vmm(10, 350, TapStats{1500, 2600, 15, 26})}});
  // A new VMM (restart): all of its CPU counts; the persistent tap's counters go on.
  Tick({}, 2000ms, {{"vm-a", Vmm(11, 40, TapStats{1600, 2700, 16, 27})}});
  // The tap was re-created (host reboot): its counter went down, its new value counts.
  Tick({}, 3000ms, {{"vm-a", Vmm(11, 90, TapStats{100, 50, 1, 1})}});
  Usage u = Total();
  EXPECT_EQ(u.cpu_ms, 100 + 250 + 40 + 50);
  // Guest's view: rx is what the tap sent (tx).
  EXPECT_EQ(u.net_rx_bytes, 2000 + 600 + 100 + 50);
  EXPECT_EQ(u.net_tx_bytes, 1000 + 500 + 100 + 100);
  EXPECT_EQ(u.net_rx_packets, 20 + 6 + 1 + 1);
  EXPECT_EQ(samples_.back().rss_bytes, 64 << 20);
  EXPECT_EQ(u.vcpu_ms, (50 + 25) + (175 + 87 - 75) + (20 + 10) + (45 + 22 - 30));
}

TEST_F(AccountantTest, VmsFoundAtTheStartCountOnlyFromThere) {
  VmRecord vm;
  vm.id = "vm-a";
  vm.name = "a";
  vm.state = VmState::kRunning;
  vm.spec.memory = MiB{256};
  acc_.Begin({vm}, kT0);
  Tick({}, 1000ms, {{"vm-a", Vmm(10, 5000, TapStats{9000, 9000, 90, 90})}});
  Tick({}, 2000ms, {{"vm-a", Vmm(10, 5100, TapStats{9100, 9000, 91, 90})}});
  Usage u = Total();
  EXPECT_EQ(u.cpu_ms, 100);
  EXPECT_EQ(u.net_tx_bytes, 100);
  EXPECT_EQ(u.ms(StateClass::kRunning), 2000);
  EXPECT_EQ(u.ram_mib_ms, 256 * 2000);
}

TEST_F(AccountantTest, QuietVmsAreSampledOncePerMinuteAndDeletedOnesOnceMore) {
  Tick({Ev("created", 0ms, VmState::kCreated)}, 1000ms);
  size_t after_create = samples_.size();
  for (int s = 2; s <= 60; ++s) Tick({}, std::chrono::seconds(s));
  EXPECT_EQ(samples_.size(), after_create);  // nothing changed: nothing written
  Tick({}, 61000ms);
  EXPECT_EQ(samples_.size(), after_create + 1);
  auto r = Tick({Deleted(61500ms)}, 62000ms);
  EXPECT_EQ(r.removed, std::set<std::string>{"vm-a"});
  EXPECT_TRUE(acc_.trackers().empty());
  EXPECT_EQ(samples_.back().end, kT0 + 61500ms);
  EXPECT_EQ(Ms(StateClass::kStopped), 61500);
}

TEST_F(AccountantTest, MeteringEventsCarryDurationsLatencyAndReasons) {
  auto woken = Ev("woken", 6180ms, VmState::kRunning);
  woken.event.measures = {{"latency_ms", 183.5}, {"restore_ms", 45}};
  auto failed = Ev("failed", 9000ms, VmState::kFailed);
  Tick({Ev("created", 0ms, VmState::kCreated), Ev("starting", 1000ms, VmState::kStarting),
        Ev("launched", 1100ms, VmState::kStarting), Ev("started", 3250ms, VmState::kRunning),
        Ev("suspending", 4000ms, VmState::kSuspending),
        Ev("suspended", 4012ms, VmState::kSuspended, 4096),
        Ev("resuming", 5000ms, VmState::kResuming), Ev("resumed", 5045ms, VmState::kRunning),
        Ev("suspending", 6000ms, VmState::kSuspending),
        Ev("suspended", 6010ms, VmState::kSuspended, 4096),
        Ev("resuming", 6100ms, VmState::kResuming), woken, failed},
       10000ms);
  std::map<std::string, std::vector<UsageEvent>> by_type;
  for (const auto& e : events_) by_type[e.type].push_back(e);
  EXPECT_EQ(by_type.count("starting"), 0u);  // transitional: not recorded
  EXPECT_EQ(by_type.count("launched"), 0u);
  EXPECT_EQ(by_type["created"].size(), 1u);
  EXPECT_EQ(by_type["started"][0].duration_ms, 2250);
  EXPECT_EQ(by_type["suspended"][0].duration_ms, 12);
  EXPECT_EQ(by_type["suspended"][0].snapshot_bytes, 4096);
  EXPECT_EQ(by_type["resumed"][0].duration_ms, 45);
  EXPECT_EQ(by_type["resumed"][0].latency_ms, 45);
  EXPECT_EQ(by_type["woken"][0].duration_ms, 80);
  EXPECT_EQ(by_type["woken"][0].latency_ms, 183.5);  // measured, not the duration
  EXPECT_EQ(by_type["woken"][0].measures.at("restore_ms"), 45);
  EXPECT_EQ(by_type["failed"][0].reason, "why");
  EXPECT_EQ(by_type["failed"][0].state, "failed");
  EXPECT_EQ(by_type["created"][0].reason, "");
}

TEST_F(AccountantTest, NotesAndStandingClocksMoveNothing) {
  Tick({Ev("created", 0ms, VmState::kCreated)}, 1000ms);
  auto note = Ev("timer", 1500ms, std::nullopt);
  auto r = Tick({note}, 1000ms);  // the clock did not move; a timer note changes no record
  EXPECT_TRUE(r.samples.empty());
  EXPECT_TRUE(r.events.empty());
  EXPECT_EQ(Ms(StateClass::kStopped), 1000);
}

}  // namespace
}  // namespace hearth::metering

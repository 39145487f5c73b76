// The sampler over a real Node (fake driver, network and store) with a fake clock: the time in
// each state is exact across start, suspend, a restart of metering and resume; counters and
// metering events reach the local store and the ClickHouse sink once.
#include <gtest/gtest.h>

#include <thread>

#include "fakes/fake_metering.h"
#include "fakes/node_fixture.h"
#include "metering/sampler.h"
#include "metering/sqlite_usage_store.h"
#include "store/sqlite_state_store.h"

namespace hearth::metering {
namespace {

using namespace std::chrono_literals;
using testing::FakeClickHouse;
using testing::FakeUsageReader;

class SamplerTest : public testing::NodeFixture {
 protected:
  SamplerTest() {
    NewNode();
    // The usage tables live in an SQLite file migrated by the state store; the node's events come
    // from the fake store.
    auto state = store::SqliteStateStore::Open(dir_ / "usage.db");
    EXPECT_TRUE(state);
    auto usage = SqliteUsageStore::Open(dir_ / "usage.db");
    EXPECT_TRUE(usage);
    usage_ = std::move(*usage);
    spool_ = std::move(*Spool::Open(dir_ / "spool", 1 << 30));
    ClickHouseSinkOptions o;
    o.node = "n";
    sink_ = std::make_unique<ClickHouseSink>(clickhouse_, *spool_, o);
  }
  ~SamplerTest() override { sampler_.reset(); }

  // A sampler as a (re)started hearthd builds it.
  void NewSampler() {
    sampler_.reset();
    sampler_ = std::make_unique<Sampler>(
        store_, *usage_, reader_, clock_, [this] { return node_->List(); }, metrics_,
        SamplerOptions{}, sink_.get());
    ASSERT_TRUE(sampler_->Load());
  }

  void Tick() { ASSERT_TRUE(sampler_->Tick()); }

  // The VM once its start, suspend or resume has settled, expected in `state`.
  VmRecord WaitFor(const std::string& name, VmState state) {
    auto vm = node_->WaitSettled(name, 5s);
    if (vm && vm->state == state) return *vm;
    ADD_FAILURE() << name << " did not become " << ToString(state) << ": "
                  << (vm ? ToString(vm->state) : vm.error().message);
    return {};
  }

  Report Local() {
    ReportQuery q{clock_.Now() - 24h, clock_.Now() + 1s, std::nullopt, ""};
    auto data = usage_->Fetch(q);
    EXPECT_TRUE(data) << data.error().message;
    return BuildReport(q, *data, "local");
  }

  std::unique_ptr<SqliteUsageStore> usage_;
  FakeUsageReader reader_;
  FakeClickHouse clickhouse_;
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<ClickHouseSink> sink_;
  Metrics metrics_;
  std::unique_ptr<Sampler> sampler_;
};

TEST_F(SamplerTest, StateTimeAndCountersAreExactAcrossARestartOfMetering) {
  NewSampler();
  CreateRequest create;
  create.name = "a";
  create.spec.kernel = "/k/vmlinux";
  create.spec.memory = MiB{512};
  auto vm = node_->Create(create);
  ASSERT_TRUE(vm);
  clock_.Advance(10s);
  Tick();

  ASSERT_TRUE(node_->Start("a", false));
  VmRecord running = WaitFor("a", VmState::kRunning);
  VmReading reading;
  reading.stats = ProcessStats{1200, {}, 100 << 20};
  reading.tap = TapStats{500, 7000, 5, 70};
  reader_.Set(vm->id, reading);
  clock_.Advance(30s);
  Tick();

  ASSERT_TRUE(node_->Suspend("a"));
  VmRecord suspended = WaitFor("a", VmState::kSuspended);
  ASSERT_TRUE(suspended.snapshot);
  clock_.Advance(20s);
  Tick();

  // hearthd restarts: a new sampler over the same stores goes on where the last one stopped.
  NewSampler();
  clock_.Advance(15s);
  ASSERT_TRUE(node_->Resume("a"));
  WaitFor("a", VmState::kRunning);
  reading.stats = ProcessStats{300, {}, 100 << 20};  // a new VMM
  reading.tap = TapStats{800, 7100, 8, 71};
  reader_.Set(vm->id, reading);
  clock_.Advance(5s);
  Tick();

  Report r = Local();
  ASSERT_EQ(r.vms.size(), 1u);
  const Usage& u = r.vms[0].usage;
  EXPECT_EQ(u.ms(StateClass::kStopped), 10'000);
  EXPECT_EQ(u.ms(StateClass::kRunning), 35'000);
  EXPECT_EQ(u.ms(StateClass::kSuspended), 35'000);
  EXPECT_EQ(u.ms(StateClass::kTransition), 0);  // the fake clock stood still during them
  EXPECT_EQ(u.ram_mib_ms, 512 * 35'000);
  int64_t snapshot_kib = (suspended.snapshot->bytes + 1023) / 1024;
  EXPECT_EQ(u.snapshot_kib_ms, snapshot_kib * 35'000);
  EXPECT_EQ(u.cpu_ms, 1200 + 300);
  EXPECT_EQ(u.net_rx_bytes, 7100);  // the tap existed from the start: counted from zero
  EXPECT_EQ(u.net_tx_bytes, 800);

  // Every metering event once, in the store and in ClickHouse.
  auto events = usage_->EventsAfter(0, 100);
  ASSERT_TRUE(events);
  std::vector<std::string> types;
  for (const auto& e : *events) types.push_back(e.type);
  EXPECT_EQ(types, (std::vector<std::string>{"created", "started", "suspended", "resumed"}));
  for (int i = 0; i < 10 && !spool_->List().empty(); ++i) sink_->SendOnce();
  EXPECT_EQ(clickhouse_.Rows("events").size(), 4u);
  auto samples = usage_->SamplesAfter(0, 100);
  EXPECT_EQ(clickhouse_.Rows("samples").size(), samples->size());
  EXPECT_NE(metrics_.Render().find("hearth_vm_state{vm=\"a\",state=\"running\"} 1"),
            std::string::npos);
}

TEST_F(SamplerTest, VmsThatExistWhenMeteringBeginsAreMeteredFromThen) {
  CreateRequest create;
  create.name = "old";
  create.spec.kernel = "/k/vmlinux";
  ASSERT_TRUE(node_->Create(create));
  clock_.Advance(1h);
  NewSampler();  // the first start of metering on this node
  clock_.Advance(70s);
  Tick();
  ASSERT_TRUE(node_->Delete("old", false));
  clock_.Advance(5s);
  Tick();
  Report r = Local();
  ASSERT_EQ(r.vms.size(), 1u);
  EXPECT_EQ(r.vms[0].usage.ms(StateClass::kStopped), 70'000);  // not the hour before, not after
  auto events = usage_->EventsAfter(0, 100);
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].type, "deleted");
  EXPECT_EQ((*events)[0].state, "deleted");
  EXPECT_TRUE(usage_->LoadState()->trackers.empty());
}

}  // namespace
}  // namespace hearth::metering

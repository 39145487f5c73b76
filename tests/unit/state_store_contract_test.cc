// The StateStore contract, run against every implementation: SQLite and the in-memory fake
// (PostgreSQL joins here when it lands).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <functional>
#include <memory>
#include <thread>

#include "fakes/fakes.h"
#include "store/sqlite_state_store.h"
#include "support/temp_dir.h"

namespace hearth::store {
namespace {

using hearth::testing::TempDir;

struct StoreFactory {
  const char* name;
  std::function<std::unique_ptr<StateStore>(const TempDir&)> make;
};

void PrintTo(const StoreFactory& factory, std::ostream* os) { *os << factory.name; }

class StateStoreContract : public ::testing::TestWithParam<StoreFactory> {
 protected:
  void SetUp() override { store_ = GetParam().make(dir_); }

  static VmRecord Vm(const std::string& name, const std::string& id) {
    VmRecord vm;
    vm.name = name;
    vm.id = id;
    vm.spec.kernel = "/k/vmlinux";
    vm.spec.publish = {{8080, 80, Protocol::kTcp}};
    vm.spec.timers.idle_timeout = Duration{30000};
    vm.created_at = vm.updated_at = Timestamp{Duration{1700000000123}};
    return vm;
  }
  static Event Ev(const VmRecord& vm, const std::string& type) {
    return Event{0, vm.id, vm.name, Timestamp{Duration{1700000000000}}, type, "m"};
  }

  TempDir dir_;
  std::unique_ptr<StateStore> store_;
};

TEST_P(StateStoreContract, CreateGetList) {
  VmRecord a = Vm("a", "id-a"), b = Vm("b", "id-b");
  b.pid = 42;
  b.ip = "172.30.0.2";
  b.backend = "qemu-tcg";
  b.state = VmState::kSuspended;
  b.snapshot = SnapshotInfo{Timestamp{Duration{5000}}, 1234};
  b.running_since = Timestamp{Duration{1700000000456}};
  ASSERT_TRUE(store_->CreateVm(b, Ev(b, "created")));
  ASSERT_TRUE(store_->CreateVm(a, Ev(a, "created")));
  auto got = store_->GetVm("b");
  ASSERT_TRUE(got);
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ(**got, b);
  auto missing = store_->GetVm("zzz");
  ASSERT_TRUE(missing);
  EXPECT_FALSE(missing->has_value());
  auto all = store_->ListVms();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].name, "a");  // ordered by name
  EXPECT_EQ((*all)[1], b);
}

TEST_P(StateStoreContract, DuplicateNameIsAlreadyExists) {
  VmRecord a = Vm("a", "id-a");
  ASSERT_TRUE(store_->CreateVm(a, Ev(a, "created")));
  VmRecord again = Vm("a", "id-other");
  auto s = store_->CreateVm(again, Ev(again, "created"));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kAlreadyExists);
  auto events = store_->ListEvents("id-other", 10);
  ASSERT_TRUE(events);
  EXPECT_TRUE(events->empty()) << "a refused create leaves no event";
}

TEST_P(StateStoreContract, UpdateNeedsTheCurrentVersion) {
  VmRecord a = Vm("a", "id-a");
  ASSERT_TRUE(store_->CreateVm(a, Ev(a, "created")));
  VmRecord edited = a;
  edited.spec.vcpus = 2;
  edited.version = 2;
  ASSERT_TRUE(store_->UpdateVm(edited, 1, Ev(a, "edited")));
  VmRecord stale = a;
  stale.spec.vcpus = 4;
  stale.version = 2;
  auto s = store_->UpdateVm(stale, 1, Ev(a, "edited"));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kFailedPrecondition);
  EXPECT_EQ((*store_->GetVm("a"))->spec.vcpus, 2) << "a stale edit never overwrites";
  VmRecord ghost = Vm("ghost", "id-g");
  auto g = store_->UpdateVm(ghost, 1, Ev(ghost, "edited"));
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().code, Code::kNotFound);
}

TEST_P(StateStoreContract, DeleteKeepsEvents) {
  VmRecord a = Vm("a", "id-a");
  ASSERT_TRUE(store_->CreateVm(a, Ev(a, "created")));
  auto stale = store_->DeleteVm("a", 7, Ev(a, "deleted"));
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, Code::kFailedPrecondition);
  ASSERT_TRUE(store_->DeleteVm("a", 1, Ev(a, "deleted")));
  EXPECT_FALSE((*store_->GetVm("a")).has_value());
  auto again = store_->DeleteVm("a", 1, Ev(a, "deleted"));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Code::kNotFound);
  auto events = store_->ListEvents("id-a", 10);
  ASSERT_TRUE(events);
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[0].type, "created");
  EXPECT_EQ((*events)[1].type, "deleted");
  EXPECT_LT((*events)[0].seq, (*events)[1].seq);
}

TEST_P(StateStoreContract, EventsLimitKeepsTheNewest) {
  VmRecord a = Vm("a", "id-a");
  ASSERT_TRUE(store_->CreateVm(a, Ev(a, "created")));
  for (int i = 0; i < 5; ++i) {
    VmRecord next = a;
    next.version = a.version + 1;
    ASSERT_TRUE(store_->UpdateVm(next, a.version, Ev(a, "edited" + std::to_string(i))));
    a = next;
  }
  auto events = store_->ListEvents("id-a", 2);
  ASSERT_TRUE(events);
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[0].type, "edited3");
  EXPECT_EQ((*events)[1].type, "edited4");
}

TEST_P(StateStoreContract, AppendEventLeavesTheRecordAlone) {
  VmRecord a = Vm("a", "id-a");
  ASSERT_TRUE(store_->CreateVm(a, Ev(a, "created")));
  ASSERT_TRUE(store_->AppendEvent(Ev(a, "timer")));
  EXPECT_EQ(**store_->GetVm("a"), a);
  auto events = store_->ListEvents("id-a", 10);
  ASSERT_TRUE(events);
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[1].type, "timer");
  EXPECT_LT((*events)[0].seq, (*events)[1].seq);
}

TEST_P(StateStoreContract, TheEventStreamCarriesTheRecordsFacts) {
  EXPECT_EQ(*store_->LastEventSeq(), 0);
  VmRecord a = Vm("a", "id-a"), b = Vm("b", "id-b");
  a.spec.vcpus = 2;
  a.spec.memory = MiB{512};
  ASSERT_TRUE(store_->CreateVm(a, Ev(a, "created")));
  ASSERT_TRUE(store_->CreateVm(b, Ev(b, "created")));
  int64_t base = a.version;
  a.version++;
  a.state = VmState::kSuspended;
  a.snapshot = SnapshotInfo{Timestamp{Duration{5000}}, 4096};
  Event woken = Ev(a, "suspended");
  woken.measures = {{"latency_ms", 12.5}, {"restore_ms", 3}};
  ASSERT_TRUE(store_->UpdateVm(a, base, woken));
  ASSERT_TRUE(store_->AppendEvent(Ev(a, "timer")));
  ASSERT_TRUE(store_->DeleteVm("b", b.version, Ev(b, "deleted")));

  auto all = store_->ListEventsAfter(0, 100);
  ASSERT_TRUE(all) << all.error().message;
  ASSERT_EQ(all->size(), 5u);
  const auto& e = *all;
  EXPECT_EQ(e[0].state, VmState::kCreated);
  EXPECT_EQ(e[0].vcpus, 2);
  EXPECT_EQ(e[0].memory, MiB{512});
  EXPECT_EQ(e[2].event.type, "suspended");
  EXPECT_EQ(e[2].state, VmState::kSuspended);
  EXPECT_EQ(e[2].snapshot_bytes, 4096);
  EXPECT_EQ(e[2].event.measures, woken.measures);
  EXPECT_FALSE(e[3].state);  // a note changes no record
  EXPECT_FALSE(e[3].deleted);
  EXPECT_TRUE(e[4].deleted);
  EXPECT_FALSE(e[4].state);
  for (size_t i = 1; i < e.size(); ++i) EXPECT_LT(e[i - 1].event.seq, e[i].event.seq);
  EXPECT_EQ(*store_->LastEventSeq(), e[4].event.seq);

  auto tail = store_->ListEventsAfter(e[1].event.seq, 2);
  ASSERT_TRUE(tail);
  ASSERT_EQ(tail->size(), 2u);
  EXPECT_EQ((*tail)[0], e[2]);
  EXPECT_EQ((*tail)[1], e[3]);
  EXPECT_TRUE(store_->ListEventsAfter(e[4].event.seq, 10)->empty());
  // The VM's own event list shows the measures too.
  EXPECT_EQ((*store_->ListEvents("id-a", 10))[1].measures, woken.measures);
}

TEST_P(StateStoreContract, Settings) {
  EXPECT_FALSE(store_->GetSetting("k")->has_value());
  ASSERT_TRUE(store_->PutSetting("k", "v1"));
  ASSERT_TRUE(store_->PutSetting("k", "v2"));
  EXPECT_EQ(**store_->GetSetting("k"), "v2");
}

INSTANTIATE_TEST_SUITE_P(
    All, StateStoreContract,
    ::testing::Values(StoreFactory{"sqlite",
                                   [](const TempDir& dir) -> std::unique_ptr<StateStore> {
                                     auto s = SqliteStateStore::Open(dir / "state.db");
                                     if (!s) throw std::runtime_error(s.error().message);
                                     return std::move(*s);
                                   }},
                      StoreFactory{"fake",
                                   [](const TempDir&) -> std::unique_ptr<StateStore> {
                                     return std::make_unique<hearth::testing::FakeStateStore>();
                                   }}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(SqliteStateStoreTest, SurvivesReopen) {
  TempDir dir;
  VmRecord a;
  a.name = "a";
  a.id = "id-a";
  a.spec.kernel = "/k";
  {
    auto s = SqliteStateStore::Open(dir / "state.db");
    ASSERT_TRUE(s);
    ASSERT_TRUE((*s)->CreateVm(a, Event{0, "id-a", "a", {}, "created", ""}));
  }
  auto s = SqliteStateStore::Open(dir / "state.db");
  ASSERT_TRUE(s);
  auto got = (*s)->GetVm("a");
  ASSERT_TRUE(got && got->has_value());
  EXPECT_EQ(**got, a);
}

TEST(SqliteStateStoreTest, RefusesANewerSchema) {
  TempDir dir;
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir / "state.db").c_str(), &db), SQLITE_OK);
    sqlite3_exec(db, "PRAGMA user_version = 999", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  auto s = SqliteStateStore::Open(dir / "state.db");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kFailedPrecondition);
  EXPECT_NE(s.error().message.find("schema version 999"), std::string::npos);
}

TEST(SqliteStateStoreTest, MigratesAnEmptyDatabaseToTheLatestSchema) {
  TempDir dir;
  ASSERT_TRUE(SqliteStateStore::Open(dir / "state.db"));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir / "state.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, nullptr);
  ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(q, 0), SqliteStateStore::SchemaVersion());
  sqlite3_finalize(q);
  sqlite3_close(db);
}

}  // namespace
}  // namespace hearth::store

namespace hearth::store {
namespace {

// Concurrent writers share commits; each write still succeeds or fails on its own, and a refused
// write in a batch does not undo the others.
TEST(SqliteStateStoreTest, ConcurrentWritesEachGetTheirOwnResult) {
  hearth::testing::TempDir dir;
  auto opened = SqliteStateStore::Open(dir / "state.db");
  ASSERT_TRUE(opened);
  SqliteStateStore& store = **opened;
  constexpr int kThreads = 8, kPerThread = 50;
  std::atomic<int> created{0}, refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        // Every name is attempted by two threads: exactly one of them may win.
        std::string name = fmt::format("vm-{}-{}", t / 2, i);
        VmRecord vm;
        vm.name = name;
        vm.id = fmt::format("id-{}-{}", t, i);
        vm.spec.kernel = "/k";
        auto s = store.CreateVm(vm, Event{0, vm.id, name, {}, "created", ""});
        if (s) {
          ++created;
        } else {
          EXPECT_EQ(s.error().code, Code::kAlreadyExists) << s.error().message;
          ++refused;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(created, kThreads * kPerThread / 2);
  EXPECT_EQ(refused, kThreads * kPerThread / 2);
  auto all = store.ListVms();
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), size_t(created));
  for (const auto& vm : *all) {
    auto events = store.ListEvents(vm.id, 10);
    ASSERT_TRUE(events);
    EXPECT_EQ(events->size(), 1u) << "the winner's event only: " << vm.name;
  }
}

}  // namespace
}  // namespace hearth::store

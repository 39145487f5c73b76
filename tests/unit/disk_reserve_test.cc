// The disk reserve and read-only mode (store/disk_reserve.h), with a fake free-space reader, and
// how a disk-full error is answered (common/result.h).
#include "store/disk_reserve.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "metering/sqlite_usage_store.h"
#include "store/sqlite_state_store.h"
#include "support/temp_dir.h"

namespace hearth::store {
namespace {

using hearth::testing::TempDir;

constexpr int64_t kBytes = 64 * 1024;

class DiskReserveTest : public ::testing::Test {
 protected:
  DiskReserve::SpaceReader Space() {
    return [this](const std::filesystem::path& dir) -> Result<DiskSpace> {
      EXPECT_EQ(dir, dir_.path());
      return DiskSpace{free_, int64_t{1} << 30};
    };
  }
  int64_t AllocatedBytes() const {
    struct stat st {};
    if (stat(file_.c_str(), &st) != 0) return -1;
    return st.st_blocks * 512;
  }

  TempDir dir_;
  std::filesystem::path file_ = DiskReserve::ReserveFileFor(dir_ / "state.db");
  int64_t free_ = int64_t{1} << 30;
  DiskReserve reserve_{file_, kBytes, Space()};
};

TEST_F(DiskReserveTest, EnsureAllocatesRealBlocksNextToTheStore) {
  EXPECT_EQ(file_, dir_ / "state.db.reserve");
  ASSERT_TRUE(reserve_.Ensure());
  EXPECT_GE(AllocatedBytes(), kBytes) << "allocated, not sparse";
  EXPECT_FALSE(reserve_.ReadOnlyReason());
  EXPECT_TRUE(reserve_.CheckWritable("creating vm 'a'"));
}

TEST_F(DiskReserveTest, ReadOnlyFreesTheReserveAndRefusesWritesWith507) {
  ASSERT_TRUE(reserve_.Ensure());
  free_ = 0;
  EXPECT_TRUE(reserve_.EnterReadOnly("store x: database or disk is full"));
  EXPECT_EQ(AllocatedBytes(), -1) << "the reserve is gone";
  EXPECT_FALSE(reserve_.EnterReadOnly("again")) << "nothing more to free";
  EXPECT_EQ(reserve_.ReadOnlyReason(), "store x: database or disk is full");
  auto s = reserve_.CheckWritable("creating vm 'a'");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kResourceExhausted);
  EXPECT_TRUE(IsDiskFull(s.error()));
  EXPECT_EQ(HttpStatusOf(s.error()), 507);
  EXPECT_NE(s.error().message.find("creating vm 'a'"), std::string::npos) << s.error().message;
  EXPECT_NE(s.error().message.find(dir_.path().string()), std::string::npos) << s.error().message;
  EXPECT_NE(s.error().message.find("free of"), std::string::npos) << s.error().message;
}

TEST_F(DiskReserveTest, LeavesReadOnlyOnlyWithRoomForTheReserveAndHalfAsMuchAgain) {
  ASSERT_TRUE(reserve_.Ensure());
  reserve_.EnterReadOnly("full");
  EXPECT_EQ(reserve_.LeaveBytes(), kBytes + kBytes / 2);
  free_ = kBytes + kBytes / 2 - 1;  // e.g. what freeing the reserve gave back, and a little
  EXPECT_TRUE(reserve_.ReadOnlyReason());
  EXPECT_FALSE(reserve_.CheckWritable("starting vm 'a'"));
  EXPECT_EQ(AllocatedBytes(), -1);
  free_ = kBytes + kBytes / 2;
  EXPECT_TRUE(reserve_.CheckWritable("starting vm 'a'"));
  EXPECT_FALSE(reserve_.ReadOnlyReason());
  EXPECT_GE(AllocatedBytes(), kBytes) << "the reserve is back";
}

TEST_F(DiskReserveTest, EnsureKeepsAnExistingReserveAndSkipsWhileReadOnly) {
  ASSERT_TRUE(reserve_.Ensure());
  ASSERT_TRUE(reserve_.Ensure());
  EXPECT_GE(AllocatedBytes(), kBytes);
  reserve_.EnterReadOnly("full");
  free_ = 0;
  ASSERT_TRUE(reserve_.Ensure());
  EXPECT_EQ(AllocatedBytes(), -1) << "no reserve is made while read-only";
}

// While the node is read-only, metering writes nothing: the room left is for deletes.
TEST_F(DiskReserveTest, MeteringWritesNothingWhileReadOnly) {
  auto state = SqliteStateStore::Open(dir_ / "state.db");
  ASSERT_TRUE(state) << state.error().message;
  auto usage = metering::SqliteUsageStore::Open(dir_ / "state.db");
  ASSERT_TRUE(usage) << usage.error().message;
  (*usage)->SetWriteGate([this] { return reserve_.CheckWritable("metering"); });
  metering::TickResult tick;
  ASSERT_TRUE((*usage)->Commit(metering::TickWrite{1, &tick}));
  free_ = 0;
  reserve_.EnterReadOnly("full");
  auto refused = (*usage)->Commit(metering::TickWrite{2, &tick});
  ASSERT_FALSE(refused);
  EXPECT_EQ(HttpStatusOf(refused.error()), 507);
  EXPECT_FALSE((*usage)->Maintain(Timestamp{}, Duration{0}, Duration{0}));
  auto state_now = (*usage)->LoadState();
  ASSERT_TRUE(state_now) << state_now.error().message;
  EXPECT_EQ(state_now->cursor, 1) << "the refused tick wrote nothing";
  free_ = int64_t{1} << 30;
  EXPECT_TRUE((*usage)->Commit(metering::TickWrite{2, &tick}));
}

TEST(DiskFullErrorTest, Is507WhileOtherResourceExhaustedStays429) {
  Error limit{Code::kResourceExhausted, "memory"};
  EXPECT_EQ(HttpStatusOf(limit), 429);
  Error full = DiskFullError("writing x", "/nonexistent/dir/file");
  EXPECT_EQ(full.code, Code::kResourceExhausted);
  EXPECT_EQ(HttpStatusOf(full), 507);
  EXPECT_EQ(HttpStatusOf(full.Wrap("creating vm 'a'")), 507) << "context keeps it a full disk";
  EXPECT_NE(full.message.find("/nonexistent/dir/file"), std::string::npos) << full.message;
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(3 << 19), "1.5 MiB");
}

}  // namespace
}  // namespace hearth::store

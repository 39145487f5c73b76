// The snapshot directory: a new snapshot replaces the previous one only once it is whole, and a
// snapshot is used only while its files match their sums and its origin matches the machine.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <tuple>

#include "common/files.h"
#include "snapshot/snapshot_dir.h"
#include "support/temp_dir.h"

namespace hearth::snapshot {
namespace {

namespace fs = std::filesystem;

class SnapshotDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(paths_.vm_dir("vm1"));
    std::ofstream(paths_.memory_file("vm1")) << std::string(4096, 'r');
  }

  // Stages a snapshot whose device state is `state` and commits it.
  Result<Manifest> Take(const std::string& state, Timestamp at) {
    if (auto s = dir_.Begin(); !s) return Fail(s.error());
    std::ofstream(dir_.staging() / "state") << state;
    Manifest m;
    m.vm_version = 7;
    m.taken_at = at;
    m.host_boot_id = "boot";
    m.origin.backend = "qemu-tcg";
    m.memory_file = "memory";
    return dir_.Commit(m);
  }

  testing::TempDir tmp_;
  Paths paths_{tmp_.path()};
  SnapshotDir dir_{paths_, "vm1"};
  Timestamp t1_{std::chrono::milliseconds(1000)};
  Timestamp t2_{std::chrono::milliseconds(2000)};
};

TEST_F(SnapshotDirTest, CommitSumsTheFilesAndLoadChecksThem) {
  auto m = Take("device state", t1_);
  ASSERT_TRUE(m) << m.error().message;
  ASSERT_EQ(m->files.size(), 1u);
  EXPECT_EQ(m->files[0].name, "state");
  EXPECT_EQ(m->files[0].bytes, 12);
  EXPECT_EQ(m->memory_bytes, 4096);
  EXPECT_FALSE(fs::exists(dir_.staging()));
  auto loaded = dir_.Load();
  ASSERT_TRUE(loaded) << loaded.error().message;
  EXPECT_EQ(*loaded, *m);
  EXPECT_GT(dir_.DiskBytes(*loaded), 4096);
}

TEST_F(SnapshotDirTest, AnAlteredFileOrRamFileIsRefused) {
  ASSERT_TRUE(Take("device state", t1_));
  std::ofstream(dir_.current() / "state") << "device stat!";  // same size, other content
  auto r = dir_.Load();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kFailedPrecondition);
  EXPECT_NE(r.error().message.find("SHA-256"), std::string::npos) << r.error().message;

  ASSERT_TRUE(Take("device state", t2_));
  fs::resize_file(paths_.memory_file("vm1"), 100);
  r = dir_.Load();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("RAM file"), std::string::npos) << r.error().message;
}

TEST_F(SnapshotDirTest, TheOldSnapshotStaysUntilTheNewOneIsWhole) {
  ASSERT_TRUE(Take("first", t1_));
  // A second snapshot being written (the process dies before the manifest): the first is intact.
  ASSERT_TRUE(dir_.Begin());
  std::ofstream(dir_.staging() / "state") << "second, half writ";
  auto still = dir_.Load();
  ASSERT_TRUE(still) << still.error().message;
  EXPECT_EQ(still->taken_at, t1_);
  // Completing it replaces the first in one step and leaves no staging directory.
  auto second = Take("second", t2_);
  ASSERT_TRUE(second);
  EXPECT_EQ(dir_.Load()->taken_at, t2_);
  EXPECT_FALSE(fs::exists(dir_.staging()));
}

TEST_F(SnapshotDirTest, AConsumedSnapshotIsNeverRestoredAgain) {
  ASSERT_TRUE(Take("state", t1_));
  ASSERT_TRUE(dir_.MarkConsumed());
  auto r = dir_.Load();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("already ran"), std::string::npos);
  dir_.Discard();
  EXPECT_EQ(dir_.Load().error().code, Code::kNotFound);
}

TEST_F(SnapshotDirTest, SyncedIsRecordedOnlyForTheSameUnusedSnapshot) {
  ASSERT_TRUE(Take("state", t1_));
  EXPECT_FALSE(dir_.Sync(t2_)) << "another snapshot";
  auto synced = dir_.Sync(t1_);
  ASSERT_TRUE(synced) << synced.error().message;
  EXPECT_FALSE(dir_.Load()->synced);
  ASSERT_TRUE(dir_.MarkSynced(*synced));
  EXPECT_TRUE(dir_.Load()->synced);

  ASSERT_TRUE(Take("state", t2_));
  synced = dir_.Sync(t2_);
  ASSERT_TRUE(synced);
  ASSERT_TRUE(dir_.MarkConsumed());  // resumed while it was being synced
  EXPECT_FALSE(dir_.MarkSynced(*synced));
}

TEST(SnapshotManifestTest, RoundTripsAndRefusesOtherFormats) {
  Manifest m;
  m.vm_id = "id";
  m.vm_version = 3;
  m.taken_at = Timestamp(std::chrono::milliseconds(1234));
  m.origin = {"qemu-tcg", "QEMU 7.2", 2, 256, "k", "i", "r", "c", "m"};
  m.files = {{"state", 10, "ab"}};
  m.memory_file = "memory";
  m.memory_bytes = 1 << 20;
  auto back = ManifestFromJson(ToJson(m));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(*back, m);
  auto j = ToJson(m);
  j["format"] = kFormatVersion + 1;
  EXPECT_EQ(ManifestFromJson(j).error().code, Code::kFailedPrecondition);
  j.erase("format");
  EXPECT_FALSE(ManifestFromJson(j));
}

// Found by fuzz/snapshot_manifest_fuzz: get<int>() of a float out of range is undefined behaviour
// (it read 1e300 vcpus as INT_MIN on x86); a fraction or a value out of range is now refused.
TEST(SnapshotManifestTest, RefusesIntegersThatAreFloatsOrOutOfRange) {
  Manifest m;
  m.vm_id = "id";
  m.origin = {"qemu-tcg", "QEMU 7.2", 2, 256, "k", "i", "r", "c", "m"};
  ASSERT_TRUE(ManifestFromJson(ToJson(m)));
  for (auto [where, key, value] :
       {std::tuple{"", "format", nlohmann::json(1e300)},
        {"", "vm_version", nlohmann::json(-1e300)},
        {"", "memory_bytes", nlohmann::json(1.5)},
        {"origin", "vcpus", nlohmann::json(1e300)},
        {"origin", "vcpus", nlohmann::json(int64_t{1} << 40)},
        {"origin", "memory_mib", nlohmann::json(18446744073709551615ull)}}) {
    auto j = ToJson(m);
    (std::string(where).empty() ? j : j[where])[key] = value;
    auto r = ManifestFromJson(j);
    ASSERT_FALSE(r) << key << " = " << value.dump();
    EXPECT_NE(r.error().message.find(key), std::string::npos) << r.error().message;
  }
}

TEST(SnapshotManifestTest, CheckOriginNamesTheDifference) {
  Origin taken{"qemu-tcg", "QEMU 7.2", 2, 256, "k", "i", "r", "c", "m"};
  EXPECT_TRUE(CheckOrigin(taken, taken));
  Origin now = taken;
  now.memory_mib = 512;
  auto r = CheckOrigin(taken, now);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kFailedPrecondition);
  EXPECT_NE(r.error().message.find("memory 256 MiB"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("512 MiB"), std::string::npos);
  now = taken;
  now.backend = "qemu-kvm";
  EXPECT_NE(CheckOrigin(taken, now).error().message.find("backend qemu-tcg"), std::string::npos);
}

TEST(DurableFilesTest, WriteFileDurablyReplacesWholeAndLeavesNoTemporary) {
  testing::TempDir tmp;
  fs::path p = tmp.path() / "f";
  ASSERT_TRUE(WriteFileDurably(p, "one"));
  ASSERT_TRUE(WriteFileDurably(p, "two"));
  std::ifstream in(p);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, "two");
  EXPECT_FALSE(fs::exists(tmp.path() / "f.tmp"));
  EXPECT_FALSE(WriteFileDurably(tmp.path() / "no" / "such" / "dir", "x"));
}

}  // namespace
}  // namespace hearth::snapshot

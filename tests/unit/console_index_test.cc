#include "hv/console_index.h"

#include <gtest/gtest.h>

#include <fstream>

#include "support/temp_dir.h"

namespace hearth::hv {
namespace {

Timestamp At(const char* text) { return *ParseTime(text); }

TEST(ConsoleIndexTest, EachLineGetsTheTimeItsFirstByteWasSeen) {
  // "boot\n" (0-5) seen at :01, "ready\nhalf" (5-15) at :02; the rest never indexed.
  std::vector<ConsoleTime> times = {{5, At("2026-12-03T10:00:01Z")},
                                    {15, At("2026-12-03T10:00:02.5Z")}};
  std::string log = "boot\nready\nhalf line\nlate\n";
  EXPECT_EQ(StampLines(log, 0, times, At("2026-12-03T10:00:09Z")),
            "2026-12-03T10:00:01.000Z boot\n"
            "2026-12-03T10:00:02.500Z ready\n"
            "2026-12-03T10:00:02.500Z half line\n"  // starts before offset 15
            "2026-12-03T10:00:09.000Z late\n");
  // A tail that starts at offset 11 ("half line...").
  EXPECT_EQ(StampLines("half line\n", 11, times, At("2026-12-03T10:00:09Z")),
            "2026-12-03T10:00:02.500Z half line\n");
}

TEST(ConsoleIndexTest, LastLinesOfCountsAFinalPartialLine) {
  int64_t skipped = 0;
  EXPECT_EQ(LastLinesOf("a\nb\nc\n", 2, skipped), "b\nc\n");
  EXPECT_EQ(skipped, 2);
  EXPECT_EQ(LastLinesOf("a\nb\nc", 1, skipped), "c");
  EXPECT_EQ(skipped, 4);
  EXPECT_EQ(LastLinesOf("a\nb\n", 9, skipped), "a\nb\n");
  EXPECT_EQ(skipped, 0);
}

TEST(ConsoleIndexTest, AppendsReadsShiftsAndMerges) {
  testing::TempDir dir;
  auto index = dir / "console.times";
  EXPECT_EQ(LastConsoleEnd(index), 0);
  for (int i = 1; i <= 10; ++i) {
    ASSERT_TRUE(AppendConsoleTime(index, {i * 100, Timestamp{std::chrono::seconds(i)}}));
  }
  EXPECT_EQ(LastConsoleEnd(index), 1000);
  // The log lost its first 250 bytes: entries ending at or before them go, the rest move back.
  ASSERT_TRUE(ShiftConsoleTimes(index, 250, 100));
  auto times = ReadConsoleTimes(index);
  ASSERT_EQ(times.size(), 8u);
  EXPECT_EQ(times.front(), (ConsoleTime{50, Timestamp{std::chrono::seconds(3)}}));
  EXPECT_EQ(times.back().end, 750);
  // Too many entries: the older ones merge, each keeping the later time; the newest stay.
  ASSERT_TRUE(ShiftConsoleTimes(index, 0, 6));
  times = ReadConsoleTimes(index);
  EXPECT_LE(times.size(), 6u);
  EXPECT_EQ(times.back().end, 750);
  for (size_t i = 1; i < times.size(); ++i) {
    EXPECT_LT(times[i - 1].end, times[i].end);
    EXPECT_LT(times[i - 1].seen, times[i].seen);
  }
  EXPECT_EQ(StampLines("x\n", 0, times, Timestamp{}).substr(0, 19), "1970-01-01T00:00:04");
}

}  // namespace
}  // namespace hearth::hv

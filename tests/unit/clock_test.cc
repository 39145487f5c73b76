#include "common/clock.h"

#include <gtest/gtest.h>

namespace hearth {
namespace {

TEST(TimeTest, ParsesAndFormatsRfc3339) {
  auto t = ParseTime("2026-12-01T18:00:00Z");
  ASSERT_TRUE(t);
  EXPECT_EQ(FormatTime(*t), "2026-12-01T18:00:00Z");
  auto offset = ParseTime("2026-12-01T19:30:00+01:30");
  ASSERT_TRUE(offset);
  EXPECT_EQ(*offset, *t);
  auto frac = ParseTime("2026-12-01T18:00:00.250Z");
  ASSERT_TRUE(frac);
  EXPECT_EQ(FormatTime(*frac), "2026-12-01T18:00:00.250Z");
  EXPECT_EQ(FormatTime(Timestamp{}), "1970-01-01T00:00:00Z");
  EXPECT_EQ(FormatTime(*ParseTime("9999-12-31T23:59:59.999Z")), "9999-12-31T23:59:59.999Z");
}

TEST(TimeTest, RefusesMalformedTimes) {
  for (const char* bad :
       {"", "2026-12-01", "2026-12-01T18:00:00", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z",
        "2026-12-01T24:00:00Z", "tomorrow", "2026-12-01T18:00:00Zjunk", "2026-12-01T18:00:00+1",
        "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:60Z", "1970-01-01T00:00:00+01:00"}) {
    SCOPED_TRACE(bad);
    auto t = ParseTime(bad);
    ASSERT_FALSE(t);
    EXPECT_NE(t.error().message.find(bad), std::string::npos);
  }
}

TEST(DurationTest, ParsesUnitsAndSequences) {
  EXPECT_EQ(*ParseDuration("30s"), Duration{30000});
  EXPECT_EQ(*ParseDuration("500ms"), Duration{500});
  EXPECT_EQ(*ParseDuration("1h30m"), Duration{5400000});
  EXPECT_EQ(*ParseDuration("2d"), Duration{172800000});
  EXPECT_EQ(*ParseDuration("0s"), Duration{0});
  for (const char* bad : {"", "30", "s", "-5s", "1.5h", "5 s", "10y", "99999999999999999999h"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(ParseDuration(bad));
  }
}

TEST(DurationTest, FormatsCanonically) {
  EXPECT_EQ(FormatDuration(Duration{5400000}), "1h30m");
  EXPECT_EQ(FormatDuration(Duration{0}), "0s");
  EXPECT_EQ(FormatDuration(Duration{1500}), "1s500ms");
  for (const char* text : {"1h30m", "2d", "45s", "1s500ms"}) {
    EXPECT_EQ(FormatDuration(*ParseDuration(text)), text);
  }
}

TEST(ClockTest, AddClampedStaysWithinRfc3339) {
  Timestamp t{std::chrono::hours(24 * 20000)};
  EXPECT_EQ(AddClamped(t, std::chrono::hours(1)), t + std::chrono::hours(1));
  EXPECT_EQ(AddClamped(t, Duration::max()), kLatestTime);
  EXPECT_EQ(AddClamped(kLatestTime, Duration{1}), kLatestTime);
  EXPECT_EQ(AddClamped(t, Duration::min()), kEarliestTime);
  EXPECT_EQ(AddClamped(t, -std::chrono::hours(24 * 30000)), kEarliestTime);
  EXPECT_EQ(FormatTime(kLatestTime), "9999-12-31T23:59:59.999Z");
}

}  // namespace
}  // namespace hearth

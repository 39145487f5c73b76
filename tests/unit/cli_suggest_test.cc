#include <gtest/gtest.h>

#include "cli/suggest.h"

namespace hearth::cli {
namespace {

TEST(CliSuggestTest, NearestFlagOrVerb) {
  std::vector<std::string> flags = {"--help",  "--vcpus",        "--memory",     "--kernel",
                                    "--image", "--idle-timeout", "--stop-after", "-o"};
  EXPECT_EQ(Nearest("--memroy", flags), "--memory");      // two letters swapped
  EXPECT_EQ(Nearest("--memori", flags), "--memory");      // one wrong
  EXPECT_EQ(Nearest("--vcpu", flags), "--vcpus");         // one missing
  EXPECT_EQ(Nearest("--idle", flags), "--idle-timeout");  // a prefix of one flag only
  EXPECT_EQ(Nearest("--bogus-thing", flags), std::nullopt);
  std::vector<std::string> verbs = {"create", "edit",  "ls",   "show",    "logs",  "events",
                                    "rm",     "start", "stop", "suspend", "resume"};
  EXPECT_EQ(Nearest("strat", verbs), "start");
  EXPECT_EQ(Nearest("lst", verbs), "ls");
  EXPECT_EQ(Nearest("delete", verbs), std::nullopt);
  EXPECT_EQ(Nearest("", verbs), std::nullopt);
}

TEST(CliSuggestTest, EditDistanceCountsSwapsAsOne) {
  EXPECT_EQ(EditDistance("memroy", "memory"), 1);
  EXPECT_EQ(EditDistance("abc", "abc"), 0);
  EXPECT_EQ(EditDistance("", "abc"), 3);
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3);
}

}  // namespace
}  // namespace hearth::cli

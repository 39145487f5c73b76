#include "api/request_target.h"

#include <gtest/gtest.h>

namespace hearth::api {
namespace {

TEST(RequestTargetTest, SplitsAndDecodesPathAndQuery) {
  auto t = ParseTarget("//v1/vms/a%20b/?x=1+2&flag&&y=%41");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->segments, (std::vector<std::string>{"v1", "vms", "a b"}));
  EXPECT_EQ(t->query, (std::map<std::string, std::string>{{"x", "1 2"}, {"flag", ""}, {"y", "A"}}));
  auto plus = ParseTarget("/a+b");
  ASSERT_TRUE(plus);
  EXPECT_EQ(plus->segments, std::vector<std::string>{"a+b"}) << "'+' is a space in the query only";
  EXPECT_FALSE(ParseTarget("/v1/%4"));
  EXPECT_FALSE(ParseTarget("/v1/%zz"));
  EXPECT_FALSE(ParseTarget("/v1?a=%g0"));
}

TEST(RequestTargetTest, ChecksQueryParameters) {
  auto t = *ParseTarget("/x?force=true&colour=blue");
  auto s = CheckQuery(t, {"force"});
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kInvalidArgument);
  EXPECT_EQ(s.error().field, "colour");
  EXPECT_TRUE(CheckQuery(t, {"force", "colour"}));
}

TEST(RequestTargetTest, ReadsFlagsNumbersAndWaits) {
  auto t = *ParseTarget("/x?a&b=true&c=0&d=maybe&n=42&m=4x&wait=30s&big=99999");
  EXPECT_EQ(*QueryFlag(t, "a"), true);
  EXPECT_EQ(*QueryFlag(t, "b"), true);
  EXPECT_EQ(*QueryFlag(t, "c"), false);
  EXPECT_EQ(*QueryFlag(t, "absent"), false);
  EXPECT_FALSE(QueryFlag(t, "d"));
  EXPECT_EQ(*QueryInt(t, "n", 1, 1, 100), 42);
  EXPECT_EQ(*QueryInt(t, "absent", 7, 1, 100), 7);
  EXPECT_FALSE(QueryInt(t, "m", 1, 1, 100));
  EXPECT_FALSE(QueryInt(t, "big", 1, 1, 100));
  EXPECT_EQ(*QueryWait(t), std::chrono::seconds(30));
  EXPECT_EQ(*QueryWait(*ParseTarget("/x")), std::nullopt);
  EXPECT_FALSE(QueryWait(*ParseTarget("/x?wait=11m")));
  EXPECT_FALSE(QueryWait(*ParseTarget("/x?wait=0s")));
}

TEST(RequestTargetTest, ReadsIfMatch) {
  HttpRequest req;
  EXPECT_EQ(*IfMatchGeneration(req), std::nullopt);
  req.headers["if-match"] = "\"5\"";
  EXPECT_EQ(*IfMatchGeneration(req), 5);
  req.headers["if-match"] = "6";
  EXPECT_EQ(*IfMatchGeneration(req), 6);
  req.headers["if-match"] = "W/\"6\"";
  auto bad = IfMatchGeneration(req);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field, "If-Match");
}

}  // namespace
}  // namespace hearth::api

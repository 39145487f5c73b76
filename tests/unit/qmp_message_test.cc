#include "hv/qemu/qmp_message.h"

#include <gtest/gtest.h>

#include <limits>

namespace hearth::hv::qemu {
namespace {

using nlohmann::json;

TEST(QmpMessageTest, ParsesOneObjectPerLine) {
  auto m = ParseQmpLine(R"({"return": {"status": "running"}})", "qmp x");
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_FALSE(IsQmpEvent(*m));
  auto answer = QmpCommandAnswer(*m, "query-status");
  ASSERT_TRUE(answer);
  EXPECT_EQ((*answer)["status"], "running");
  for (const char* bad : {"", "[1]", "\"x\"", "{\"return\"", "null"}) {
    auto r = ParseQmpLine(bad, "qmp x");
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, Code::kUnavailable);
    EXPECT_NE(r.error().message.find("qmp x: not a JSON object"), std::string::npos);
  }
}

TEST(QmpMessageTest, ErrorsOfAnyShapeAreFailedPreconditions) {
  auto r = QmpCommandAnswer(json::parse(R"({"error": {"class": "GenericError", "desc": "no"}})"),
                            "stop");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kFailedPrecondition);
  EXPECT_EQ(r.error().message, "qmp stop: GenericError: no");
  for (const char* text : {R"({"error": "boom"})", R"({"error": {"class": 1, "desc": []}})",
                           R"({"error": null, "return": {}})"}) {
    auto e = QmpCommandAnswer(json::parse(text), "stop");
    ASSERT_FALSE(e) << text;
    EXPECT_EQ(e.error().code, Code::kFailedPrecondition) << text;
  }
  auto odd = QmpCommandAnswer(json::parse(R"({"timestamp": 1})"), "stop");
  ASSERT_FALSE(odd);
  EXPECT_EQ(odd.error().code, Code::kUnavailable);
}

TEST(QmpMessageTest, EventsWithMembersOfTheWrongTypeReadAsEmpty) {
  json e = json::parse(R"({"event": "MIGRATION", "data": {"status": "completed"}})");
  EXPECT_TRUE(IsQmpEvent(e));
  EXPECT_EQ(QmpEventName(e), "MIGRATION");
  EXPECT_EQ(MigrationStatus(QmpEventData(e)), "completed");
  json odd = json::parse(R"({"event": 5, "data": "completed"})");
  EXPECT_TRUE(IsQmpEvent(odd));
  EXPECT_EQ(QmpEventName(odd), "");
  EXPECT_EQ(QmpEventData(odd), json::object());
  EXPECT_EQ(MigrationStatus(json::parse(R"({"status": 3})")), "");
  EXPECT_EQ(MigrationStatus(json::array()), "");
}

TEST(QmpMessageTest, VcpuThreadsSkipEntriesWithoutIntegerIds) {
  json cpus = json::parse(R"([
    {"cpu-index": 1, "thread-id": 4012, "qom-path": "/machine/unattached/device[1]"},
    {"cpu-index": 0, "thread-id": 4011},
    {"cpu-index": "2", "thread-id": 4013},
    {"cpu-index": 3, "thread-id": 1.5},
    {"cpu-index": 4, "thread-id": 18446744073709551615},
    7, null, {"cpu-index": 5}
  ])");
  EXPECT_EQ(VcpuThreadsFromQuery(cpus), (std::vector<int64_t>{4011, 4012}));
  EXPECT_TRUE(VcpuThreadsFromQuery(json::object()).empty());
}

TEST(QmpMessageTest, BlockStatsSumIntegersAndSaturate) {
  json stats = json::parse(R"([
    {"device": "", "qdev": "/machine/peripheral-anon/device[0]/virtio-backend",
     "stats": {"rd_bytes": 4096, "wr_bytes": 512, "rd_operations": 3, "wr_operations": 1}},
    {"stats": {"rd_bytes": "9", "wr_bytes": -5, "rd_operations": 1e30}},
    {"stats": 4}, 5, {"device": "x"},
    {"stats": {"wr_bytes": 9223372036854775807}}
  ])");
  DiskCounters d = DiskCountersFromQuery(stats);
  EXPECT_EQ(d.read_bytes, 4096);
  EXPECT_EQ(d.write_bytes, std::numeric_limits<int64_t>::max());
  EXPECT_EQ(d.read_ops, 3);
  EXPECT_EQ(d.write_ops, 1);
  EXPECT_EQ(DiskCountersFromQuery(json("x")), DiskCounters{});
}

}  // namespace
}  // namespace hearth::hv::qemu

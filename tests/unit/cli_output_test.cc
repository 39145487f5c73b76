#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>

#include "cli/output.h"

namespace hearth::cli {
namespace {

using nlohmann::json;

TEST(CliOutputTest, ParsesMemorySizes) {
  EXPECT_EQ(*ParseMemoryMib("512"), 512);
  EXPECT_EQ(*ParseMemoryMib("256M"), 256);
  EXPECT_EQ(*ParseMemoryMib("256MiB"), 256);
  EXPECT_EQ(*ParseMemoryMib("2G"), 2048);
  EXPECT_EQ(*ParseMemoryMib("1GiB"), 1024);
  for (const char* bad : {"", "abc", "1.5G", "12T", "-5M", "M"}) {
    SCOPED_TRACE(bad);
    auto r = ParseMemoryMib(bad);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("--memory"), std::string::npos);
  }
}

TEST(CliOutputTest, YamlSpecFilesBecomeTypedJson) {
  auto doc = YamlToJson(R"(
name: web
vcpus: 2
memory_mib: 512
cmdline: "42"
rootfs_readonly: true
initrd: ~
publish: ["8080:80"]
timers: {idle_timeout: 30s}
)");
  ASSERT_TRUE(doc);
  EXPECT_EQ((*doc)["vcpus"], 2);
  EXPECT_EQ((*doc)["cmdline"], "42") << "quoted scalars stay strings";
  EXPECT_EQ((*doc)["rootfs_readonly"], true);
  EXPECT_TRUE((*doc)["initrd"].is_null());
  EXPECT_EQ((*doc)["publish"][0], "8080:80");
  EXPECT_EQ((*doc)["timers"]["idle_timeout"], "30s");
  EXPECT_FALSE(YamlToJson("a: [1,"));
  // A key given twice is refused, naming it, not the last one taken.
  auto dup = YamlToJson(
      "name: web\nkernel: /srv/hearth/k\ntimers:\n  stop_after: 1h\n"
      "  stop_after: 2h\n");
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().field, "stop_after");
  EXPECT_NE(dup.error().message.find("key 'stop_after' is given twice (again on line 5)"),
            std::string::npos)
      << dup.error().message;
  EXPECT_FALSE(YamlToJson("kernel: /a\nkernel: /b\n"));
  // Found by fuzz/vm_spec_yaml_fuzz: a file that is not UTF-8 parsed, then json::dump threw.
  auto latin1 = YamlToJson("name: caf\xe9\n");
  ASSERT_FALSE(latin1);
  EXPECT_NE(latin1.error().message.find("not valid UTF-8 (byte 0xe9 at offset 9)"),
            std::string::npos)
      << latin1.error().message;
  EXPECT_TRUE(YamlToJson("name: caf\xc3\xa9\n"));
  // Found by fuzz/vm_spec_yaml_fuzz: an anchor holding an alias of itself recursed until the
  // stack ran out.
  auto cycle = YamlToJson("a: &x\n  b: *x\n");
  ASSERT_FALSE(cycle);
  EXPECT_NE(cycle.error().message.find("nested deeper than 64 levels"), std::string::npos)
      << cycle.error().message;
  // The same bytes made by a YAML escape in a UTF-8 file.
  auto escaped = YamlToJson("name: \"caf\\xe9\"\n");
  if (escaped) {
    EXPECT_NO_THROW((void)escaped->dump()) << "what parsed must be writable as JSON";
  } else {
    EXPECT_NE(escaped.error().message.find("line 1: a value that is not valid UTF-8"),
              std::string::npos)
        << escaped.error().message;
  }
}

TEST(CliOutputTest, YamlOutputRoundTrips) {
  json v = {{"name", "web"}, {"n", 3}, {"none", nullptr}, {"list", {"a", "b"}}, {"s", "true"}};
  auto back = YamlToJson(ToYaml(v));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, v);
}

TEST(CliOutputTest, TablesAlignAndShowSuspendedState) {
  json list = {{"vms",
                {{{"name", "web"},
                  {"state", "running"},
                  {"vcpus", 1},
                  {"memory_mib", 256},
                  {"ip", "172.30.0.2"},
                  {"publish", json::array()},
                  {"timers", json::object()},
                  {"version", 3}},
                 {{"name", "db"},
                  {"state", "suspended"},
                  {"vcpus", 2},
                  {"memory_mib", 1024},
                  {"ip", nullptr},
                  {"snapshot", {{"bytes", 5 << 20}, {"taken_at", "x"}}},
                  {"publish", {{{"host_port", 5432}, {"guest_port", 5432}, {"protocol", "tcp"}}}},
                  {"timers", {{"idle_timeout", "30s"}, {"on_timer", "suspend"}}},
                  {"version", 1}}}}};
  std::string table = VmListTable(list);
  EXPECT_NE(table.find("NAME  STATE"), std::string::npos) << table;
  EXPECT_NE(table.find("suspended (5 MiB on disk)"), std::string::npos) << table;
  EXPECT_NE(table.find("5432:5432/tcp"), std::string::npos);
  EXPECT_NE(table.find("idle-timeout=30s on-timer=suspend"), std::string::npos) << table;
  EXPECT_NE(VmListTable({{"vms", json::array()}}).find("No VMs"), std::string::npos);
}

TEST(CliOutputTest, TablesShowTheNextTimerRelativeToNow) {
  Timestamp now = *ParseTime("2026-11-26T07:40:00Z");
  json vm = {
      {"name", "web"},
      {"state", "running"},
      {"vcpus", 1},
      {"memory_mib", 256},
      {"ip", "172.30.0.2"},
      {"publish", json::array()},
      {"timers", {{"idle_timeout", "5m"}, {"on_timer", "suspend"}}},
      {"running_since", "2026-11-26T07:39:00Z"},
      {"next_timer",
       {{"kind", "idle-timeout"}, {"action", "suspend"}, {"at", "2026-11-26T07:44:11.500Z"}}},
      {"snapshot", nullptr},
      {"version", 3}};
  std::string list = VmListTable({{"vms", {vm}}}, now);
  EXPECT_NE(list.find("NEXT TIMER"), std::string::npos) << list;
  EXPECT_NE(list.find("idle-timeout: suspend in 4m12s"), std::string::npos) << list;
  std::string detail = VmDetailTable(vm, now);
  EXPECT_NE(detail.find("idle-timeout: suspend in 4m12s (at 2026-11-26T07:44:11.500Z)"),
            std::string::npos)
      << detail;
  EXPECT_NE(detail.find("running_since:"), std::string::npos) << detail;

  vm["next_timer"]["at"] = "2026-11-26T09:45:30Z";
  vm["next_timer"]["action"] = "stop";
  EXPECT_NE(VmListTable({{"vms", {vm}}}, now).find("stop in 2h5m"), std::string::npos);
  vm["next_timer"]["at"] = "2026-11-26T07:39:59Z";
  EXPECT_NE(VmListTable({{"vms", {vm}}}, now).find("stop now"), std::string::npos);

  vm["state"] = "suspended";
  vm["next_timer"] = nullptr;
  vm["snapshot"] = {{"bytes", 300 << 20}, {"taken_at", "2026-11-26T07:44:12Z"}};
  list = VmListTable({{"vms", {vm}}}, now);
  EXPECT_NE(list.find("suspended (300 MiB on disk)"), std::string::npos) << list;
  detail = VmDetailTable(vm, now);
  EXPECT_NE(detail.find("300 MiB on disk, taken 2026-11-26T07:44:12Z"), std::string::npos)
      << detail;
  size_t line = detail.find("next_timer:");
  ASSERT_NE(line, std::string::npos) << detail;
  EXPECT_EQ(detail.substr(line, detail.find('\n', line) - line).back(), '-') << detail;
}

TEST(CliOutputTest, UsageAsTableAndCsv) {
  json line = {{"vm", "web"},
               {"vm_id", "vm-1"},
               {"cpu_seconds", 12.5},
               {"ram_gib_hours", 0.25},
               {"snapshot_gib_hours", 0},
               {"running_seconds", 900},
               {"suspended_seconds", 0},
               {"net_rx_bytes", 2048},
               {"net_tx_bytes", 10},
               {"disk_read_bytes", 0},
               {"disk_write_bytes", 0},
               {"wakes", 2},
               {"wake_p50_ms", 180.5},
               {"wake_p99_ms", nullptr}};
  json total = line;
  total.erase("vm");
  total.erase("vm_id");
  json row = line;
  row["start"] = "2026-01-01T10:00:00Z";
  json report = {{"since", "2026-01-01T00:00:00Z"},
                 {"until", "2026-01-02T00:00:00Z"},
                 {"source", "local"},
                 {"vms", {line}},
                 {"rows", {row}},
                 {"total", total}};
  std::string table = UsageTable(report);
  EXPECT_NE(table.find("usage 2026-01-01T00:00:00Z to 2026-01-02T00:00:00Z (local)"),
            std::string::npos);
  EXPECT_NE(table.find("START"), std::string::npos);
  EXPECT_NE(table.find("2.0 KiB"), std::string::npos) << table;
  EXPECT_NE(table.find("TOTAL"), std::string::npos);
  EXPECT_NE(table.find("180.5"), std::string::npos);
  std::string csv = UsageCsv(report);
  auto first_nl = csv.find('\n');
  EXPECT_EQ(csv.substr(0, 28), "start,vm,vm_id,cpu_seconds,v");
  std::string body = csv.substr(first_nl + 1);
  EXPECT_EQ(body.substr(0, body.find('\n')),
            "2026-01-01T10:00:00Z,web,vm-1,12.5,,0.25,0,900,0,,,2048,10,,,0,0,,,2,180.5,");
  EXPECT_NE(csv.find("\n,TOTAL,,12.5"), std::string::npos) << csv;
}

// A VM whose reason quotes a guest's console (and a name from an older or foreign server) with
// escape sequences: a retitle, clear screen, colours, a C1 CSI.
json HostileVm() {
  return {{"name", "web\x1b[2J"},
          {"id", "vm-1"},
          {"state", "failed"},
          {"state_reason", "qemu exited; console: \x1b]0;owned\x07\x1b[31mpanic\xc2\x9b\r"},
          {"vcpus", 1},
          {"memory_mib", 256},
          {"ip", nullptr},
          {"publish", json::array()},
          {"timers", json::object()},
          {"version", 3}};
}

bool HasControlBytes(const std::string& s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    auto b = static_cast<unsigned char>(c);
    return (b < 0x20 && b != '\n') || b == 0x7f;
  });
}

TEST(CliOutputTest, TablesEscapeControlCharacters) {
  std::string show = VmDetailTable(HostileVm());
  EXPECT_FALSE(HasControlBytes(show)) << show;
  EXPECT_NE(show.find("web\\x1b[2J"), std::string::npos) << show;
  EXPECT_NE(show.find("console: \\x1b]0;owned\\x07\\x1b[31mpanic\\u009b\\r"), std::string::npos)
      << show;
  std::string list = VmListTable({{"vms", {HostileVm()}}});
  EXPECT_FALSE(HasControlBytes(list)) << list;
  EXPECT_NE(list.find("web\\x1b[2J"), std::string::npos) << list;
  json events = {{"events",
                  {{{"time", "2026-12-01T00:00:00Z"},
                    {"type", "exited"},
                    {"message", "console: \x1b[2J\x1b[H"}}}}};
  std::string table = EventsTable(events);
  EXPECT_FALSE(HasControlBytes(table)) << table;
  EXPECT_NE(table.find("console: \\x1b[2J\\x1b[H"), std::string::npos) << table;
  // The columns still line up: widths are those of the escaped text.
  EXPECT_EQ(FormatTable({{"a\x1b", "b"}, {"ccccc", "d"}}), "a\\x1b  b\nccccc  d\n");
}

TEST(CliOutputTest, YamlAndJsonCarryControlCharactersOnlyEscaped) {
  for (Format format : {Format::kYaml, Format::kJson}) {
    std::string out = Render(HostileVm(), format, nullptr);
    EXPECT_FALSE(HasControlBytes(out)) << out;
    auto back = YamlToJson(out);  // JSON is YAML too
    ASSERT_TRUE(back) << out;
    EXPECT_EQ((*back)["state_reason"], HostileVm()["state_reason"]) << "scripts get the exact text";
  }
}

// -o wide shows what the narrow table leaves out, labels included.
TEST(CliOutputTest, WideListShowsIdImageWakeBackendPidAndLabels) {
  json vm = {{"name", "web"},         {"id", "vm-0123456789abcdef"},
             {"state", "running"},    {"vcpus", 2},
             {"memory_mib", 512},     {"image", "default"},
             {"ip", "172.30.0.2"},    {"publish", json::array()},
             {"wake", "on-packet"},   {"timers", json::object()},
             {"next_timer", nullptr}, {"backend", "qemu-tcg"},
             {"pid", 4242},           {"labels", {{"env", "prod"}, {"team", "a"}}},
             {"version", 7}};
  std::string wide = VmWideTable({{"vms", {vm}}});
  for (const char* want : {"ID", "WAKE", "BACKEND", "PID", "LABELS", "vm-0123456789abcdef",
                           "default", "on-packet", "qemu-tcg", "4242", "env=prod,team=a"}) {
    EXPECT_NE(wide.find(want), std::string::npos) << want << "\n" << wide;
  }
  std::string narrow = VmListTable({{"vms", {vm}}});
  EXPECT_EQ(narrow.find("vm-0123456789abcdef"), std::string::npos) << narrow;
  EXPECT_NE(VmDetailTable(vm).find("env=prod,team=a"), std::string::npos);
  EXPECT_EQ(*ParseFormat("wide"), Format::kWide);
}

TEST(CliOutputTest, LabelFlagsSetAndRemove) {
  auto labels = ParseLabelFlags({"env=prod", "team-", "empty="});
  ASSERT_TRUE(labels) << labels.error().message;
  EXPECT_EQ(*labels, json({{"env", "prod"}, {"team", nullptr}, {"empty", ""}}));
  for (const char* bad : {"env", "=prod", "-"}) {
    auto r = ParseLabelFlags({bad});
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().message.find(fmt::format("--label: '{}' is neither KEY=VALUE", bad)),
              std::string::npos)
        << r.error().message;
  }
}

// On a terminal, `vm events` shows local times; the API's (and a pipe's) stay UTC.
TEST(CliOutputTest, EventTimesInTheLocalZone) {
  const char* old = std::getenv("TZ");
  std::string saved = old ? old : "";
  setenv("TZ", "UTC-2", 1);  // POSIX: two hours east of UTC
  tzset();
  Timestamp t = *ParseTime("2026-11-26T07:40:28.250Z");
  std::string local = FormatLocalTime(t);
  json events = {
      {"events", {{{"time", "2026-11-26T07:40:28Z"}, {"type", "created"}, {"message", "m"}}}}};
  std::string local_table = LocalEventsTable(events), utc_table = EventsTable(events);
  if (old) {
    setenv("TZ", saved.c_str(), 1);
  } else {
    unsetenv("TZ");
  }
  tzset();
  EXPECT_EQ(local, "2026-11-26T09:40:28.250+02:00");
  EXPECT_NE(local_table.find("2026-11-26T09:40:28+02:00"), std::string::npos) << local_table;
  EXPECT_NE(utc_table.find("2026-11-26T07:40:28Z"), std::string::npos) << utc_table;
}

}  // namespace
}  // namespace hearth::cli

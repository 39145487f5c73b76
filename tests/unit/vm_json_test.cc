#include "model/vm_json.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace hearth {
namespace {

using nlohmann::json;

Error CreateError(const std::string& text) {
  auto body = ParseJsonObject(text);
  if (!body) return body.error();
  auto req = ParseCreateRequest(*body);
  EXPECT_FALSE(req) << text;
  return req ? Error{} : req.error();
}

TEST(VmJsonTest, ParsesAFullCreateRequest) {
  auto body = ParseJsonObject(R"({
    "name": "web", "vcpus": 2, "memory_mib": 512, "kernel": "/k/vmlinux",
    "initrd": "/k/initrd", "rootfs": null, "cmdline": "quiet",
    "publish": [{"host_port": 8080, "guest_port": 80}, "5353:53/udp"],
    "timers": {"idle_timeout": "30s", "stop_after": "2h", "stop_at": "2026-12-01T18:00:00Z",
               "on_timer": "stop"},
    "wake_ports": ["tcp:80", "udp:53"], "restart": "always"})");
  ASSERT_TRUE(body);
  auto req = ParseCreateRequest(*body);
  ASSERT_TRUE(req) << req.error().message;
  EXPECT_EQ(req->name, "web");
  const VmSpec& s = req->spec;
  EXPECT_EQ(s.vcpus, 2);
  EXPECT_EQ(s.memory, MiB{512});
  EXPECT_EQ(s.initrd, "/k/initrd");
  EXPECT_EQ(s.rootfs, "");
  ASSERT_EQ(s.publish.size(), 2u);
  EXPECT_EQ(s.publish[1], (PortMapping{5353, 53, Protocol::kUdp}));
  EXPECT_EQ(s.timers.idle_timeout, Duration{30000});
  EXPECT_EQ(s.timers.on_timer, TimerAction::kStop);
  EXPECT_EQ(s.effective_wake(), WakeMode::kOnPacket);  // idle timeout set, wake unset
  EXPECT_EQ(s.restart, RestartPolicy::kAlways);
}

TEST(VmJsonTest, RefusesUnknownFieldsEverywhere) {
  EXPECT_EQ(CreateError(R"({"name":"a","kernal":"/k"})").field, "kernal");
  EXPECT_EQ(CreateError(R"({"name":"a","timers":{"idle":"3s"}})").field, "timers.idle");
  EXPECT_EQ(CreateError(R"({"name":"a","publish":[{"host_port":1,"guest_port":2,"x":1}]})").field,
            "publish[0].x");
  auto edit = ParseEditRequest(json::parse(R"({"vcpu": 2})"));
  ASSERT_FALSE(edit);
  EXPECT_EQ(edit.error().field, "vcpu");
  EXPECT_NE(edit.error().message.find("unknown field"), std::string::npos);
}

TEST(VmJsonTest, RefusesWrongTypesNamingFieldAndValue) {
  Error e = CreateError(R"({"name":"a","vcpus":"two"})");
  EXPECT_EQ(e.field, "vcpus");
  EXPECT_NE(e.message.find("expected an integer, got string \"two\""), std::string::npos)
      << e.message;
  EXPECT_EQ(CreateError(R"({"name":"a","vcpus":1.5})").field, "vcpus");
  EXPECT_EQ(CreateError(R"({"name":"a","memory_mib":1e30})").field, "memory_mib");
  EXPECT_EQ(CreateError(R"({"name":"a","memory_mib":18446744073709551615})").field, "memory_mib");
  EXPECT_EQ(CreateError(R"({"name":"a","vcpus":4294967297})").field, "vcpus");
  EXPECT_EQ(CreateError(R"({"name":5})").field, "name");
  EXPECT_EQ(CreateError(R"({"vcpus":1})").field, "name");
  EXPECT_EQ(CreateError(R"({"name":"a","kernel":["x"]})").field, "kernel");
  EXPECT_EQ(CreateError(R"({"name":"a","rootfs_readonly":"yes"})").field, "rootfs_readonly");
  EXPECT_EQ(CreateError(R"({"name":"a","publish":"8080:80"})").field, "publish");
  EXPECT_EQ(CreateError(R"({"name":"a","publish":["80"]})").field, "publish[0]");
  EXPECT_EQ(CreateError(R"({"name":"a","publish":[{"host_port":8080}]})").field,
            "publish[0].guest_port");
  EXPECT_EQ(
      CreateError(R"({"name":"a","publish":[{"host_port":1,"guest_port":2,"protocol":"sctp"}]})")
          .field,
      "publish[0].protocol");
  EXPECT_EQ(CreateError(R"({"name":"a","timers":{"idle_timeout":30}})").field,
            "timers.idle_timeout");
  EXPECT_EQ(CreateError(R"({"name":"a","timers":{"stop_at":"tomorrow"}})").field, "timers.stop_at");
  EXPECT_EQ(CreateError(R"({"name":"a","timers":{"on_timer":"explode"}})").field,
            "timers.on_timer");
  EXPECT_EQ(CreateError(R"({"name":"a","wake":"sometimes"})").field, "wake");
  EXPECT_EQ(CreateError(R"({"name":"a","wake_ports":["http"]})").field, "wake_ports[0]");
  EXPECT_EQ(CreateError(R"({"name":"a","restart":"maybe"})").field, "restart");
}

TEST(VmJsonTest, RefusesMalformedBodies) {
  for (const char* text : {"", "{", "[]", "42", "\"x\"", "{\"name\":}", "null"}) {
    SCOPED_TRACE(text);
    auto body = ParseJsonObject(text);
    ASSERT_FALSE(body);
    EXPECT_EQ(body.error().code, Code::kInvalidArgument);
  }
}

TEST(VmJsonTest, RefusesDeepNestingBeforeParsing) {
  std::string deep =
      R"({"name":"x","vcpus":)" + std::string(100000, '[') + std::string(100000, ']') + "}";
  auto body = ParseJsonObject(deep);
  ASSERT_FALSE(body);
  EXPECT_NE(body.error().message.find("nested deeper than 32"), std::string::npos);
  EXPECT_TRUE(ParseJsonObject(R"({"a":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["})"))
      << "brackets inside strings do not count";
}

TEST(VmJsonTest, RefusesDuplicateKeysNamingThem) {
  struct Case {
    const char* text;
    const char* field;
  } cases[] = {
      {R"({"name":"a","kernel":"/k/vmlinux","kernel":"/etc/shadow"})", "kernel"},
      {R"({"name":"a","timers":{"stop_after":"1h","stop_after":"2h"}})", "timers.stop_after"},
      {R"({"name":"a","publish":[{"host_port":1,"guest_port":2},)"
       R"({"host_port":3,"guest_port":4,"host_port":5}]})",
       "publish[1].host_port"},
      {R"({"name":"a","name":"b"})", "name"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    auto body = ParseJsonObject(c.text);
    ASSERT_FALSE(body);
    EXPECT_EQ(body.error().code, Code::kInvalidArgument);
    EXPECT_EQ(body.error().field, c.field);
    EXPECT_EQ(body.error().message, std::string(c.field) +
                                        ": the key is given twice; give each "
                                        "key once");
  }
  // The same key in different objects is no duplicate.
  EXPECT_TRUE(ParseJsonObject(
      R"({"name":"a","publish":[{"host_port":1,"guest_port":2},{"host_port":3,"guest_port":4}],)"
      R"("timers":{"name":"x"}})"));
}

TEST(VmJsonTest, StopAtMustReadBack) {
  EXPECT_EQ(CreateError(R"({"name":"a","timers":{"stop_at":"9999-12-31T23:59:59-01:00"}})").field,
            "timers.stop_at");
}

TEST(VmJsonTest, EditRequestCarriesGenerationAndRefusesRename) {
  auto edit = ParseEditRequest(json::parse(R"({"memory_mib": 512, "generation": 3})"));
  ASSERT_TRUE(edit);
  EXPECT_EQ(edit->generation, 3);
  EXPECT_EQ(edit->fields, json::parse(R"({"memory_mib": 512})"));
  auto rename = ParseEditRequest(json::parse(R"({"name": "b"})"));
  ASSERT_FALSE(rename);
  EXPECT_EQ(rename.error().field, "name");
}

TEST(VmJsonTest, StorageFormRoundTrips) {
  VmSpec spec;
  spec.kernel = "/k";
  spec.publish = {{8080, 80, Protocol::kTcp}};
  spec.timers.stop_at = *ParseTime("2026-12-01T18:00:00.5Z");
  spec.timers.idle_timeout = Duration{1500};
  spec.wake_ports = {{Protocol::kUdp, 53}};
  VmSpec back;
  ASSERT_TRUE(ApplySpecJson(SpecToJson(spec, false), back));
  EXPECT_EQ(back, spec);
  EXPECT_FALSE(back.wake.has_value());  // "unset" survives storage
  spec.wake = WakeMode::kNever;
  VmSpec back2;
  ASSERT_TRUE(ApplySpecJson(SpecToJson(spec, false), back2));
  EXPECT_EQ(back2, spec);
}

}  // namespace
}  // namespace hearth

// VM files: what `vm show -o yaml` prints can be fed back; the flags' units are accepted; fields
// about the record are ignored; identity fields are kept for the caller to check.
#include <gtest/gtest.h>

#include "cli/spec_file.h"

namespace hearth::cli {
namespace {

using nlohmann::json;

// As `hearth vm show web -o yaml` prints a running VM.
constexpr const char* kShown = R"(backend: qemu
cmdline: ""
created_at: 2026-12-03T10:00:00.000Z
generation: 3
id: 0123456789abcdef
image: default
initrd: null
ip: 172.30.0.2
kernel: null
memory_mib: 256
name: web
next_timer: null
pid: 4242
publish:
  - 8080:80/tcp
restart: on-failure
rootfs: null
rootfs_readonly: false
running_since: 2026-12-03T10:00:01.000Z
snapshot: null
state: running
state_reason: null
timers:
  idle_timeout: null
  on_timer: suspend
  stop_after: null
  stop_at: null
updated_at: 2026-12-03T10:00:01.000Z
vcpus: 1
version: 17
wake: on-packet
wake_ports: []
)";

TEST(SpecFileTest, ShowOutputBecomesTheSpecAndItsIdentity) {
  auto vms = ParseVmFile(kShown);
  ASSERT_TRUE(vms) << vms.error().message;
  ASSERT_EQ(vms->size(), 1u);
  const DeclaredVm& vm = vms->front();
  EXPECT_EQ(vm.name, "web");
  EXPECT_EQ(vm.id, "0123456789abcdef");
  EXPECT_EQ(vm.generation, 3);
  for (const char* status :
       {"backend", "ip", "pid", "state", "state_reason", "version", "created_at", "updated_at",
        "running_since", "next_timer", "snapshot", "name", "id", "generation"}) {
    EXPECT_FALSE(vm.spec.contains(status)) << status << " is not a spec field";
  }
  EXPECT_EQ(vm.spec["memory_mib"], 256);
  EXPECT_EQ(vm.spec["publish"], json::array({"8080:80/tcp"}));
  EXPECT_EQ(vm.spec["timers"]["on_timer"], "suspend");
  EXPECT_EQ(vm.spec["wake"], "on-packet");
}

TEST(SpecFileTest, TheFlagsUnitsAndTopLevelTimersAreAccepted) {
  auto vms = ParseVmFile("name: web\nmemory: 1G\nidle_timeout: 30s\non_timer: stop\n");
  ASSERT_TRUE(vms) << vms.error().message;
  const json& spec = vms->front().spec;
  EXPECT_EQ(spec["memory_mib"], 1024);
  EXPECT_FALSE(spec.contains("memory"));
  EXPECT_EQ(spec["timers"], (json{{"idle_timeout", "30s"}, {"on_timer", "stop"}}));
  EXPECT_FALSE(spec.contains("idle_timeout"));
  // The same value both ways is fine; two different ones are refused, naming the field.
  EXPECT_TRUE(ParseVmFile("memory: 256M\nmemory_mib: 256\n"));
  auto memory = ParseVmFile("memory: 512M\nmemory_mib: 256\n");
  ASSERT_FALSE(memory);
  EXPECT_EQ(memory.error().field, "memory");
  EXPECT_NE(memory.error().message.find("disagrees with memory_mib 256"), std::string::npos);
  auto timer = ParseVmFile("idle_timeout: 30s\ntimers:\n  idle_timeout: 1m\n");
  ASSERT_FALSE(timer);
  EXPECT_EQ(timer.error().field, "idle_timeout");
  auto bad = ParseVmFile("memory: lots\n");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message, "memory: 'lots' is not a size like 512, 256M or 2G");
}

TEST(SpecFileTest, SeveralVmsByDocumentsOrSequence) {
  auto docs = ParseVmFile("name: a\nvcpus: 1\n---\nname: b\nvcpus: 2\n---\n");
  ASSERT_TRUE(docs) << docs.error().message;
  ASSERT_EQ(docs->size(), 2u);
  EXPECT_EQ((*docs)[1].name, "b");
  EXPECT_EQ((*docs)[1].spec["vcpus"], 2);
  auto list = ParseVmFile("- name: a\n- name: b\n  memory: 128M\n");
  ASSERT_TRUE(list) << list.error().message;
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[1].spec["memory_mib"], 128);
  // An error in one of several names which one.
  auto bad = ParseVmFile("name: a\n---\nname: b\nmemory: x\n");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message.rfind("vm 2 of 2: memory:", 0), 0u) << bad.error().message;
}

TEST(SpecFileTest, WhatIsNotAVmIsRefused) {
  auto empty = ParseVmFile("");
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.error().message.find("no VM in the file"), std::string::npos);
  auto scalar = ParseVmFile("just text\n");
  ASSERT_FALSE(scalar);
  EXPECT_NE(scalar.error().message.find("expected a mapping of VM fields"), std::string::npos);
  auto name = ParseVmFile("name: [a]\n");
  ASSERT_FALSE(name);
  EXPECT_EQ(name.error().field, "name");
  auto generation = ParseVmFile("generation: three\n");
  ASSERT_FALSE(generation);
  EXPECT_EQ(generation.error().field, "generation");
  auto yaml = ParseVmFile("a: [\n");
  ASSERT_FALSE(yaml);
  EXPECT_NE(yaml.error().message.find("not valid YAML"), std::string::npos);
}

}  // namespace
}  // namespace hearth::cli

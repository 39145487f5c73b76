// Every configuration rule, table-driven: each case breaks one rule and must be refused with
// invalid_argument naming the field and the bad value.
#include "model/validator.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <optional>
#include <set>

#include "fakes/fakes.h"

namespace hearth {
namespace {

using testing::FakeClock;
using testing::FakeFileProbe;

class ValidatorTest : public ::testing::Test {
 protected:
  ValidatorTest() : paths_("/var/lib/hearth") {
    files_.AddKernel("/k/vmlinux");
    files_.AddBzImage("/k/bzImage");
    files_.AddFile("/k/notakernel", "#!/bin/sh\n");
    files_.AddFile("/k/initrd.img");
    files_.AddFile("/k/secret", "x", /*readable=*/false);
    files_.AddFile("/d/root.img");
    files_.AddFile("/d/other.img");
    files_.AddLink("/d/root-link.img", "/d/root.img");
    files_.AddBlockDevice("/dev/vdb");
    files_.AddDirectory("/d");
    files_.AddDirectory("/var/lib/hearth/images/default");
    files_.AddFile("/var/lib/hearth/state.db");
    files_.AddFile("/var/lib/hearth/admin.token");
    files_.AddFile("/var/lib/hearth/images/../admin.token");
    files_.AddSymlink("/d/token-link", "/var/lib/hearth/admin.token");
    files_.AddFile("/var/lib/hearth/vms/vm-1/memory");
    files_.AddKernel("/var/lib/hearth/images/i/vmlinux");
    files_.AddKernel("/proc/self/exe");
    files_.AddKernel("/sys/firmware/k");
    files_.AddSymlink("/k/sys-link", "/sys/firmware/k");
    files_.AddFile("/etc/shadow");
    files_.AddSymlink("/k/shadow-link", "/etc/shadow");
    other_.name = "other";
    other_.spec.kernel = "/k/vmlinux";
    other_.spec.rootfs = "/d/root.img";
    other_.spec.publish = {{8080, 80, Protocol::kTcp}};
  }

  ValidationContext Context() {
    ValidationContext ctx;
    ctx.host = testing::TestHost();
    ctx.files = &files_;
    ctx.paths = &paths_;
    ctx.now = clock_.Now();
    ctx.others = {&other_};
    return ctx;
  }

  static VmSpec Good() {
    VmSpec s;
    s.kernel = "/k/vmlinux";
    s.memory = MiB{256};
    return s;
  }

  FakeFileProbe files_;
  FakeClock clock_;
  Paths paths_;
  VmRecord other_;
};

struct Case {
  const char* title;
  std::function<void(VmSpec&, Timestamp now)> mutate;
  const char* field;  // nullptr: the spec must be accepted
  const char* says;   // a substring of the message (the bad value or the rule)
};

const Case kCases[] = {
    {"defaults are fine", [](VmSpec&, Timestamp) {}, nullptr, ""},
    {"vcpus zero", [](VmSpec& s, Timestamp) { s.vcpus = 0; }, "vcpus", "0 is out of range"},
    {"vcpus negative", [](VmSpec& s, Timestamp) { s.vcpus = -3; }, "vcpus", "-3"},
    {"vcpus above host CPUs", [](VmSpec& s, Timestamp) { s.vcpus = 9; }, "vcpus", "allowed 1-8"},
    {"vcpus equal to host CPUs", [](VmSpec& s, Timestamp) { s.vcpus = 8; }, nullptr, ""},
    {"memory below minimum", [](VmSpec& s, Timestamp) { s.memory = MiB{63}; }, "memory_mib",
     "63 is below the minimum of 64"},
    {"memory minimum", [](VmSpec& s, Timestamp) { s.memory = MiB{64}; }, nullptr, ""},
    {"memory odd", [](VmSpec& s, Timestamp) { s.memory = MiB{257}; }, "memory_mib",
     "not a multiple of 2"},
    {"memory above host RAM", [](VmSpec& s, Timestamp) { s.memory = MiB{16386}; }, "memory_mib",
     "16386 is more than"},
    {"memory equal to host RAM", [](VmSpec& s, Timestamp) { s.memory = MiB{16384}; }, nullptr, ""},
    {"kernel missing", [](VmSpec& s, Timestamp) { s.kernel = "/k/nope"; }, "kernel",
     "'/k/nope' does not exist"},
    {"kernel relative", [](VmSpec& s, Timestamp) { s.kernel = "vmlinux"; }, "kernel",
     "not an absolute path"},
    {"kernel is a directory", [](VmSpec& s, Timestamp) { s.kernel = "/d"; }, "kernel",
     "is a directory"},
    {"kernel unreadable", [](VmSpec& s, Timestamp) { s.kernel = "/k/secret"; }, "kernel",
     "not readable"},
    {"kernel not ELF or bzImage", [](VmSpec& s, Timestamp) { s.kernel = "/k/notakernel"; },
     "kernel", "neither an ELF vmlinux nor a bzImage"},
    {"kernel bzImage", [](VmSpec& s, Timestamp) { s.kernel = "/k/bzImage"; }, nullptr, ""},
    {"no kernel and no image", [](VmSpec& s, Timestamp) { s.kernel.clear(); }, "kernel",
     "required"},
    {"image instead of kernel",
     [](VmSpec& s, Timestamp) {
       s.kernel.clear();
       s.image = "default";
     },
     nullptr, ""},
    {"image unknown", [](VmSpec& s, Timestamp) { s.image = "fedora"; }, "image",
     "no image named 'fedora'"},
    {"image bad name", [](VmSpec& s, Timestamp) { s.image = "../etc"; }, "image",
     "not a valid image name"},
    {"initrd missing", [](VmSpec& s, Timestamp) { s.initrd = "/k/initrd.gone"; }, "initrd",
     "does not exist"},
    {"initrd is a directory", [](VmSpec& s, Timestamp) { s.initrd = "/d"; }, "initrd",
     "is a directory"},
    {"initrd fine", [](VmSpec& s, Timestamp) { s.initrd = "/k/initrd.img"; }, nullptr, ""},
    {"rootfs missing", [](VmSpec& s, Timestamp) { s.rootfs = "/d/none.img"; }, "rootfs",
     "does not exist"},
    {"rootfs is a directory", [](VmSpec& s, Timestamp) { s.rootfs = "/d"; }, "rootfs",
     "expected a regular file or a block device"},
    {"rootfs block device", [](VmSpec& s, Timestamp) { s.rootfs = "/dev/vdb"; }, nullptr, ""},
    {"rootfs own file", [](VmSpec& s, Timestamp) { s.rootfs = "/d/other.img"; }, nullptr, ""},
    {"rootfs used read-write by another VM", [](VmSpec& s, Timestamp) { s.rootfs = "/d/root.img"; },
     "rootfs", "already used by vm 'other'"},
    {"rootfs same file through a link", [](VmSpec& s, Timestamp) { s.rootfs = "/d/root-link.img"; },
     "rootfs", "already used by vm 'other'"},
    {"rootfs read-only here but read-write there",
     [](VmSpec& s, Timestamp) {
       s.rootfs = "/d/root.img";
       s.rootfs_readonly = true;
     },
     "rootfs", "read-write"},
    {"cmdline too long", [](VmSpec& s, Timestamp) { s.cmdline = std::string(2049, 'a'); },
     "cmdline", "at most 2048"},
    {"cmdline newline", [](VmSpec& s, Timestamp) { s.cmdline = "a\nb"; }, "cmdline", "newline"},
    {"publish host port 0",
     [](VmSpec& s, Timestamp) {
       s.publish = {{0, 80, Protocol::kTcp}};
     },
     "publish[0].host_port", "port 0 is out of range"},
    {"publish host port 65536",
     [](VmSpec& s, Timestamp) {
       s.publish = {{65536, 80, Protocol::kTcp}};
     },
     "publish[0].host_port", "65536"},
    {"publish guest port 0",
     [](VmSpec& s, Timestamp) {
       s.publish = {{8081, 0, Protocol::kTcp}};
     },
     "publish[0].guest_port", "out of range"},
    {"publish twice",
     [](VmSpec& s, Timestamp) {
       s.publish = {{8081, 80, Protocol::kTcp}, {8081, 81, Protocol::kTcp}};
     },
     "publish[1].host_port", "published twice"},
    {"publish port of another VM",
     [](VmSpec& s, Timestamp) {
       s.publish = {{8080, 80, Protocol::kTcp}};
     },
     "publish[0].host_port", "already published by vm 'other'"},
    {"publish same port other protocol",
     [](VmSpec& s, Timestamp) {
       s.publish = {{8080, 80, Protocol::kUdp}};
     },
     nullptr, ""},
    {"wake port 0",
     [](VmSpec& s, Timestamp) {
       s.wake_ports = {{Protocol::kTcp, 0}};
     },
     "wake_ports[0]", "out of range"},
    {"wake port twice",
     [](VmSpec& s, Timestamp) {
       s.wake_ports = {{Protocol::kTcp, 80}, {Protocol::kTcp, 80}};
     },
     "wake_ports[1]", "listed twice"},
    {"stop_at in the past",
     [](VmSpec& s, Timestamp now) { s.timers.stop_at = now - std::chrono::seconds(1); },
     "timers.stop_at", "in the past"},
    {"stop_at now", [](VmSpec& s, Timestamp now) { s.timers.stop_at = now; }, "timers.stop_at",
     "in the past"},
    {"stop_at future",
     [](VmSpec& s, Timestamp now) { s.timers.stop_at = now + std::chrono::hours(1); }, nullptr, ""},
    {"stop_after zero", [](VmSpec& s, Timestamp) { s.timers.stop_after = Duration{0}; },
     "timers.stop_after", "minimum is 1s"},
    {"idle_timeout below 1s", [](VmSpec& s, Timestamp) { s.timers.idle_timeout = Duration{999}; },
     "timers.idle_timeout", "999ms is too short"},
    {"idle_timeout 1s", [](VmSpec& s, Timestamp) { s.timers.idle_timeout = Duration{1000}; },
     nullptr, ""},
    // Input that is cut or overflows.
    {"NUL in a kernel path cuts QEMU's argv",
     [](VmSpec& s, Timestamp) { s.kernel = std::string("/k/vmlinux\0,format=qcow2", 25); },
     "kernel", "NUL byte (byte 0x00 at offset 10)"},
    {"escape in an initrd path", [](VmSpec& s, Timestamp) { s.initrd = "/k/initrd.img\x1b[2J"; },
     "initrd", "\\x1b[2J"},
    {"newline in a rootfs path", [](VmSpec& s, Timestamp) { s.rootfs = "/d/other.img\n"; },
     "rootfs", "newline"},
    {"tab in the cmdline", [](VmSpec& s, Timestamp) { s.cmdline = "a\tb"; }, "cmdline", "tab"},
    {"DEL in the cmdline", [](VmSpec& s, Timestamp) { s.cmdline = "a\x7f"; }, "cmdline", "0x7f"},
    {"stop_after past 64-bit milliseconds' reach",
     [](VmSpec& s, Timestamp) { s.timers.stop_after = std::chrono::hours(24) * 106751991167LL; },
     "timers.stop_after", "the maximum is 36500d"},
    {"idle_timeout one day over 100 years",
     [](VmSpec& s, Timestamp) { s.timers.idle_timeout = std::chrono::hours(24 * 36501); },
     "timers.idle_timeout", "36501d is too long"},
    {"stop_after 100 years", [](VmSpec& s, Timestamp) { s.timers.stop_after = kMaxTimerDuration; },
     nullptr, ""},
    // Paths an API caller may name: never hearth's own files or kernel interfaces.
    {"rootfs is hearth's store",
     [](VmSpec& s, Timestamp) { s.rootfs = "/var/lib/hearth/state.db"; }, "rootfs",
     "one of hearth's own files"},
    {"initrd is the admin token",
     [](VmSpec& s, Timestamp) { s.initrd = "/var/lib/hearth/admin.token"; }, "initrd",
     "one of hearth's own files"},
    {"initrd is the admin token by way of images/..",
     [](VmSpec& s, Timestamp) { s.initrd = "/var/lib/hearth/images/../admin.token"; }, "initrd",
     "one of hearth's own files"},
    {"initrd is a symlink to the admin token",
     [](VmSpec& s, Timestamp) { s.initrd = "/d/token-link"; }, "initrd",
     "resolves to '/var/lib/hearth/admin.token'"},
    {"rootfs is another VM's memory",
     [](VmSpec& s, Timestamp) { s.rootfs = "/var/lib/hearth/vms/vm-1/memory"; }, "rootfs",
     "one of hearth's own files"},
    {"kernel in an image",
     [](VmSpec& s, Timestamp) { s.kernel = "/var/lib/hearth/images/i/vmlinux"; }, nullptr, ""},
    {"kernel is /proc/self/exe", [](VmSpec& s, Timestamp) { s.kernel = "/proc/self/exe"; },
     "kernel", "under /proc"},
    {"kernel through a symlink into /sys", [](VmSpec& s, Timestamp) { s.kernel = "/k/sys-link"; },
     "kernel", "under /sys"},
};

TEST_F(ValidatorTest, EveryRule) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.title);
    VmSpec spec = Good();
    c.mutate(spec, clock_.Now());
    Status s = ValidateSpec(spec, Context());
    if (c.field == nullptr) {
      EXPECT_TRUE(s) << s.error().message;
      continue;
    }
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, Code::kInvalidArgument);
    EXPECT_EQ(s.error().field, c.field);
    EXPECT_NE(s.error().message.find(c.says), std::string::npos) << s.error().message;
    EXPECT_EQ(s.error().message.rfind(c.field, 0), 0u)
        << "message names the field first: " << s.error().message;
  }
}

TEST_F(ValidatorTest, BothReadOnlyMayShareARootfs) {
  other_.spec.rootfs_readonly = true;
  VmSpec spec = Good();
  spec.rootfs = "/d/root.img";
  spec.rootfs_readonly = true;
  EXPECT_TRUE(ValidateSpec(spec, Context()));
}

TEST_F(ValidatorTest, UnchangedPastStopAtDoesNotBlockAnEdit) {
  VmSpec before = Good();
  before.timers.stop_at = clock_.Now() - std::chrono::hours(1);
  VmSpec after = before;
  after.vcpus = 2;
  EXPECT_TRUE(ValidateSpec(after, Context(), &before));
  EXPECT_FALSE(ValidateSpec(after, Context(), nullptr));
}

class FakePortHolders final : public PortHolders {
 public:
  struct Socket {
    std::string address;  // "0.0.0.0" for all
    std::string holder;
  };
  std::map<std::pair<int, Protocol>, Socket> held;
  std::set<std::string> addresses = {"127.0.0.1", "192.168.1.10"};
  std::optional<std::string> Holder(const std::string& host_ip, int port,
                                    Protocol protocol) const override {
    auto it = held.find({port, protocol});
    if (it == held.end()) return std::nullopt;
    const Socket& s = it->second;
    if (!host_ip.empty() && s.address != "0.0.0.0" && s.address != host_ip) return std::nullopt;
    return s.holder;
  }
  bool IsHostAddress(const std::string& ip) const override { return addresses.count(ip) > 0; }
};

TEST_F(ValidatorTest, AllowedPathsBoundWhereGuestFilesMayBe) {
  ValidationContext ctx = Context();
  ctx.allowed_paths = std::vector<std::filesystem::path>{"/k", "/d/", "/var/lib/hearth/images"};
  auto refused = [&](const VmSpec& spec, std::string_view field, std::string_view says) {
    Status s = ValidateSpec(spec, ctx);
    ASSERT_FALSE(s) << field;
    EXPECT_EQ(s.error().field, field);
    EXPECT_THAT(s.error().message, ::testing::HasSubstr(says));
  };
  VmSpec spec = Good();
  spec.initrd = "/k/initrd.img";
  spec.rootfs = "/d/other.img";
  EXPECT_TRUE(ValidateSpec(spec, ctx));
  spec.kernel = "/var/lib/hearth/images/i/vmlinux";
  EXPECT_TRUE(ValidateSpec(spec, ctx)) << "the data dir's images are guest files";

  VmSpec shadow = Good();
  shadow.initrd = "/etc/shadow";
  refused(shadow, "initrd",
          "'/etc/shadow' is outside the paths hearthd allows for guest files "
          "(/k, /d/, /var/lib/hearth/images)");
  shadow.initrd = "/k/shadow-link";
  refused(shadow, "initrd", "resolves to '/etc/shadow'");
  shadow.initrd = "/k/../etc/shadow";
  files_.AddLink("/k/../etc/shadow", "/etc/shadow");
  refused(shadow, "initrd", "outside");

  VmSpec block = Good();
  block.rootfs = "/dev/vdb";
  refused(block, "rootfs", "a block device that hearthd's --allowed-paths");
  ctx.allowed_paths->push_back("/dev");
  refused(block, "rootfs", "block devices are used only when listed themselves");
  ctx.allowed_paths->push_back("/dev/vdb");
  EXPECT_TRUE(ValidateSpec(block, ctx));

  // An allowed directory that holds the data dir does not open hearth's own files.
  ctx.allowed_paths->push_back("/var/lib");
  VmSpec own = Good();
  own.rootfs = "/var/lib/hearth/state.db";
  refused(own, "rootfs", "one of hearth's own files");
}

TEST_F(ValidatorTest, APublishedPortMustNotBeHeldOnTheHost) {
  FakePortHolders ports;
  ports.held[{22, Protocol::kTcp}] = {"0.0.0.0", "sshd (pid 412)"};
  ports.held[{53, Protocol::kUdp}] = {"0.0.0.0", "dnsmasq (pid 77)"};
  ValidationContext ctx = Context();
  ctx.ports = &ports;
  VmSpec spec = Good();
  spec.publish = {{2222, 22, Protocol::kTcp}, {22, 22, Protocol::kTcp}};
  Status s = ValidateSpec(spec, ctx);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().field, "publish[1].host_port");
  EXPECT_THAT(s.error().message, ::testing::HasSubstr("host port 22/tcp is held on this host by "
                                                      "sshd (pid 412)"));
  spec.publish = {{53, 53, Protocol::kUdp}};
  EXPECT_FALSE(ValidateSpec(spec, ctx));
  spec.publish = {{53, 53, Protocol::kTcp}, {22, 22, Protocol::kUdp}};
  EXPECT_TRUE(ValidateSpec(spec, ctx)) << "the same port of the other protocol is free";
  // A port the VM already published is its own (DNAT holds no socket; a holder came later).
  VmSpec before = Good();
  before.publish = {{22, 22, Protocol::kTcp}};
  VmSpec after = before;
  after.vcpus = 2;
  EXPECT_TRUE(ValidateSpec(after, ctx, &before));
  EXPECT_FALSE(ValidateSpec(after, ctx, nullptr));
}

TEST_F(ValidatorTest, APortPublishedOnOneAddressConflictsOnlyThere) {
  FakePortHolders ports;
  ports.held[{5432, Protocol::kTcp}] = {"127.0.0.1", "postgres (pid 90)"};
  ports.held[{22, Protocol::kTcp}] = {"0.0.0.0", "sshd (pid 412)"};
  ValidationContext ctx = Context();
  ctx.ports = &ports;
  auto refused = [&](std::vector<PortMapping> publish, std::string_view field,
                     std::string_view says) {
    VmSpec spec = Good();
    spec.publish = std::move(publish);
    Status s = ValidateSpec(spec, ctx);
    ASSERT_FALSE(s) << says;
    EXPECT_EQ(s.error().field, field);
    EXPECT_THAT(s.error().message, ::testing::HasSubstr(says));
  };
  auto accepted = [&](std::vector<PortMapping> publish) {
    VmSpec spec = Good();
    spec.publish = std::move(publish);
    Status s = ValidateSpec(spec, ctx);
    EXPECT_TRUE(s) << s.error().message;
  };
  refused({{5432, 5432, Protocol::kTcp}}, "publish[0].host_port",
          "host port 5432/tcp is held on this host by postgres (pid 90); publishing it would take "
          "it on every host address: pick another host port, or publish it on one host address");
  refused({{5432, 5432, Protocol::kTcp, "127.0.0.1"}}, "publish[0].host_port",
          "host port 127.0.0.1:5432/tcp is held on this host by postgres (pid 90)");
  accepted({{5432, 5432, Protocol::kTcp, "192.168.1.10"}});
  refused({{22, 22, Protocol::kTcp, "192.168.1.10"}}, "publish[0].host_port",
          "192.168.1.10:22/tcp is held on this host by sshd (pid 412)");

  // Only the host's own addresses, and the error says which and what to do.
  refused({{8085, 80, Protocol::kTcp, "203.0.113.7"}}, "publish[0].host_ip",
          "publish[0].host_ip: 203.0.113.7 is not an address of this host; publish on one of its "
          "own addresses (see `ip -4 addr`), on 127.0.0.1, or on all of them");

  // Within one VM: one address and all addresses conflict, two addresses do not, nor tcp and udp.
  refused({{8085, 80, Protocol::kTcp, "127.0.0.1"}, {8085, 81, Protocol::kTcp}},
          "publish[1].host_port",
          "8085/tcp is published twice (also publish[0]: 127.0.0.1:8085:80/tcp)");
  refused({{8085, 80, Protocol::kTcp, "127.0.0.1"}, {8085, 81, Protocol::kTcp, "127.0.0.1"}},
          "publish[1].host_port", "127.0.0.1:8085/tcp is published twice");
  accepted({{8085, 80, Protocol::kTcp, "127.0.0.1"}, {8085, 81, Protocol::kTcp, "192.168.1.10"}});
  accepted({{8085, 80, Protocol::kTcp, "127.0.0.1"}, {8085, 80, Protocol::kUdp, "127.0.0.1"}});

  // Against another VM (Context()'s "other" publishes 8080/tcp on all addresses).
  refused({{8080, 80, Protocol::kTcp, "127.0.0.1"}}, "publish[0].host_port",
          "host port 127.0.0.1:8080/tcp is already published by vm 'other' (8080:80/tcp)");
  accepted({{8080, 80, Protocol::kUdp, "127.0.0.1"}});
}

TEST_F(ValidatorTest, AnEditNarrowingAPublishDoesNotRecheckItsHolders) {
  FakePortHolders ports;
  ports.held[{22, Protocol::kTcp}] = {"0.0.0.0", "sshd (pid 412)"};
  ValidationContext ctx = Context();
  ctx.ports = &ports;
  VmSpec all = Good(), local = Good();
  all.publish = {{22, 22, Protocol::kTcp}};
  local.publish = {{22, 22, Protocol::kTcp, "127.0.0.1"}};
  EXPECT_TRUE(ValidateSpec(local, ctx, &all)) << "all addresses covered 127.0.0.1 already";
  EXPECT_FALSE(ValidateSpec(all, ctx, &local)) << "widening takes the port on more addresses";

  // An address the host has lost since does not block an edit of something else.
  VmSpec gone = Good();
  gone.publish = {{8085, 80, Protocol::kTcp, "192.168.7.7"}};
  VmSpec edited = gone;
  edited.vcpus = 2;
  EXPECT_TRUE(ValidateSpec(edited, ctx, &gone));
  EXPECT_FALSE(ValidateSpec(edited, ctx, nullptr));
}

TEST(IsWithinTest, ComparesWholeComponents) {
  EXPECT_TRUE(IsWithin("/srv/hearth/k", "/srv/hearth"));
  EXPECT_TRUE(IsWithin("/srv/hearth", "/srv/hearth/"));
  EXPECT_TRUE(IsWithin("/srv/hearth/a/../k", "/srv/hearth"));
  EXPECT_FALSE(IsWithin("/srv/hearth-evil/k", "/srv/hearth"));
  EXPECT_FALSE(IsWithin("/srv/hearth/../etc/shadow", "/srv/hearth"));
  EXPECT_FALSE(IsWithin("/srv", "/srv/hearth"));
  EXPECT_TRUE(IsWithin("/etc/shadow", "/"));
}

struct NameCase {
  const char* name;
  bool ok;
};

TEST(ValidateNameTest, DnsLabelRules) {
  const NameCase cases[] = {
      {"web", true},    {"web-1", true},  {"a", true},     {"", false},
      {"Web", false},   {"1web", false},  {"-web", false}, {"web-", false},
      {"web_1", false}, {"web.1", false}, {"wéb", false},  {"web 1", false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Status s = ValidateName(c.name);
    EXPECT_EQ(static_cast<bool>(s), c.ok);
    if (!s) {
      EXPECT_EQ(s.error().field, "name");
      EXPECT_NE(s.error().message.find(fmt::format("'{}'", c.name)), std::string::npos);
    }
  }
  EXPECT_TRUE(ValidateName(std::string(63, 'a')));
  EXPECT_FALSE(ValidateName(std::string(64, 'a')));
}

struct EditCase {
  const char* title;
  VmState state;
  std::function<void(VmSpec&)> mutate;
  bool discard_state;
  const char* refused_field;  // nullptr: allowed
  const char* says;
};

TEST(CheckEditAllowedTest, StateRules) {
  const EditCase cases[] = {
      {"created: anything", VmState::kCreated, [](VmSpec& s) { s.vcpus = 4; }, false, nullptr, ""},
      {"stopped: memory", VmState::kStopped, [](VmSpec& s) { s.memory = MiB{512}; }, false, nullptr,
       ""},
      {"failed: kernel", VmState::kFailed, [](VmSpec& s) { s.kernel = "/k/other"; }, false, nullptr,
       ""},
      {"running: vcpus", VmState::kRunning, [](VmSpec& s) { s.vcpus = 4; }, false, "vcpus",
       "while vm 'web' is running"},
      {"running: memory", VmState::kRunning, [](VmSpec& s) { s.memory = MiB{512}; }, false,
       "memory_mib", "running"},
      {"running: publish", VmState::kRunning,
       [](VmSpec& s) {
         s.publish = {{9000, 80, Protocol::kTcp}};
       },
       false, "publish", "running"},
      {"running: timers", VmState::kRunning,
       [](VmSpec& s) { s.timers.idle_timeout = Duration{30000}; }, false, nullptr, ""},
      {"running: restart", VmState::kRunning, [](VmSpec& s) { s.restart = RestartPolicy::kAlways; },
       false, nullptr, ""},
      {"suspended: memory", VmState::kSuspended, [](VmSpec& s) { s.memory = MiB{512}; }, false,
       "memory_mib", "--discard-state"},
      {"suspended: memory, discarding state", VmState::kSuspended,
       [](VmSpec& s) { s.memory = MiB{512}; }, true, nullptr, ""},
      {"suspended: wake", VmState::kSuspended, [](VmSpec& s) { s.wake = WakeMode::kNever; }, false,
       nullptr, ""},
      {"starting: timers", VmState::kStarting,
       [](VmSpec& s) { s.timers.idle_timeout = Duration{30000}; }, false, "timers", "is starting"},
      {"deleting: restart", VmState::kDeleting,
       [](VmSpec& s) { s.restart = RestartPolicy::kNever; }, false, "restart", "is deleting"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.title);
    VmRecord vm;
    vm.name = "web";
    vm.state = c.state;
    vm.spec.kernel = "/k/vmlinux";
    VmSpec next = vm.spec;
    c.mutate(next);
    Status s = CheckEditAllowed(vm, next, c.discard_state);
    if (!c.refused_field) {
      EXPECT_TRUE(s) << s.error().message;
      continue;
    }
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, Code::kFailedPrecondition);
    EXPECT_EQ(s.error().field, c.refused_field);
    EXPECT_NE(s.error().message.find(c.says), std::string::npos) << s.error().message;
  }
}

}  // namespace
}  // namespace hearth

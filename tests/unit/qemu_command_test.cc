#include "hv/qemu/qemu_command.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace hearth::hv::qemu {
namespace {

QemuConfig Minimal() {
  QemuConfig c;
  c.memory = MiB{256};
  c.vcpus = 2;
  c.kernel = "/img/vmlinux";
  c.memory_file = "/vm/memory";
  c.qmp_socket = "/vm/qmp.sock";
  c.console_output = "/vm/console.log";
  return c;
}

// The value after `flag`, or "" when absent; fails the test if the flag appears twice.
std::string After(const std::vector<std::string>& argv, std::string_view flag) {
  auto it = std::find(argv.begin(), argv.end(), flag);
  if (it == argv.end() || it + 1 == argv.end()) return "";
  EXPECT_EQ(std::find(it + 1, argv.end(), flag), argv.end()) << flag << " given twice";
  return *(it + 1);
}

TEST(QemuCommandTest, MicrovmWithSharedMemoryFileConsoleAndQmp) {
  auto argv = BuildQemuArgv(Minimal());
  ASSERT_TRUE(argv) << argv.error().message;
  EXPECT_EQ((*argv)[0], "qemu-system-x86_64");
  EXPECT_EQ(After(*argv, "-accel"), "tcg");
  EXPECT_EQ(After(*argv, "-cpu"), "max");
  EXPECT_EQ(After(*argv, "-smp"), "2");
  EXPECT_EQ(After(*argv, "-m"), "256M");
  EXPECT_EQ(After(*argv, "-M"), "microvm,acpi=on,memory-backend=mem");
  EXPECT_EQ(After(*argv, "-object"),
            "memory-backend-file,id=mem,size=256M,mem-path=/vm/memory,share=on");
  EXPECT_EQ(After(*argv, "-kernel"), "/img/vmlinux");
  EXPECT_EQ(After(*argv, "-chardev"), "file,id=console,path=/vm/console.log,append=on");
  EXPECT_EQ(After(*argv, "-serial"), "chardev:console");
  EXPECT_EQ(After(*argv, "-qmp"), "unix:/vm/qmp.sock,server=on,wait=off");
  EXPECT_EQ(After(*argv, "-initrd"), "");
  EXPECT_EQ(After(*argv, "-netdev"), "");
  EXPECT_EQ(After(*argv, "-incoming"), "");
  EXPECT_NE(std::find(argv->begin(), argv->end(), "-no-reboot"), argv->end());
}

TEST(QemuCommandTest, SandboxedWithABoundedTranslationCache) {
  QemuConfig c = Minimal();
  c.tcg_cache_mib = 64;
  auto argv = BuildQemuArgv(c);
  ASSERT_TRUE(argv) << argv.error().message;
  EXPECT_EQ(After(*argv, "-sandbox"),
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
  EXPECT_EQ(After(*argv, "-accel"), "tcg,tb-size=64");
  c.sandbox = false;
  c.accel = Accel::kKvm;
  argv = BuildQemuArgv(c);
  ASSERT_TRUE(argv) << argv.error().message;
  EXPECT_EQ(After(*argv, "-sandbox"), "");
  EXPECT_EQ(After(*argv, "-accel"), "kvm") << "no translation cache under KVM";
}

TEST(QemuCommandTest, AQmpSocketHandedOverIsTakenByDescriptor) {
  QemuConfig c = Minimal();
  c.qmp_fd = 7;
  auto argv = BuildQemuArgv(c);
  ASSERT_TRUE(argv) << argv.error().message;
  EXPECT_EQ(After(*argv, "-qmp"), "");
  EXPECT_NE(std::find(argv->begin(), argv->end(), "socket,id=qmp,fd=7,server=on,wait=off"),
            argv->end());
  EXPECT_EQ(After(*argv, "-mon"), "chardev=qmp,mode=control");
}

TEST(QemuCommandTest, KvmDisksTapAndIncoming) {
  QemuConfig c = Minimal();
  c.accel = Accel::kKvm;
  c.initrd = "/img/initrd.img";
  c.rootfs = "/disks/root,1.img";
  c.rootfs_readonly = true;
  c.cmdline = "console=ttyS0 hearth.name=web";
  c.tap_fd = 7;
  c.mac = "52:54:00:00:00:02";
  c.incoming = true;
  auto argv = BuildQemuArgv(c);
  ASSERT_TRUE(argv) << argv.error().message;
  EXPECT_EQ(After(*argv, "-accel"), "kvm");
  EXPECT_EQ(After(*argv, "-cpu"), "host");
  EXPECT_EQ(After(*argv, "-initrd"), "/img/initrd.img");
  EXPECT_EQ(After(*argv, "-append"), "console=ttyS0 hearth.name=web");
  EXPECT_EQ(After(*argv, "-drive"),
            "id=root,file=/disks/root,,1.img,format=raw,if=none,cache=none,aio=threads,readonly=on")
      << "commas in paths are doubled";
  EXPECT_EQ(After(*argv, "-netdev"), "tap,id=net0,fd=7");
  EXPECT_EQ(After(*argv, "-incoming"), "defer");
  auto device =
      std::find(argv->begin(), argv->end(), "virtio-net-device,netdev=net0,mac=52:54:00:00:00:02");
  EXPECT_NE(device, argv->end());
}

TEST(QemuCommandTest, TapByName) {
  QemuConfig c = Minimal();
  c.tap_name = "hth-web";
  c.mac = "52:54:00:00:00:02";
  auto argv = BuildQemuArgv(c);
  ASSERT_TRUE(argv);
  EXPECT_EQ(After(*argv, "-netdev"), "tap,id=net0,ifname=hth-web,script=no,downscript=no");
}

TEST(QemuCommandTest, RefusesIncompleteConfigs) {
  struct Case {
    void (*mutate)(QemuConfig&);
    const char* field;
  } cases[] = {
      {[](QemuConfig& c) { c.kernel.clear(); }, "kernel"},
      {[](QemuConfig& c) { c.memory_file.clear(); }, "memory_file"},
      {[](QemuConfig& c) { c.qmp_socket.clear(); }, "qmp_socket"},
      {[](QemuConfig& c) { c.console_output.clear(); }, "console_output"},
      {[](QemuConfig& c) { c.vcpus = 0; }, "vcpus"},
      {[](QemuConfig& c) { c.memory = MiB{0}; }, "memory"},
      {[](QemuConfig& c) { c.tap_name = "t"; }, "mac"},
      {[](QemuConfig& c) {
         c.tap_name = "t";
         c.tap_fd = 3;
         c.mac = "52:54:00:00:00:02";
       },
       "tap"},
  };
  for (const auto& k : cases) {
    SCOPED_TRACE(k.field);
    QemuConfig c = Minimal();
    k.mutate(c);
    auto argv = BuildQemuArgv(c);
    ASSERT_FALSE(argv);
    EXPECT_EQ(argv.error().field, k.field);
  }
}

TEST(QemuCommandTest, KernelCmdlineOrder) {
  EXPECT_EQ(BuildKernelCmdline("console=ttyS0 quiet", 2596142, "web",
                               GuestNetwork{"172.30.0.2/30", "172.30.0.1"}, "loglevel=7"),
            "console=ttyS0 quiet tsc_early_khz=2596142 hearth.name=web hearth.ip=172.30.0.2/30 "
            "hearth.gw=172.30.0.1 loglevel=7");
  EXPECT_EQ(BuildKernelCmdline("", 0, "web", std::nullopt, ""), "hearth.name=web");
}

TEST(QemuCommandTest, GuestAgentChannelIsAVirtioSerialPortOnAPairOfFifos) {
  QemuConfig c = Minimal();
  auto without = BuildQemuArgv(c);
  ASSERT_TRUE(without);
  EXPECT_EQ(std::count(without->begin(), without->end(), "virtio-serial-device"), 0);
  c.agent_pipe = "/vm/agent";
  auto argv = BuildQemuArgv(c);
  ASSERT_TRUE(argv);
  auto chardev = std::find(argv->begin(), argv->end(), "pipe,id=agent,path=/vm/agent");
  EXPECT_NE(chardev, argv->end());
  EXPECT_NE(
      std::find(argv->begin(), argv->end(), "virtserialport,chardev=agent,name=org.hearth.agent"),
      argv->end());
  EXPECT_NE(std::find(argv->begin(), argv->end(), "virtio-serial-device"), argv->end());
}

}  // namespace
}  // namespace hearth::hv::qemu

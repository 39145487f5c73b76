// The plans behind QEMU's confinement (README, "Confinement"): which cgroup hierarchy a host
// offers, what is created and written for one VM, which user a VM's QEMU runs as, and what is
// granted to it. The e2e side is tests/e2e/qemu_confinement_test.cc.
#include <gtest/gtest.h>

#include <map>

#include "hv/cgroup.h"
#include "hv/qemu/qemu_command.h"
#include "hv/qemu/qemu_confinement.h"
#include "hv/vmm_user.h"
#include "support/temp_dir.h"

namespace hearth::hv {
namespace {

namespace fs = std::filesystem;

// The cgroup lines of a hybrid host's /proc/self/mountinfo: v2 with no controllers, v1 memory
// and cpu mounted separately.
constexpr std::string_view kHybrid =
    "30 23 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "36 23 0:5 / /proc rw - proc proc rw\n";
constexpr std::string_view kHybridSelf = "4:memory:/process_api/abc\n1:cpu:/\n0::/\n";

CgroupHierarchy Find(std::string_view mountinfo, std::string_view self,
                     std::map<fs::path, std::string> files) {
  return FindCgroupHierarchy(mountinfo, self, [&](const fs::path& p) { return files[p]; });
}

TEST(CgroupTest, V2WithMemoryAndCpuWins) {
  auto h = Find("29 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "0::/system.slice/x\n",
                {{"/sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory pids\n"}});
  ASSERT_EQ(h.kind, CgroupHierarchy::Kind::kV2);
  EXPECT_EQ(h.parent, fs::path("/sys/fs/cgroup/hearth.slice"));
  CgroupPlan plan = PlanVmCgroup(h, "vm-1", 300 << 20, 2);
  EXPECT_EQ(plan.dirs, std::vector<fs::path>{"/sys/fs/cgroup/hearth.slice/vm-1"});
  EXPECT_EQ(plan.writes,
            (std::vector<CgroupWrite>{
                {"/sys/fs/cgroup/hearth.slice/vm-1/memory.max", std::to_string(300 << 20)},
                {"/sys/fs/cgroup/hearth.slice/vm-1/memory.swap.max", "0"},
                {"/sys/fs/cgroup/hearth.slice/vm-1/cpu.weight", "200"}}));
  EXPECT_EQ(plan.procs, std::vector<fs::path>{"/sys/fs/cgroup/hearth.slice/vm-1/cgroup.procs"});
}

TEST(CgroupTest, AHybridHostFallsBackToV1UnderHearthdsOwnCgroups) {
  auto h = Find(kHybrid, kHybridSelf, {{"/sys/fs/cgroup/unified/cgroup.controllers", "\n"}});
  ASSERT_EQ(h.kind, CgroupHierarchy::Kind::kV1);
  EXPECT_EQ(h.memory_parent, fs::path("/sys/fs/cgroup/memory/process_api/abc/hearth.slice"));
  EXPECT_EQ(h.cpu_parent, fs::path("/sys/fs/cgroup/cpu/hearth.slice"));
  CgroupPlan plan = PlanVmCgroup(h, "vm-2", 1 << 30, 1);
  EXPECT_EQ(plan.writes,
            (std::vector<CgroupWrite>{
                {h.memory_parent / "vm-2" / "memory.limit_in_bytes", std::to_string(1 << 30)},
                {h.cpu_parent / "vm-2" / "cpu.shares", "1024"}}));
  EXPECT_EQ(plan.procs.size(), 2u);
}

TEST(CgroupTest, NoControllersMeansNoPlanAndAReason) {
  auto h = Find("30 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "0::/\n",
                {{"/sys/fs/cgroup/cgroup.controllers", "hugetlb\n"}});
  EXPECT_EQ(h.kind, CgroupHierarchy::Kind::kNone);
  EXPECT_NE(h.why_none.find("offers no memory and cpu"), std::string::npos) << h.why_none;
  EXPECT_TRUE(PlanVmCgroup(h, "vm-3", 1, 1).empty());
}

TEST(VmmUserTest, EachVmGetsTheLowestFreeSlotAndKeepsIt) {
  VmmUserRange range{.base = 1000, .count = 3};
  EXPECT_EQ(*ChooseVmmUser(range, {}, std::nullopt), (VmmUser{1001, 1001, 1000}));
  EXPECT_EQ(*ChooseVmmUser(range, {1001, 1003}, std::nullopt), (VmmUser{1002, 1002, 1000}));
  // The VM's directory already has slot 3: it keeps it.
  EXPECT_EQ(*ChooseVmmUser(range, {1001}, 1003), (VmmUser{1003, 1003, 1000}));
  // A directory group outside the range (root's 0) is no slot.
  EXPECT_EQ(*ChooseVmmUser(range, {0, 1001}, 0), (VmmUser{1002, 1002, 1000}));
  // Two VMs cannot share one: a copied directory with another's group gets a new slot.
  EXPECT_EQ(*ChooseVmmUser(range, {1001}, 1001), (VmmUser{1002, 1002, 1000}));
  auto full = ChooseVmmUser(range, {1001, 1002, 1003}, std::nullopt);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, Code::kResourceExhausted);
  EXPECT_NE(full.error().message.find("--vmm-id-base"), std::string::npos);
}

TEST(QemuConfinementTest, GrantsStayInsideTheDataDirAndOwnOnlyTheVmsFiles) {
  MachineSpec spec;
  spec.vm_dir = "/d/vms/vm-1";
  spec.kernel = "/d/images/default/vmlinux";
  spec.initrd = "/srv/hearth/initrd.img";  // outside the data dir: left alone
  spec.rootfs = "/d/images/disk.img";
  spec.rootfs_readonly = false;
  spec.memory_file = "/d/vms/vm-1/memory";
  spec.console_log = "/d/vms/vm-1/console.log";
  spec.agent_pipe = "/d/vms/vm-1/agent";
  using K = qemu::Grant::Kind;
  EXPECT_EQ(qemu::PlanGrants(spec, "/d"),
            (std::vector<qemu::Grant>{{"/d", K::kTraverse},
                                      {"/d/vms", K::kTraverse},
                                      {"/d/images", K::kTraverse},
                                      {"/d/images/default", K::kTraverse},
                                      {"/d/images/default/vmlinux", K::kShareRead},
                                      {"/d/images/disk.img", K::kOwn},
                                      {"/d/vms/vm-1/memory", K::kOwn},
                                      {"/d/vms/vm-1/console.log", K::kOwn},
                                      {"/d/vms/vm-1/agent.in", K::kOwn},
                                      {"/d/vms/vm-1/agent.out", K::kOwn}}));
  EXPECT_TRUE(qemu::PlanGrants(spec, "").empty());
}

TEST(QemuConfinementTest, ADataDirBehindAClosedDirectoryIsRefusedAtStart) {
  testing::TempDir dir;
  fs::create_directories(dir / "closed" / "data");
  fs::permissions(dir / "closed", fs::perms::owner_all);
  VmmUserRange users{.base = kDefaultVmmIdBase};
  auto s = qemu::CheckDataDirReachable(dir / "closed" / "data", users);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kFailedPrecondition);
  EXPECT_NE(s.error().message.find("cannot pass through " + (dir / "closed").string() +
                                   " (mode 0700); `chmod o+x"),
            std::string::npos)
      << s.error().message;
  EXPECT_TRUE(qemu::CheckDataDirReachable(dir / "closed" / "data", VmmUserRange{.base = 0}))
      << "QEMU as root passes anywhere";
  fs::permissions(dir / "closed", fs::perms::others_exec, fs::perm_options::add);
  EXPECT_TRUE(qemu::CheckDataDirReachable(dir / "closed" / "data" / "not-yet", users));
}

TEST(QemuConfinementTest, TheMemoryLimitCountsGuestRamQemuAndTheTranslationCache) {
  EXPECT_EQ(qemu::QemuMemoryLimitBytes(MiB{512}, qemu::Accel::kKvm), int64_t{512 + 96 + 8} << 20);
  EXPECT_EQ(qemu::QemuMemoryLimitBytes(MiB{512}, qemu::Accel::kTcg),
            int64_t{512 + 96 + 8 + qemu::kTcgCacheMiB} << 20);
}

}  // namespace
}  // namespace hearth::hv

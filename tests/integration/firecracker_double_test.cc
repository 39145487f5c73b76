// The Firecracker test double against this host's kernel (root only): it opens taps the way
// Firecracker does, so a tap still held by another process fails with EBUSY at
// PUT /network-interfaces and at snapshot load, and the jailer double really drops privileges.
// Every tap a test makes is deleted by a guard, also when the test fails.
#include "support/firecracker_double.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "support/scope_guard.h"
#include "support/temp_dir.h"

namespace hearth::testing {
namespace {

using nlohmann::json;

constexpr unsigned kNobody = 65534;

std::string ReadAll(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

int Run(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

// A persistent tap, deleted when the guard goes.
std::string TapName(char suffix) { return fmt::format("fcd{}{}", ::getpid() % 100000, suffix); }
Guard MakeTap(const std::string& name, const std::string& user = "") {
  Run("ip link del " + name);
  EXPECT_EQ(Run("ip tuntap add dev " + name + " mode tap" + (user.empty() ? "" : " user " + user)),
            0);
  return Guard([name] { Run("ip link del " + name); });
}

// Attaches to the tap like another process would; -1 with errno on failure.
int HoldTap(const std::string& name) {
  int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) return -1;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  if (::ioctl(fd, TUNSETIFF, &ifr) != 0) {
    int err = errno;
    ::close(fd);
    errno = err;
    return -1;
  }
  return fd;
}

class FirecrackerDoubleNetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (taps)";
    std::ofstream(dir_ / "vmlinux") << "k";
    std::ofstream(dir_ / "rootfs") << "r";
  }
  FcDoubleProcess& Start() {
    std::filesystem::remove(sock());
    auto p = FcDoubleProcess::Start(
        {FirecrackerDoublePaths().firecracker.string(), "--api-sock", sock().string()}, {},
        dir_ / "out");
    EXPECT_TRUE(p.has_value());
    procs_.push_back(std::make_unique<FcDoubleProcess>(std::move(*p)));
    EXPECT_TRUE(procs_.back()->WaitForSocket(sock()).has_value()) << ReadAll(dir_ / "out");
    return *procs_.back();
  }
  FcResponse Call(const std::string& method, const std::string& path, const json& body) {
    auto r = FcApiCall(sock(), method, path, body.dump());
    EXPECT_TRUE(r.has_value());
    return r ? *r : FcResponse{};
  }
  json Nic(const std::string& tap) { return {{"iface_id", "eth0"}, {"host_dev_name", tap}}; }
  std::filesystem::path sock() const { return dir_ / "fc.sock"; }

  TempDir dir_;
  std::vector<std::unique_ptr<FcDoubleProcess>> procs_;
};

TEST_F(FirecrackerDoubleNetTest, AHeldTapFailsNetworkConfiguration) {
  const std::string tap = TapName('a');
  auto del = MakeTap(tap);
  int held = HoldTap(tap);
  ASSERT_GE(held, 0) << std::strerror(errno);
  Start();
  auto busy = Call("PUT", "/network-interfaces/eth0", Nic(tap));
  EXPECT_EQ(busy.status, 400);
  EXPECT_NE(busy.body.find("Resource busy (os error 16)"), std::string::npos) << busy.body;
  ::close(held);
  auto ok = Call("PUT", "/network-interfaces/eth0", Nic(tap));
  EXPECT_EQ(ok.status, 204) << ok.body;
  // The double keeps the tap open while it lives.
  EXPECT_LT(HoldTap(tap), 0);
  EXPECT_EQ(errno, EBUSY);
  // Configuring the same interface again releases and reopens its own tap.
  EXPECT_EQ(Call("PUT", "/network-interfaces/eth0", Nic(tap)).status, 204);
}

TEST_F(FirecrackerDoubleNetTest, SnapshotLoadOpensTheSavedOrOverriddenTaps) {
  const std::string tap = TapName('b'), other = TapName('c');
  auto del = MakeTap(tap);
  auto del_other = MakeTap(other);
  Start();
  EXPECT_EQ(
      Call("PUT", "/boot-source", {{"kernel_image_path", (dir_ / "vmlinux").string()}}).status,
      204);
  EXPECT_EQ(Call("PUT", "/machine-config", {{"vcpu_count", 1}, {"mem_size_mib", 2}}).status, 204);
  EXPECT_EQ(Call("PUT", "/network-interfaces/eth0", Nic(tap)).status, 204);
  EXPECT_EQ(Call("PUT", "/actions", {{"action_type", "InstanceStart"}}).status, 204);
  EXPECT_EQ(Call("PATCH", "/vm", {{"state", "Paused"}}).status, 204);
  const json create = {{"snapshot_path", (dir_ / "snap").string()},
                       {"mem_file_path", (dir_ / "mem").string()}};
  EXPECT_EQ(Call("PUT", "/snapshot/create", create).status, 204);
  procs_.clear();  // the tap is released with the process

  const json load = {
      {"snapshot_path", (dir_ / "snap").string()},
      {"mem_backend", {{"backend_type", "File"}, {"backend_path", (dir_ / "mem").string()}}}};
  // A tap still held elsewhere makes the load fail, and a failed load ends the process.
  int held = HoldTap(tap);
  ASSERT_GE(held, 0);
  auto& failed = Start();
  auto r = Call("PUT", "/snapshot/load", load);
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("Resource busy"), std::string::npos) << r.body;
  EXPECT_EQ(failed.Wait().value_or(-1), 1);
  ::close(held);

  // Released right before the load: it works and the VM stays paused.
  Start();
  EXPECT_EQ(Call("PUT", "/snapshot/load", load).status, 204);
  EXPECT_EQ(json::parse(FcApiCall(sock(), "GET", "/")->body)["state"], "Paused");
  EXPECT_LT(HoldTap(tap), 0);
  procs_.clear();

  // network_overrides moves the interface to another tap.
  Start();
  json with_override = load;
  with_override["network_overrides"] = {{{"iface_id", "eth0"}, {"host_dev_name", other}}};
  with_override["resume_vm"] = true;
  EXPECT_EQ(Call("PUT", "/snapshot/load", with_override).status, 204);
  EXPECT_LT(HoldTap(other), 0);
  int free_again = HoldTap(tap);
  EXPECT_GE(free_again, 0) << "the saved tap must not be opened when overridden";
  if (free_again >= 0) ::close(free_again);
  auto config = json::parse(FcApiCall(sock(), "GET", "/vm/config")->body);
  EXPECT_EQ(config["network-interfaces"][0]["host_dev_name"], other);
}

TEST_F(FirecrackerDoubleNetTest, JailerDropsPrivilegesAndOpensTapsThroughTheJail) {
  const std::string tap = TapName('d');
  auto del = MakeTap(tap, std::to_string(kNobody));
  ::chmod(dir_.path().c_str(), 0755);
  const auto base = dir_ / "jail";
  auto p = FcDoubleProcess::Start(
      {FirecrackerDoublePaths().jailer.string(), "--id", "vm-9", "--exec-file",
       FirecrackerDoublePaths().firecracker.string(), "--uid", std::to_string(kNobody), "--gid",
       std::to_string(kNobody), "--chroot-base-dir", base.string(), "--", "--api-sock",
       "/run/fc.sock"},
      {}, dir_ / "out");
  ASSERT_TRUE(p.has_value());
  const auto root = base / "firecracker" / "vm-9" / "root";
  const auto api = root / "run" / "fc.sock";
  ASSERT_TRUE(p->WaitForSocket(api).has_value()) << ReadAll(dir_ / "out");
  struct stat st {};
  ASSERT_EQ(::stat((root / "dev" / "net" / "tun").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_uid, kNobody);
  // The process runs as the jail's uid.
  std::string status = ReadAll("/proc/" + std::to_string(p->pid()) + "/status");
  EXPECT_NE(status.find(fmt::format("Uid:\t{}\t{}", kNobody, kNobody)), std::string::npos);
  // A file the uid cannot read is refused; once handed over, it is accepted.
  std::ofstream(root / "vmlinux") << "k";
  ::chmod((root / "vmlinux").c_str(), 0600);
  auto denied =
      FcApiCall(api, "PUT", "/boot-source", json{{"kernel_image_path", "/vmlinux"}}.dump());
  ASSERT_TRUE(denied.has_value());
  EXPECT_EQ(denied->status, 400);
  EXPECT_NE(denied->body.find("Permission denied"), std::string::npos) << denied->body;
  ASSERT_EQ(::chown((root / "vmlinux").c_str(), kNobody, kNobody), 0);
  auto allowed =
      FcApiCall(api, "PUT", "/boot-source", json{{"kernel_image_path", "/vmlinux"}}.dump());
  ASSERT_TRUE(allowed.has_value());
  EXPECT_EQ(allowed->status, 204) << allowed->body;
  auto nic = FcApiCall(api, "PUT", "/network-interfaces/eth0", Nic(tap).dump());
  ASSERT_TRUE(nic.has_value());
  EXPECT_EQ(nic->status, 204) << nic->body;
}

}  // namespace
}  // namespace hearth::testing

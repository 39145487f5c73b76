// A full disk, for real: hearthd's data directory on a small tmpfs, filled up with a file. hearthd
// must start on it in read-only mode (reads and deletes work, writes are 507), report a full disk
// as resource_exhausted 507 naming the path, and become writable again once there is room.
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/disk_space.h"
#include "store/sqlite_state_store.h"
#include "support/daemon.h"
#include "support/scope_guard.h"
#include "support/temp_dir.h"

namespace hearth::testing {
namespace {

using nlohmann::json;

// A tmpfs of `mib` MiB mounted on a fresh directory, unmounted when the test ends.
class SmallDisk {
 public:
  explicit SmallDisk(int mib) {
    std::string options = fmt::format("size={}m,mode=0711", mib);
    mounted_ = mount("tmpfs", dir_.path().c_str(), "tmpfs", 0, options.c_str()) == 0;
    error_ = mounted_ ? "" : strerror(errno);
  }
  ~SmallDisk() {
    if (mounted_) umount2(dir_.path().c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }
  std::filesystem::path path() const { return dir_.path(); }

  // Writes `name` until the filesystem is full, or `max` bytes; returns the bytes written.
  int64_t Fill(const std::string& name = "fill", int64_t max = INT64_MAX) {
    int fd = open((path() / name).c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return 0;
    std::vector<char> block(64 * 1024, 'x');
    int64_t total = 0;
    size_t size = block.size();
    while (size > 0 && total < max) {
      ssize_t n = write(fd, block.data(), std::min<int64_t>(size, max - total));
      if (n > 0) {
        total += n;
      } else {
        size /= 2;  // the last blocks: fill to the last byte
      }
    }
    close(fd);
    return total;
  }
  int64_t FreeBytes() const {
    auto s = ReadDiskSpace(path());
    return s ? s->free_bytes : -1;
  }

 private:
  TempDir dir_;
  bool mounted_ = false;
  std::string error_;
};

json Body(const api::HttpResponse& r) { return json::parse(r.body, nullptr, false); }

api::HttpResponse Call(http::Client& c, const std::string& method, const std::string& target,
                       const std::string& body = {}) {
  auto r = c.Request(method, target, body);
  EXPECT_TRUE(r) << method << " " << target << ": " << (r ? "" : r.error().message);
  return r ? *r : api::HttpResponse{};
}

// The error of a 507 answer: resource_exhausted, naming the data directory and its free space.
void ExpectDiskFull(const api::HttpResponse& r, const std::filesystem::path& data_dir) {
  EXPECT_EQ(r.status, 507) << r.body;
  json err = Body(r)["error"];
  ASSERT_TRUE(err.is_object()) << r.body;
  EXPECT_EQ(err["code"], "resource_exhausted") << r.body;
  std::string message = err.value("message", "");
  EXPECT_NE(message.find(data_dir.string()), std::string::npos) << message;
  EXPECT_NE(message.find("free of"), std::string::npos) << message;
}

constexpr const char* kVm = R"({"name":"%s","kernel":"/bin/true","memory_mib":64})";

std::string VmBody(const std::string& name) {
  std::string s = kVm;
  return s.replace(s.find("%s"), 2, name);
}

// The issue's repro: a hearthd whose disk filled up while it was down did not start ("disk I/O
// error"), so nothing could be deleted to free space.
TEST(DiskFullTest, StartsReadOnlyOnAFullDiskDeletesAndBecomesWritableAgain) {
  SmallDisk disk(32);
  ASSERT_TRUE(disk.mounted()) << "mount tmpfs: " << disk.error();
  std::filesystem::path data = disk.path() / "data";
  std::string id_a;
  {
    auto d = DaemonProcess::Start(data);
    ASSERT_TRUE(d) << d.error().message;
    http::Client c((*d)->UnixClient());
    auto a = Call(c, "POST", "/v1/vms", VmBody("a"));
    ASSERT_EQ(a.status, 201) << a.body;
    id_a = Body(a)["id"];
    ASSERT_EQ(Call(c, "POST", "/v1/vms", VmBody("b")).status, 201);
    EXPECT_TRUE(Body(Call(c, "GET", "/v1/node"))["read_only"].is_null());
    ASSERT_EQ((*d)->Terminate(), 0);
  }
  // What deleting vm 'a' frees: its directory (a console log grown large, say).
  std::filesystem::create_directories(data / "vms" / id_a);
  std::filesystem::path log = std::filesystem::path("data") / "vms" / id_a / "console.log";
  ASSERT_EQ(disk.Fill(log.string(), 2 << 20), 2 << 20);
  disk.Fill();
  ASSERT_LT(disk.FreeBytes(), 4096) << "the disk is full";

  auto d = DaemonProcess::Start(data);
  ASSERT_TRUE(d) << "hearthd must start on a full disk: " << d.error().message;
  http::Client c((*d)->UnixClient());
  auto health = Call(c, "GET", "/healthz");
  EXPECT_EQ(health.status, 200);
  ASSERT_TRUE(Body(health)["read_only"].is_string()) << health.body;
  auto node = Call(c, "GET", "/v1/node");
  ASSERT_EQ(node.status, 200) << node.body;
  std::string why = Body(node)["read_only"].is_string() ? Body(node)["read_only"] : "";
  EXPECT_NE(why.find("no space left"), std::string::npos) << node.body;

  // Reads work; what takes space is refused with 507, naming the path and the free space.
  EXPECT_EQ(Body(Call(c, "GET", "/v1/vms"))["vms"].size(), 2u);
  EXPECT_EQ(Call(c, "GET", "/v1/vms/a").status, 200);
  ExpectDiskFull(Call(c, "POST", "/v1/vms", VmBody("c")), data);
  ExpectDiskFull(Call(c, "POST", "/v1/vms/a/start"), data);
  ExpectDiskFull(Call(c, "PATCH", "/v1/vms/a", R"({"vcpus":2})"), data);
  EXPECT_EQ(Call(c, "GET", "/v1/vms/c").status, 404);

  // Deletes work, and free the VM's files.
  int64_t before = disk.FreeBytes();
  auto del = Call(c, "DELETE", "/v1/vms/a");
  EXPECT_EQ(del.status, 204) << del.body;
  EXPECT_FALSE(std::filesystem::exists(data / "vms" / id_a));
  // Less what the delete wrote to the store (28 KiB measured).
  EXPECT_GE(disk.FreeBytes(), before + (2 << 20) - (256 << 10))
      << "deleting vm 'a' freed its directory";
  EXPECT_TRUE(Body(Call(c, "GET", "/v1/node"))["read_only"].is_string())
      << "the freed reserve and 2 MiB are not enough to leave read-only mode";
  EXPECT_EQ(Call(c, "GET", "/v1/vms/a").status, 404);

  // With room again, the node is writable again (and has its reserve back).
  std::filesystem::remove(disk.path() / "fill");
  auto writable = Call(c, "GET", "/v1/node");
  EXPECT_TRUE(Body(writable)["read_only"].is_null()) << writable.body;
  EXPECT_TRUE(std::filesystem::exists(data / "state.db.reserve"));
  EXPECT_EQ(Call(c, "POST", "/v1/vms", VmBody("c")).status, 201);
  EXPECT_EQ(Call(c, "DELETE", "/v1/vms/b").status, 204);
}

// A disk that fills up while hearthd runs: the write that finds it full is 507
// resource_exhausted naming the store's path (it was a 500 internal), and the node goes
// read-only, where deletes still work.
TEST(DiskFullTest, AFullDiskAtRuntimeIs507AndTheNodeGoesReadOnly) {
  SmallDisk disk(32);
  ASSERT_TRUE(disk.mounted()) << "mount tmpfs: " << disk.error();
  std::filesystem::path data = disk.path() / "data";
  auto d = DaemonProcess::Start(data);
  ASSERT_TRUE(d) << d.error().message;
  http::Client c((*d)->UnixClient());
  ASSERT_EQ(Call(c, "POST", "/v1/vms", VmBody("a")).status, 201);
  disk.Fill();

  // The first write that needs a page more than the store had.
  api::HttpResponse refused;
  for (int i = 0; i < 50 && refused.status != 507; ++i) {
    refused = Call(c, "POST", "/v1/vms", VmBody(fmt::format("vm{}", i)));
    ASSERT_TRUE(refused.status == 201 || refused.status == 507) << refused.body;
  }
  ExpectDiskFull(refused, data);
  EXPECT_NE(Body(refused)["error"].value("message", "").find("state.db"), std::string::npos)
      << refused.body;
  auto node = Call(c, "GET", "/v1/node");
  EXPECT_TRUE(Body(node)["read_only"].is_string()) << node.body;
  EXPECT_EQ(Call(c, "DELETE", "/v1/vms/a").status, 204);

  std::filesystem::remove(disk.path() / "fill");
  EXPECT_TRUE(Body(Call(c, "GET", "/healthz"))["read_only"].is_null());
  EXPECT_EQ(Call(c, "POST", "/v1/vms", VmBody("a")).status, 201);
}

// The store itself, without hearthd: a write on a full filesystem is a disk-full
// resource_exhausted naming the database.
TEST(DiskFullTest, TheStoreReportsAFullDiskAsResourceExhausted) {
  SmallDisk disk(4);
  ASSERT_TRUE(disk.mounted()) << "mount tmpfs: " << disk.error();
  auto store = store::SqliteStateStore::Open(disk.path() / "state.db");
  ASSERT_TRUE(store) << store.error().message;
  std::vector<Error> seen;
  (*store)->SetOnDiskFull([&seen](const Error& e) { seen.push_back(e); });
  disk.Fill();
  Status s;
  for (int i = 0; i < 100 && s; ++i) {
    VmRecord vm;
    vm.name = fmt::format("vm{}", i);
    vm.id = fmt::format("id{}", i);
    vm.spec.kernel = std::string(2000, 'k');  // a page a VM
    s = (*store)->CreateVm(vm, Event{0, vm.id, vm.name, {}, "created", ""});
  }
  ASSERT_FALSE(s) << "the store never found the disk full";
  EXPECT_EQ(s.error().code, Code::kResourceExhausted) << s.error().message;
  EXPECT_TRUE(IsDiskFull(s.error()));
  EXPECT_EQ(HttpStatusOf(s.error()), 507);
  EXPECT_NE(s.error().message.find((disk.path() / "state.db").string()), std::string::npos)
      << s.error().message;
  EXPECT_FALSE(seen.empty()) << "the store tells its owner";
}

}  // namespace
}  // namespace hearth::testing

// The API on a node whose disk is full: read-only mode (store/disk_reserve.h) and disk-full
// errors answered as 507 resource_exhausted.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "api/api_handler.h"
#include "common/disk_space.h"
#include "fakes/fakes.h"
#include "support/temp_dir.h"

namespace hearth::api {
namespace {

using nlohmann::json;

class ApiReadOnlyTest : public ::testing::Test {
 protected:
  ApiReadOnlyTest()
      : node_(store_, testing::TestHost(), files_, clock_, Paths(dir_.path()), {}),
        auth_(Sha256Hex("hth_test")),
        api_(node_, auth_),
        reserve_(store::DiskReserve::ReserveFileFor(dir_ / "state.db"), 4096,
                 [this](const std::filesystem::path&) -> Result<DiskSpace> {
                   return DiskSpace{free_, int64_t{1} << 30};
                 }) {
    files_.AddKernel("/k/vmlinux");
    api_.SetDiskReserve(&reserve_);
  }

  HttpResponse Call(const std::string& method, const std::string& target,
                    const std::string& body = "") {
    return api_.Handle(HttpRequest{method, target, {}, body, true});
  }
  static json Body(const HttpResponse& r) { return json::parse(r.body); }

  testing::TempDir dir_;
  testing::FakeStateStore store_;
  testing::FakeFileProbe files_;
  testing::FakeClock clock_;
  node::Node node_;
  TokenAuthenticator auth_;
  ApiHandler api_;
  int64_t free_ = int64_t{1} << 30;
  store::DiskReserve reserve_;
};

TEST_F(ApiReadOnlyTest, AFullDiskInAWriteIs507NotInternal) {
  store_.FailWrites(DiskFullError("store /d/state.db: creating vm 'web'", dir_ / "state.db"));
  auto r = Call("POST", "/v1/vms", R"({"name":"web","kernel":"/k/vmlinux"})");
  EXPECT_EQ(r.status, 507) << r.body;
  EXPECT_EQ(Body(r)["error"]["code"], "resource_exhausted");
  EXPECT_NE(Body(r)["error"]["message"].get<std::string>().find((dir_ / "state.db").string()),
            std::string::npos)
      << r.body;
}

TEST_F(ApiReadOnlyTest, ReadOnlyRefusesWhatTakesSpaceAndDeletesGoOn) {
  ASSERT_EQ(Call("POST", "/v1/vms", R"({"name":"web","kernel":"/k/vmlinux"})").status, 201);
  EXPECT_TRUE(Body(Call("GET", "/v1/node"))["read_only"].is_null());
  EXPECT_TRUE(Body(Call("GET", "/healthz"))["read_only"].is_null());

  free_ = 0;
  reserve_.EnterReadOnly("store /d/state.db: database or disk is full");
  EXPECT_EQ(Body(Call("GET", "/v1/node"))["read_only"],
            "store /d/state.db: database or disk is full");
  auto health = Call("GET", "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(Body(health)["status"], "ok");
  EXPECT_TRUE(Body(health)["read_only"].is_string());
  int writes = store_.writes();
  for (auto [method, target, body] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"POST", "/v1/vms", R"({"name":"db","kernel":"/k/vmlinux"})"},
           {"PATCH", "/v1/vms/web", R"({"vcpus":2})"},
           {"POST", "/v1/vms/web/start", ""},
           {"POST", "/v1/vms/web/resume", ""},
           {"POST", "/v1/vms/web/suspend", ""}}) {
    auto r = Call(method, target, body);
    EXPECT_EQ(r.status, 507) << method << " " << target << ": " << r.body;
    EXPECT_EQ(Body(r)["error"]["code"], "resource_exhausted");
    EXPECT_NE(Body(r)["error"]["message"].get<std::string>().find(dir_.path().string()),
              std::string::npos)
        << r.body;
  }
  EXPECT_EQ(store_.writes(), writes) << "nothing was written";
  EXPECT_EQ(Call("POST", "/v1/vms/nope/start").status, 404) << "a missing VM is still 404";
  EXPECT_EQ(Call("PATCH", "/v1/vms/nope", R"({"vcpus":2})").status, 404);
  EXPECT_EQ(Call("GET", "/v1/vms/web").status, 200) << "reads work";
  EXPECT_NE(Call("POST", "/v1/vms/web/stop").status, 507) << "stopping takes no space";
  EXPECT_EQ(Call("DELETE", "/v1/vms/web").status, 204);

  free_ = int64_t{1} << 30;  // room again: the next check leaves read-only mode
  EXPECT_TRUE(Body(Call("GET", "/v1/node"))["read_only"].is_null());
  EXPECT_EQ(Call("POST", "/v1/vms", R"({"name":"db","kernel":"/k/vmlinux"})").status, 201);
}

}  // namespace
}  // namespace hearth::api

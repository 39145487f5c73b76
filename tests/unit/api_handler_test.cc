#include "api/api_handler.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "fakes/fakes.h"

namespace hearth::api {
namespace {

using nlohmann::json;

constexpr const char* kToken = "hth_test";

class ApiHandlerTest : public ::testing::Test {
 protected:
  ApiHandlerTest()
      : node_(store_, testing::TestHost(), files_, clock_, Paths("/var/lib/hearth"), {}),
        auth_(Sha256Hex(kToken)),
        api_(node_, auth_) {
    files_.AddKernel("/k/vmlinux");
  }

  HttpResponse Call(const std::string& method, const std::string& target,
                    const std::string& body = "", bool trusted = true,
                    std::map<std::string, std::string> headers = {}) {
    HttpRequest req{method, target, std::move(headers), body, trusted};
    return api_.Handle(req);
  }
  static json Body(const HttpResponse& r) { return json::parse(r.body); }
  static std::string ErrorCode(const HttpResponse& r) { return Body(r)["error"]["code"]; }
  static std::string Header(const HttpResponse& r, std::string_view name) {
    for (const auto& [k, v] : r.headers) {
      if (k == name) return v;
    }
    return "";
  }

  testing::FakeStateStore store_;
  testing::FakeFileProbe files_;
  testing::FakeClock clock_;
  node::Node node_;
  TokenAuthenticator auth_;
  ApiHandler api_;
};

TEST_F(ApiHandlerTest, TcpNeedsAValidTokenAndARefusedRequestDoesNothing) {
  const std::string create = R"({"name":"web","kernel":"/k/vmlinux"})";
  auto none = Call("POST", "/v1/vms", create, /*trusted=*/false);
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(ErrorCode(none), "unauthenticated");
  auto wrong = Call("POST", "/v1/vms", create, false, {{"authorization", "Bearer nope"}});
  EXPECT_EQ(wrong.status, 401);
  auto basic = Call("POST", "/v1/vms", create, false, {{"authorization", "Basic aGk6aGk="}});
  EXPECT_EQ(basic.status, 401);
  EXPECT_EQ(Call("GET", "/v1/vms/web", "", false).status, 401);
  EXPECT_EQ(store_.writes(), 0);
  EXPECT_TRUE(node_.List().empty());
  auto ok =
      Call("POST", "/v1/vms", create, false, {{"authorization", std::string("Bearer ") + kToken}});
  EXPECT_EQ(ok.status, 201) << ok.body;
  EXPECT_EQ(Call("GET", "/healthz", "", false).status, 200) << "health needs no token";
}

TEST_F(ApiHandlerTest, CreateGetListDelete) {
  auto created = Call("POST", "/v1/vms", R"({"name":"web","kernel":"/k/vmlinux","vcpus":2})");
  ASSERT_EQ(created.status, 201) << created.body;
  json vm = Body(created);
  EXPECT_EQ(vm["name"], "web");
  EXPECT_EQ(vm["state"], "created");
  EXPECT_EQ(vm["vcpus"], 2);
  EXPECT_EQ(vm["pid"], nullptr);
  EXPECT_EQ(vm["snapshot"], nullptr);
  auto get = Call("GET", "/v1/vms/web");
  EXPECT_EQ(get.status, 200);
  EXPECT_EQ(Body(get), vm);
  auto list = Call("GET", "/v1/vms");
  EXPECT_EQ(Body(list)["vms"].size(), 1u);
  EXPECT_EQ(Call("DELETE", "/v1/vms/web").status, 204);
  EXPECT_EQ(Call("GET", "/v1/vms/web").status, 404);
}

TEST_F(ApiHandlerTest, ValidationErrorsNameTheField) {
  auto r = Call("POST", "/v1/vms", R"({"name":"web","kernel":"/k/vmlinux","memory_mib":3})");
  EXPECT_EQ(r.status, 400);
  json e = Body(r)["error"];
  EXPECT_EQ(e["code"], "invalid_argument");
  EXPECT_EQ(e["field"], "memory_mib");
  EXPECT_EQ(e["message"], "memory_mib: 3 is below the minimum of 64");
}

TEST_F(ApiHandlerTest, EditsCarryTheirGeneration) {
  auto created = Call("POST", "/v1/vms", R"({"name":"web","kernel":"/k/vmlinux"})");
  ASSERT_EQ(created.status, 201);
  EXPECT_EQ(Body(created)["generation"], 1);
  EXPECT_EQ(Header(created, "ETag"), "\"1\"");
  auto ok = Call("PATCH", "/v1/vms/web", R"({"vcpus":2})", true, {{"if-match", "\"1\""}});
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(Body(ok)["version"], 2);
  EXPECT_EQ(Body(ok)["generation"], 2);
  EXPECT_EQ(Header(ok, "ETag"), "\"2\"");
  auto stale = Call("PATCH", "/v1/vms/web", R"({"vcpus":4})", true, {{"if-match", "\"1\""}});
  EXPECT_EQ(stale.status, 409);
  EXPECT_EQ(ErrorCode(stale), "failed_precondition");
  EXPECT_EQ(Body(stale)["error"]["field"], "generation");
  auto stale_body = Call("PATCH", "/v1/vms/web", R"({"vcpus":4,"generation":1})");
  EXPECT_EQ(stale_body.status, 409);
  auto disagree =
      Call("PATCH", "/v1/vms/web", R"({"vcpus":4,"generation":2})", true, {{"if-match", "3"}});
  EXPECT_EQ(disagree.status, 400);
  // The record's version is not what an edit is based on: it moves with every state change.
  auto by_version = Call("PATCH", "/v1/vms/web", R"({"vcpus":4,"version":2})");
  EXPECT_EQ(by_version.status, 400);
  EXPECT_EQ(Body(by_version)["error"]["field"], "version");
  auto junk = Call("PATCH", "/v1/vms/web", R"({"vcpus":4})", true, {{"if-match", "W/x"}});
  EXPECT_EQ(junk.status, 400);
  EXPECT_EQ(Body(Call("GET", "/v1/vms/web"))["vcpus"], 2);
}

TEST_F(ApiHandlerTest, LifecycleAnswersNoDriver) {
  ASSERT_EQ(Call("POST", "/v1/vms", R"({"name":"web","kernel":"/k/vmlinux"})").status, 201);
  for (const char* verb : {"start", "suspend", "resume"}) {
    auto r = Call("POST", std::string("/v1/vms/web/") + verb);
    EXPECT_EQ(r.status, 409) << verb;
    EXPECT_EQ(ErrorCode(r), "failed_precondition");
  }
  // A stop of a VM that never ran needs no driver: there is nothing to stop.
  auto stop = Call("POST", "/v1/vms/web/stop");
  EXPECT_EQ(stop.status, 200) << stop.body;
  EXPECT_EQ(Header(stop, "Hearth-Unchanged"), "already created");
  EXPECT_EQ(Body(stop)["version"], 1);
  EXPECT_NE(Body(Call("POST", "/v1/vms/web/start"))["error"]["message"].get<std::string>().find(
                "no hypervisor driver"),
            std::string::npos);
}

TEST_F(ApiHandlerTest, BadRequestsGetClearErrors) {
  EXPECT_EQ(Call("GET", "/v2/things").status, 404);
  EXPECT_EQ(Call("GET", "/v1/vms/web/explode").status, 404);
  auto put = Call("PUT", "/v1/vms");
  EXPECT_EQ(put.status, 405);
  ASSERT_FALSE(put.headers.empty());
  EXPECT_EQ(put.headers[0], (std::pair<std::string, std::string>{"Allow", "GET, POST"}));
  EXPECT_EQ(Call("POST", "/v1/vms", "{not json").status, 400);
  EXPECT_EQ(Call("POST", "/v1/vms", "[1,2]").status, 400);
  EXPECT_EQ(Call("GET", "/v1/vms?color=red").status, 400);
  EXPECT_EQ(Call("DELETE", "/v1/vms/web?force=perhaps").status, 400);
  EXPECT_EQ(Call("GET", "/v1/vms/%zz").status, 400);
  EXPECT_EQ(Call("GET", "/v1/vms/web/events?limit=0").status, 400);
  EXPECT_EQ(Call("GET", "/v1/vms/nope").status, 404);
  for (const char* wait : {"forever", "0s", "11m", "-1s", ""}) {
    auto r = Call("POST", std::string("/v1/vms/web/suspend?wait=") + wait);
    EXPECT_EQ(r.status, 400) << wait;
    EXPECT_EQ(Body(r)["error"]["field"], "wait") << r.body;
  }
  EXPECT_EQ(Call("POST", "/v1/vms/web/start?wait=30s&fresh=true").status, 404) << "parsed";
  EXPECT_EQ(store_.writes(), 0);
}

TEST_F(ApiHandlerTest, NodeInfo) {
  auto r = Call("GET", "/v1/node");
  ASSERT_EQ(r.status, 200);
  json n = Body(r);
  EXPECT_EQ(n["cpus"], 8);
  EXPECT_EQ(n["memory_mib"], 16384);
  EXPECT_EQ(n["memory_running_mib"], 0);
  EXPECT_EQ(n["backends"], json::array());
}

TEST_F(ApiHandlerTest, EventsAndLogs) {
  ASSERT_EQ(Call("POST", "/v1/vms", R"({"name":"web","kernel":"/k/vmlinux"})").status, 201);
  auto events = Call("GET", "/v1/vms/web/events");
  ASSERT_EQ(events.status, 200);
  EXPECT_EQ(Body(events)["events"][0]["type"], "created");
  auto logs = Call("GET", "/v1/vms/web/logs");
  EXPECT_EQ(logs.status, 200);
  EXPECT_EQ(logs.content_type, "text/plain; charset=utf-8");
}

}  // namespace
}  // namespace hearth::api

namespace hearth::api {
namespace {

// A usage source that returns fixed sums and remembers the query.
class StubUsage final : public metering::UsageSource {
 public:
  Result<metering::UsageData> Fetch(const metering::ReportQuery& q) override {
    last = q;
    metering::UsageData d;
    metering::Usage u;
    u.cpu_ms = 4000;
    d.rows = {{q.since, "id-web", "web", u}};
    return d;
  }
  std::optional<metering::ReportQuery> last;
};

class ApiMeteringTest : public ApiHandlerTest {
 protected:
  ApiMeteringTest() : metered_(node_, auth_, {&metrics_, &local_, nullptr, &clock_}) {}
  HttpResponse Get(const std::string& target, bool trusted = true) {
    return metered_.Handle(HttpRequest{"GET", target, {}, "", trusted});
  }
  metering::Metrics metrics_;
  StubUsage local_;
  ApiHandler metered_;
};

TEST_F(ApiMeteringTest, UsageParsesTheRangeAndAnswersTheReport) {
  auto r = Get("/v1/usage?vm=web&since=2h&by=hour");
  ASSERT_EQ(r.status, 200) << r.body;
  json b = Body(r);
  EXPECT_EQ(b["source"], "local");
  EXPECT_EQ(b["by"], "hour");
  EXPECT_EQ(b["vms"][0]["vm"], "web");
  EXPECT_EQ(b["total"]["cpu_seconds"], 4.0);
  ASSERT_TRUE(local_.last);
  EXPECT_EQ(local_.last->vm, "web");
  EXPECT_EQ(local_.last->since, clock_.Now() - std::chrono::hours(2));
  EXPECT_EQ(ErrorCode(Get("/v1/usage?by=week")), "invalid_argument");
  EXPECT_EQ(ErrorCode(Get("/v1/usage?source=clickhouse")), "failed_precondition");
  EXPECT_EQ(ErrorCode(Get("/v1/usage?source=elsewhere")), "invalid_argument");
  EXPECT_EQ(metered_.Handle(HttpRequest{"POST", "/v1/usage", {}, "", true}).status, 405);
  EXPECT_EQ(Get("/v1/usage", /*trusted=*/false).status, 401);
  // Without metering, the API says so.
  EXPECT_EQ(ErrorCode(Call("GET", "/v1/usage")), "unavailable");
  EXPECT_EQ(ErrorCode(Call("GET", "/metrics")), "unavailable");
}

TEST_F(ApiMeteringTest, MetricsCountRequestsByRoute) {
  Get("/v1/vms");
  Get("/v1/vms/nope");
  Get("/v1/vms/nope/events?limit=3");
  Get("/nowhere");
  auto r = Get("/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
  for (const char* want :
       {"hearth_api_requests_total{method=\"GET\",route=\"/v1/vms\",code=\"200\"} 1",
        "hearth_api_requests_total{method=\"GET\",route=\"/v1/vms/{name}\",code=\"404\"} 1",
        "hearth_api_requests_total{method=\"GET\",route=\"/v1/vms/{name}/events\",code=\"404\"} 1",
        "hearth_api_requests_total{method=\"GET\",route=\"other\",code=\"404\"} 1"}) {
    EXPECT_NE(r.body.find(want), std::string::npos) << want << "\n" << r.body;
  }
  EXPECT_EQ(ApiHandler::RouteOf("POST", "/v1/vms/web/start?fresh=true"), "/v1/vms/{name}/start");
  EXPECT_EQ(ApiHandler::RouteOf("PUT", "/v1/vms"), "other");
  EXPECT_EQ(ApiHandler::RouteOf("GET", "/metrics"), "/metrics");
}

TEST_F(ApiHandlerTest, AdmitRefusesAnUnauthenticatedRequestOnItsHeaders) {
  HttpRequest headers{"POST", "/v1/vms", {{"content-length", "1000000"}}, "", false};
  auto refusal = api_.Admit(headers);
  ASSERT_TRUE(refusal);
  EXPECT_EQ(refusal->status, 401);
  EXPECT_EQ(ErrorCode(*refusal), "unauthenticated");
  headers.headers["authorization"] = "Bearer nope";
  EXPECT_TRUE(api_.Admit(headers));
  headers.headers["authorization"] = std::string("Bearer ") + kToken;
  EXPECT_FALSE(api_.Admit(headers));
  EXPECT_FALSE(api_.Admit(HttpRequest{"POST", "/v1/vms", {}, "", /*trusted=*/true}));
  EXPECT_FALSE(api_.Admit(HttpRequest{"GET", "/healthz", {}, "", false}));
  EXPECT_EQ(store_.writes(), 0);
}

// The issue's repro, at the handler: made-up methods and paths once added a series each.
TEST_F(ApiMeteringTest, MadeUpMethodsAndPathsShareTheOtherSeries) {
  const size_t before = metrics_.Render().size();
  for (int i = 0; i < 2000; ++i) {
    std::string method = fmt::format("M{:05}X", i);
    std::string target = fmt::format("/v1/vms/x{}/y{}", i, i);
    HttpRequest request{method, target, {}, "", /*trusted=*/false};
    if (i % 2 == 0) {
      EXPECT_TRUE(metered_.Admit(request));  // refused on its headers, counted there
    } else {
      EXPECT_EQ(metered_.Handle(request).status, 401);
    }
    metered_.Handle(HttpRequest{method, target, {}, "", /*trusted=*/true});  // 404
  }
  std::string text = metrics_.Render();
  EXPECT_LT(text.size(), before + 10000) << "from " << before << " bytes";
  EXPECT_NE(text.find("hearth_api_requests_total{method=\"other\",route=\"other\",code=\"401\"} "
                      "2000"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("M00001X"), std::string::npos);
  EXPECT_EQ(text.find("/y1"), std::string::npos);
}

}  // namespace
}  // namespace hearth::api

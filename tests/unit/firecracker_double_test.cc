// Tests of the Firecracker test double itself (tests/firecracker_double/): it must accept what
// Firecracker v1.16.1 accepts and refuse what it refuses, or the Firecracker driver's tests prove
// nothing. Runs the real double binary on a socket in a temp dir; nothing here needs root.
#include "support/firecracker_double.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "firecracker_double/swagger_spec.h"
#include "http/client.h"
#include "image/guest_init.h"
#include "support/temp_dir.h"

namespace hearth::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

std::string ReadAll(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void Touch(const std::filesystem::path& p, const std::string& content = "x") {
  std::ofstream(p) << content;
}

// Waits until `pred` holds or `limit` passes, checking it again whenever a file in `dir` is
// written (inotify), so that nothing polls.
template <class Pred>
bool Eventually(const std::filesystem::path& dir, Pred pred,
                std::chrono::milliseconds limit = std::chrono::seconds(5)) {
  int events = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (events < 0 ||
      inotify_add_watch(events, dir.c_str(), IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
    ADD_FAILURE() << "inotify on " << dir << ": " << std::strerror(errno);
    if (events >= 0) close(events);
    return pred();
  }
  const auto deadline = std::chrono::steady_clock::now() + limit;
  bool held = pred();
  for (auto now = std::chrono::steady_clock::now(); !held && now < deadline;
       now = std::chrono::steady_clock::now()) {
    pollfd p{events, POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
    if (poll(&p, 1, static_cast<int>(left.count()) + 1) > 0) {
      char buf[4096];
      while (read(events, buf, sizeof(buf)) > 0) {
      }
    }
    held = pred();
  }
  close(events);
  return held;
}

class FirecrackerDoubleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Touch(dir_ / "vmlinux");
    Touch(dir_ / "rootfs.ext4");
    Touch(dir_ / "fc.log", "");
    Touch(dir_ / "metrics.json", "");
  }

  // Starts the double with --api-sock <dir>/fc.sock plus `extra` args and `env`.
  FcDoubleProcess& Start(std::vector<std::string> extra = {},
                         std::map<std::string, std::string> env = {}) {
    std::vector<std::string> argv = {FirecrackerDoublePaths().firecracker.string(), "--api-sock",
                                     sock().string(), "--id", "vm-1"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    env.emplace("FC_DOUBLE_JOURNAL", (dir_ / "journal").string());
    auto p = FcDoubleProcess::Start(argv, env, out());
    EXPECT_TRUE(p.has_value());
    procs_.push_back(std::make_unique<FcDoubleProcess>(std::move(*p)));
    auto up = procs_.back()->WaitForSocket(sock());
    EXPECT_TRUE(up.has_value()) << up.error().message << "\n" << ReadAll(out());
    return *procs_.back();
  }

  FcResponse Call(const std::string& method, const std::string& path, const json& body = nullptr) {
    auto r = FcApiCall(sock(), method, path, body.is_null() ? std::string() : body.dump());
    EXPECT_TRUE(r.has_value()) << method << " " << path;
    return r ? *r : FcResponse{};
  }
  // Expects 204 for a PUT/PATCH.
  void Ok(const std::string& method, const std::string& path, const json& body) {
    auto r = Call(method, path, body);
    EXPECT_EQ(r.status, 204) << method << " " << path << ": " << r.body;
  }
  // Expects 400 with a fault_message containing `text`.
  void Refused(const std::string& method, const std::string& path, const json& body,
               const std::string& text) {
    auto r = Call(method, path, body);
    EXPECT_EQ(r.status, 400) << method << " " << path << ": " << r.body;
    EXPECT_TRUE(r.headers.contains("content-length"));
    auto j = json::parse(r.body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("fault_message")) << r.body;
    EXPECT_NE(j["fault_message"].get<std::string>().find(text), std::string::npos)
        << method << " " << path << ": " << r.body;
  }
  std::string State() { return json::parse(Call("GET", "/").body).value("state", ""); }

  void Configure(int vcpus = 2, int mem_mib = 8) {
    Ok("PUT", "/logger", {{"log_path", (dir_ / "fc.log").string()}, {"level", "Info"}});
    Ok("PUT", "/metrics", {{"metrics_path", (dir_ / "metrics.json").string()}});
    Ok("PUT", "/boot-source",
       {{"kernel_image_path", (dir_ / "vmlinux").string()}, {"boot_args", "console=ttyS0"}});
    Ok("PUT", "/machine-config", {{"vcpu_count", vcpus}, {"mem_size_mib", mem_mib}});
    Ok("PUT", "/drives/rootfs",
       {{"drive_id", "rootfs"},
        {"path_on_host", (dir_ / "rootfs.ext4").string()},
        {"is_root_device", true},
        {"is_read_only", false}});
  }
  void Boot() {
    Configure();
    Ok("PUT", "/actions", {{"action_type", "InstanceStart"}});
  }

  std::filesystem::path sock() const { return dir_ / "fc.sock"; }
  std::filesystem::path out() const { return dir_ / "stdout"; }

  TempDir dir_;
  std::vector<std::unique_ptr<FcDoubleProcess>> procs_;
};

TEST(FirecrackerDoubleCli, VersionPrintsWhatFirecrackerPrints) {
  TempDir dir;
  auto p = FcDoubleProcess::Start({FirecrackerDoublePaths().firecracker.string(), "--version"}, {},
                                  dir / "out");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->Wait().value_or(-1), 0);
  EXPECT_EQ(ReadAll(dir / "out"), "Firecracker v1.16.1\n\n");
}

TEST(FirecrackerDoubleCli, UnknownArgumentExits153) {
  TempDir dir;
  auto p = FcDoubleProcess::Start({FirecrackerDoublePaths().firecracker.string(), "--api-sock",
                                   (dir / "s").string(), "--bogus"},
                                  {}, dir / "out");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->Wait().value_or(-1), 153);
  EXPECT_NE(ReadAll(dir / "out").find("Arguments parsing error"), std::string::npos);
}

TEST(FirecrackerDoubleCli, ExistingSocketPathIsNotReplaced) {
  TempDir dir;
  Touch(dir / "s", "keep");
  auto p = FcDoubleProcess::Start(
      {FirecrackerDoublePaths().firecracker.string(), "--api-sock", (dir / "s").string()}, {},
      dir / "out");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->Wait().value_or(-1), 1);
  EXPECT_EQ(ReadAll(dir / "s"), "keep");
  EXPECT_NE(ReadAll(dir / "out").find("Address in use"), std::string::npos);
}

TEST_F(FirecrackerDoubleTest, BootSequenceSucceedsAndTheGuestReportsReady) {
  auto& p = Start();
  EXPECT_EQ(State(), "Not started");
  Boot();
  EXPECT_EQ(State(), "Running");
  EXPECT_TRUE(Eventually(dir_.path(), [&] {
    return ReadAll(out()).find(image::kGuestReadyMarker) != std::string::npos;
  })) << ReadAll(out());
  // vCPU threads are named as Firecracker names them.
  std::set<std::string> comms;
  for (const auto& t :
       std::filesystem::directory_iterator("/proc/" + std::to_string(p.pid()) + "/task")) {
    std::string comm = ReadAll(t.path() / "comm");
    if (!comm.empty() && comm.back() == '\n') comm.pop_back();
    comms.insert(comm);
  }
  EXPECT_TRUE(comms.contains("fc_vcpu 0"));
  EXPECT_TRUE(comms.contains("fc_vcpu 1"));
  EXPECT_FALSE(comms.contains("fc_vcpu 2"));

  auto version = json::parse(Call("GET", "/version").body);
  EXPECT_EQ(version["firecracker_version"], "1.16.1");
  auto mc = json::parse(Call("GET", "/machine-config").body);
  EXPECT_EQ(mc["vcpu_count"], 2);
  auto config = json::parse(Call("GET", "/vm/config").body);
  EXPECT_EQ(config["drives"][0]["drive_id"], "rootfs");
  auto journal = ReadFcJournal(dir_ / "journal");
  ASSERT_GE(journal.size(), 6u);
  EXPECT_EQ(journal[0].Text(), "GET / 200");
  EXPECT_EQ(journal[1].Text(), "PUT /logger 204");
  EXPECT_EQ(journal[6].Text(), "PUT /actions 204");
  EXPECT_NE(ReadAll(dir_ / "fc.log").find("/boot-source"), std::string::npos);
}

TEST_F(FirecrackerDoubleTest, RequestsAreCheckedAgainstTheSpec) {
  Start();
  Refused("PUT", "/boot-source", json::object(), "missing field `kernel_image_path`");
  Refused("PUT", "/machine-config", {{"vcpu_count", "2"}, {"mem_size_mib", 128}},
          "invalid type: string \"2\", expected integer");
  Refused("PUT", "/machine-config", {{"vcpu_count", 0}, {"mem_size_mib", 128}}, "at least 1");
  Refused("PUT", "/machine-config", {{"vcpu_count", 33}, {"mem_size_mib", 128}}, "at most 32");
  Refused("PUT", "/boot-source", {{"kernel_image_path", "/k"}, {"kernel_args", "x"}},
          "unknown field `kernel_args`");
  Refused("PUT", "/drives/rootfs",
          {{"drive_id", "rootfs"},
           {"is_root_device", true},
           {"path_on_host", "/x"},
           {"rate_limiter", {{"bandwidth", {{"size", 1}}}}}},
          "rate_limiter.bandwidth: missing field `refill_time`");
  Refused("PUT", "/drives/rootfs", {{"drive_id", "other"}, {"is_root_device", true}},
          "The id from the path does not match the id from the body!");
  Refused("PUT", "/actions", {{"action_type", "Reboot"}}, "unknown variant `Reboot`");
  Refused("PUT", "/vm", {{"state", "Paused"}}, "Invalid request method and/or path: PUT vm.");
  Refused("GET", "/nope", nullptr, "Invalid request method and/or path: GET nope.");
  Refused("PUT", "/drives/bad-id", {{"drive_id", "bad-id"}, {"is_root_device", true}},
          "alphanumeric characters and underscores");
  auto bad_json = FcApiCall(sock(), "PUT", "/boot-source", "{not json");
  ASSERT_TRUE(bad_json.has_value());
  EXPECT_EQ(bad_json->status, 400);
  std::string big = json{{"kernel_image_path", std::string(60000, 'k')}}.dump();
  auto too_big = FcApiCall(sock(), "PUT", "/boot-source", big);
  ASSERT_TRUE(too_big.has_value());
  EXPECT_EQ(too_big->status, 400);
  EXPECT_NE(too_big->body.find("51200"), std::string::npos) << too_big->body;
  // A drive file that does not exist is refused when configured, as Firecracker opens it then.
  Refused("PUT", "/drives/data",
          {{"drive_id", "data"}, {"is_root_device", false}, {"path_on_host", "/nonexistent"}},
          "No such file or directory");
  // A partial PATCH of the machine config is accepted (Firecracker's MachineConfigUpdate).
  Ok("PATCH", "/machine-config", {{"mem_size_mib", 256}});
  EXPECT_EQ(json::parse(Call("GET", "/machine-config").body)["mem_size_mib"], 256);
}

TEST_F(FirecrackerDoubleTest, StateRulesAreEnforced) {
  Start();
  Refused("PATCH", "/vm", {{"state", "Paused"}}, "not supported before starting the microVM");
  Refused("PUT", "/actions", {{"action_type", "InstanceStart"}},
          "Cannot start microvm without kernel configuration");
  Boot();
  Refused("PUT", "/boot-source", {{"kernel_image_path", (dir_ / "vmlinux").string()}},
          "not supported after starting the microVM");
  Refused("PUT", "/logger", {{"log_path", (dir_ / "fc.log").string()}},
          "not supported after starting the microVM");
  Refused("PUT", "/actions", {{"action_type", "InstanceStart"}}, "not supported after starting");
  Refused("PUT", "/snapshot/create",
          {{"snapshot_path", (dir_ / "snap").string()}, {"mem_file_path", (dir_ / "mem").string()}},
          "not paused");
  Refused("PUT", "/snapshot/load",
          {{"snapshot_path", (dir_ / "snap").string()},
           {"mem_backend", {{"backend_type", "File"}, {"backend_path", (dir_ / "mem").string()}}}},
          "not supported after starting");
}

TEST_F(FirecrackerDoubleTest, LoggerAndMetricsAreSettableOnce) {
  Start();
  Ok("PUT", "/logger", {{"log_path", (dir_ / "fc.log").string()}});
  Refused("PUT", "/logger", {{"log_path", (dir_ / "fc.log").string()}}, "Reinitialization");
  Refused("PUT", "/metrics", {{"metrics_path", (dir_ / "absent").string()}},
          "No such file or directory");
  Ok("PUT", "/metrics", {{"metrics_path", (dir_ / "metrics.json").string()}});
  Refused("PUT", "/metrics", {{"metrics_path", (dir_ / "metrics.json").string()}},
          "Reinitialization");
}

TEST_F(FirecrackerDoubleTest, SnapshotRoundTripInAFreshProcess) {
  Start();
  Boot();
  Ok("PATCH", "/vm", {{"state", "Paused"}});
  EXPECT_EQ(State(), "Paused");
  Ok("PUT", "/snapshot/create",
     {{"snapshot_path", (dir_ / "snap").string()}, {"mem_file_path", (dir_ / "mem").string()}});
  EXPECT_EQ(std::filesystem::file_size(dir_ / "mem"), 8u << 20);
  auto snap = json::parse(ReadAll(dir_ / "snap"));
  EXPECT_EQ(snap["format_major"], 10);
  procs_.clear();
  std::filesystem::remove(sock());
  std::filesystem::remove(out());

  Start();
  Ok("PUT", "/logger", {{"log_path", (dir_ / "fc.log").string()}});
  Ok("PUT", "/snapshot/load",
     {{"snapshot_path", (dir_ / "snap").string()},
      {"mem_backend", {{"backend_type", "File"}, {"backend_path", (dir_ / "mem").string()}}},
      {"resume_vm", true}});
  EXPECT_EQ(State(), "Running");
  EXPECT_EQ(json::parse(Call("GET", "/machine-config").body)["vcpu_count"], 2);
  // Longer than the double's boot: a boot would have written its marker by then.
  EXPECT_FALSE(Eventually(
      dir_.path(),
      [&] { return ReadAll(out()).find(image::kGuestReadyMarker) != std::string::npos; }, 150ms))
      << "a resumed guest does not boot again";
}

TEST_F(FirecrackerDoubleTest, LoadAfterBootSpecificConfigurationIsRefused) {
  auto& p = Start();
  Ok("PUT", "/boot-source", {{"kernel_image_path", (dir_ / "vmlinux").string()}});
  Refused("PUT", "/snapshot/load",
          {{"snapshot_path", (dir_ / "snap").string()}, {"mem_file_path", (dir_ / "mem").string()}},
          "Loading a microVM snapshot not allowed after configuring boot-specific resources.");
  EXPECT_TRUE(p.Running());
}

TEST_F(FirecrackerDoubleTest, FailedLoadEndsTheProcess) {
  auto& p = Start();
  Refused(
      "PUT", "/snapshot/load",
      {{"snapshot_path", (dir_ / "absent").string()}, {"mem_file_path", (dir_ / "mem").string()}},
      "No such file or directory");
  EXPECT_EQ(p.Wait().value_or(-1), 1);
  EXPECT_EQ(ReadFcJournal(dir_ / "journal").back().Text(), "PUT /snapshot/load 400");
}

TEST_F(FirecrackerDoubleTest, InjectedLoadFailureEndsTheProcess) {
  auto& p = Start({}, {{"FC_DOUBLE_FAIL", "PUT /snapshot/load, PUT /drives/{drive_id}"}});
  Refused("PUT", "/drives/rootfs",
          {{"drive_id", "rootfs"},
           {"is_root_device", true},
           {"path_on_host", (dir_ / "rootfs.ext4").string()}},
          "FC_DOUBLE_FAIL");
  Refused("PUT", "/snapshot/load",
          {{"snapshot_path", (dir_ / "snap").string()}, {"mem_file_path", (dir_ / "mem").string()}},
          "FC_DOUBLE_FAIL");
  EXPECT_EQ(p.Wait().value_or(-1), 1);
}

TEST_F(FirecrackerDoubleTest, MetricsLinesAreDeltas) {
  Start({}, {{"FC_DOUBLE_METRICS_INTERVAL_MS", "100000"}});
  Configure();
  // The line written when metrics were configured: nothing ran yet.
  auto lines = [&] {
    std::vector<json> out;
    std::istringstream in(ReadAll(dir_ / "metrics.json"));
    for (std::string l; std::getline(in, l);) out.push_back(json::parse(l));
    return out;
  };
  ASSERT_EQ(lines().size(), 1u);
  EXPECT_EQ(lines()[0]["block"]["read_bytes"], 0);
  Ok("PUT", "/actions", {{"action_type", "InstanceStart"}});
  Ok("PUT", "/actions", {{"action_type", "FlushMetrics"}});
  Ok("PUT", "/actions", {{"action_type", "FlushMetrics"}});
  auto l = lines();
  ASSERT_EQ(l.size(), 3u);
  for (size_t i = 1; i < 3; ++i) {
    EXPECT_EQ(l[i]["block_rootfs"]["read_bytes"], 4096) << l[i].dump();
    EXPECT_EQ(l[i]["block_rootfs"]["write_count"], 2);
    EXPECT_EQ(l[i]["block"]["write_bytes"], 8192);
    EXPECT_GT(l[i]["utc_timestamp_ms"].get<int64_t>(), 0);
  }
  Ok("PATCH", "/vm", {{"state", "Paused"}});
  Ok("PUT", "/actions", {{"action_type", "FlushMetrics"}});
  l = lines();
  ASSERT_EQ(l.size(), 4u);
  EXPECT_EQ(l[3]["block_rootfs"]["read_bytes"], 0);
  EXPECT_GT(l[3]["latencies_us"]["pause_vm"].get<int64_t>(), 0);
}

TEST_F(FirecrackerDoubleTest, MetricsAreWrittenPeriodically) {
  Start({"--metrics-path", (dir_ / "metrics.json").string()},
        {{"FC_DOUBLE_METRICS_INTERVAL_MS", "50"}});
  EXPECT_TRUE(Eventually(dir_.path(), [&] {
    std::istringstream in(ReadAll(dir_ / "metrics.json"));
    int n = 0;
    for (std::string l; std::getline(in, l);) ++n;
    return n >= 3;
  }));
}

TEST_F(FirecrackerDoubleTest, CtrlAltDelEndsTheProcess) {
  auto& p = Start();
  Refused("PUT", "/actions", {{"action_type", "SendCtrlAltDel"}}, "before starting");
  Boot();
  Ok("PUT", "/actions", {{"action_type", "SendCtrlAltDel"}});
  EXPECT_EQ(p.Wait().value_or(-1), 0);
}

TEST_F(FirecrackerDoubleTest, KeepAliveConnectionsServeManyRequests) {
  Start({}, {{"FC_DOUBLE_DELAY_MS", "1"}});
  http::Client client(http::ClientOptions{.unix_socket = sock().string()});
  for (int i = 0; i < 3; ++i) {
    auto r = client.Request("GET", "/");
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, 200);
  }
  auto r = client.Request("PUT", "/boot-source",
                          json{{"kernel_image_path", (dir_ / "vmlinux").string()}}.dump());
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, 204);
  EXPECT_EQ(ReadFcJournal(dir_ / "journal").size(), 4u);
}

// A body that satisfies `schema`: required fields only, with the smallest allowed values; a
// string field named "*path*" is a path under `dir`.
json MinimalBody(const json& doc, const json& schema_node, const std::filesystem::path& dir,
                 const std::string& name = "") {
  const json* schema = &schema_node;
  while (schema->contains("$ref")) {
    schema = &doc.at(json::json_pointer((*schema)["$ref"].get<std::string>().substr(1)));
  }
  if (schema->contains("enum")) return (*schema)["enum"][0];
  const std::string type = schema->value("type", "object");
  if (type == "string")
    return name.find("path") != std::string::npos ? (dir / name).string() : "x1";
  if (type == "integer") return std::max<int64_t>(schema->value("minimum", int64_t{1}), 1);
  if (type == "boolean") return false;
  if (type == "array") return json::array();
  json out = json::object();
  for (const auto& r : schema->value("required", json::array())) {
    const std::string field = r.get<std::string>();
    out[field] = MinimalBody(doc, (*schema)["properties"][field], dir, field);
  }
  return out;
}

// The double is checked against the spec, not a hand-copied list: every operation the spec
// declares, sent with a body that passes the schema, must reach the double's state machine. A
// refusal for a state reason is fine; "unknown path" or "not emulated" is not. Operations refused
// before boot are sent again to a booted VM.
TEST_F(FirecrackerDoubleTest, EveryOperationOfTheSpecIsKnown) {
  auto spec = fcdouble::SwaggerSpec::Parse(ReadAll(FirecrackerDoublePaths().spec));
  ASSERT_TRUE(spec.has_value());
  EXPECT_EQ(ReadAll(FirecrackerDoublePaths().spec), fcdouble::EmbeddedSpecYaml())
      << "the double embeds a different spec than third_party/firecracker";
  auto ops = spec->Operations();
  ASSERT_GE(ops.size(), 30u);
  auto send = [&](const std::string& method, const std::string& tmpl) {
    auto route = spec->Match(method, tmpl);
    EXPECT_TRUE(route.has_value()) << method << " " << tmpl;
    std::string path = tmpl;
    for (size_t b; (b = path.find('{')) != std::string::npos;) {
      path.replace(b, path.find('}', b) - b + 1, "x1");
    }
    json body = nullptr;
    if (route && route->body_schema != nullptr) {
      body = MinimalBody(spec->document(), *route->body_schema, dir_.path());
    }
    return Call(method, path, body);
  };
  auto reached = [](const FcResponse& r) {
    return r.body.find("Invalid request method and/or path") == std::string::npos &&
           r.body.find("does not emulate") == std::string::npos &&
           r.body.find("deserializing") == std::string::npos;
  };
  Start();
  std::vector<std::pair<std::string, std::string>> post_boot;
  int reached_pre_boot = 0;
  for (const auto& [method, tmpl] : ops) {
    if (method == "PUT" && tmpl == "/snapshot/load") continue;  // a failed load ends the process
    if (method == "PUT" && tmpl == "/actions") continue;        // InstanceStart: below
    auto r = send(method, tmpl);
    EXPECT_TRUE(reached(r)) << method << " " << tmpl << ": " << r.body;
    if (r.body.find("before starting the microVM") != std::string::npos) {
      post_boot.emplace_back(method, tmpl);
    } else {
      ++reached_pre_boot;
    }
  }
  EXPECT_GE(reached_pre_boot, 20);
  procs_.clear();
  std::filesystem::remove(sock());
  Start();
  Boot();
  ASSERT_GE(post_boot.size(), 5u);
  for (const auto& [method, tmpl] : post_boot) {
    auto r = send(method, tmpl);
    EXPECT_TRUE(reached(r)) << method << " " << tmpl << ": " << r.body;
    EXPECT_EQ(r.body.find("before starting the microVM"), std::string::npos) << r.body;
  }
}

TEST_F(FirecrackerDoubleTest, JailerLaysOutTheJailAndPathsResolveInsideIt) {
  const auto base = dir_ / "jail";
  std::vector<std::string> argv = {FirecrackerDoublePaths().jailer.string(),
                                   "--id",
                                   "vm-7",
                                   "--exec-file",
                                   FirecrackerDoublePaths().firecracker.string(),
                                   "--uid",
                                   std::to_string(::getuid()),
                                   "--gid",
                                   std::to_string(::getgid()),
                                   "--chroot-base-dir",
                                   base.string(),
                                   "--cgroup-version",
                                   "2",
                                   "--",
                                   "--api-sock",
                                   "/run/api.sock"};
  auto p = FcDoubleProcess::Start(argv, {}, out());
  ASSERT_TRUE(p.has_value());
  const auto root = base / "firecracker" / "vm-7" / "root";
  ASSERT_TRUE(p->WaitForSocket(root / "run" / "api.sock").has_value()) << ReadAll(out());
  EXPECT_TRUE(std::filesystem::exists(root / "firecracker"));
  EXPECT_EQ(ReadAll(root / "firecracker.pid"), std::to_string(p->pid()));
  auto info = FcApiCall(root / "run" / "api.sock", "GET", "/");
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(json::parse(info->body)["id"], "vm-7");
  // The kernel is found inside the jail, and a host path outside it does not resolve.
  Touch(root / "vmlinux");
  auto outside = FcApiCall(root / "run" / "api.sock", "PUT", "/boot-source",
                           json{{"kernel_image_path", (dir_ / "vmlinux").string()}}.dump());
  ASSERT_TRUE(outside.has_value());
  EXPECT_EQ(outside->status, 400) << outside->body;
  auto inside = FcApiCall(root / "run" / "api.sock", "PUT", "/boot-source",
                          json{{"kernel_image_path", "/vmlinux"}}.dump());
  ASSERT_TRUE(inside.has_value());
  EXPECT_EQ(inside->status, 204) << inside->body;
}

TEST(FirecrackerDoubleJailer, RefusesBadArguments) {
  TempDir dir;
  const std::string fc = FirecrackerDoublePaths().firecracker.string();
  const std::string base = (dir / "jail").string();
  std::vector<std::vector<std::string>> bad = {
      {"--id", "bad_id", "--exec-file", fc, "--uid", "0", "--gid", "0"},
      {"--id", std::string(65, 'a'), "--exec-file", fc, "--uid", "0", "--gid", "0"},
      {"--id", "ok", "--exec-file", fc, "--uid", "x", "--gid", "0"},
      {"--id", "ok", "--exec-file", fc, "--gid", "0"},
      {"--id", "ok", "--exec-file", "/bin/true", "--uid", "0", "--gid", "0"},
      {"--id", "ok", "--exec-file", fc, "--uid", "0", "--gid", "0", "--cgroup", "novalue"},
      {"--id", "ok", "--exec-file", fc, "--uid", "0", "--gid", "0", "--cgroup-version", "3"},
  };
  for (auto args : bad) {
    args.insert(args.begin(), FirecrackerDoublePaths().jailer.string());
    args.insert(args.end(), {"--chroot-base-dir", base});
    auto p = FcDoubleProcess::Start(args, {}, dir / "out");
    ASSERT_TRUE(p.has_value());
    EXPECT_EQ(p->Wait().value_or(-1), 1) << args[2];
  }
  EXPECT_NE(ReadAll(dir / "out").find("Jailer error"), std::string::npos);
}

}  // namespace
}  // namespace hearth::testing

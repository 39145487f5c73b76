// Every request hearthd refuses leaves its data directory byte for byte as it was: the SQLite
// database, its WAL and every other file (only the WAL index, state.db-shm, which readers update,
// is left out). The table covers each validation rule reachable through the API (names, sizes,
// files, disk and port conflicts, timers, unknown fields and wrong types, stale or malformed
// versions, bad queries, state rules, admission, authentication), and checks that
// each answer is the documented 4xx with a JSON error naming the field. Requests that succeed
// without changing anything (reads, edits that change nothing) must not write either; a control
// shows that a real edit does change the files, so that the comparison can fail.
//
// What this catches: a rejected create or edit that is written (wholly or in part) before or
// despite validation, an event logged for a refused request, a bad query parameter that is
// ignored (DELETE ?force=maybe deleting), a request that bypasses authentication, a read or no-op
// edit that writes (bumping the version or touching updated_at), and a wrong status or field.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "api/auth.h"
#include "http/client.h"
#include "model/host.h"
#include "support/daemon.h"
#include "support/temp_dir.h"

namespace hearth::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Headers = std::vector<std::pair<std::string, std::string>>;

// The files of a data directory: relative path -> what it is (a digest of its bytes for a regular
// file). state.db-shm is left out: it is SQLite's shared-memory index, which read transactions
// update (read marks) without changing the database.
std::map<std::string, std::string> Snapshot(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    std::string rel = fs::relative(entry.path(), dir).string();
    if (rel == "state.db-shm") continue;
    if (entry.is_symlink()) {
      out[rel] = "symlink to " + fs::read_symlink(entry.path()).string();
    } else if (entry.is_regular_file()) {
      std::ifstream in(entry.path(), std::ios::binary);
      std::stringstream bytes;
      bytes << in.rdbuf();
      out[rel] =
          fmt::format("{} bytes, sha256 {}", bytes.str().size(), api::Sha256Hex(bytes.str()));
    } else if (entry.is_directory()) {
      out[rel] = "directory";
    } else {
      out[rel] = "special file";
    }
  }
  return out;
}

// The paths that differ between two snapshots, with both sides.
std::string Diff(const std::map<std::string, std::string>& a,
                 const std::map<std::string, std::string>& b) {
  std::string out;
  auto add = [&](const std::string& path, const std::string& x, const std::string& y) {
    out +=
        fmt::format("\n  {}: {} -> {}", path, x.empty() ? "(none)" : x, y.empty() ? "(none)" : y);
  };
  for (const auto& [path, what] : a) {
    auto it = b.find(path);
    if (it == b.end()) {
      add(path, what, "");
    } else if (it->second != what) {
      add(path, what, it->second);
    }
  }
  for (const auto& [path, what] : b) {
    if (!a.count(path)) add(path, "", what);
  }
  return out;
}

enum class Via { kUnix, kTcp, kTcpNoToken };

struct Rejected {
  std::string what;
  std::string method;
  std::string target;
  std::string body;
  int status;
  std::string code;
  std::string field = {};  // "" when the error names none
  Via via = Via::kUnix;
  Headers headers = {};
};

class StoreUnchangedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto host = ReadLinuxHostInfo();
    ASSERT_TRUE(host) << host.error().message;
    host_ = *host;

    // The VM files. Being root, the test cannot make an unreadable file, so that rule is left to
    // the validator's unit tests.
    kernel_ = (dir_ / "vmlinux").string();
    fs::copy_file("/bin/true", kernel_);
    Write(dir_ / "not-elf", "#!/bin/sh\necho this is not a kernel\n");
    Write(dir_ / "initrd.img", std::string(4096, 'i'));
    Write(dir_ / "alpha.img", std::string(4096, 'a'));
    Write(dir_ / "gamma.img", std::string(4096, 'g'));
    fs::create_symlink(dir_ / "alpha.img", dir_ / "alpha-link.img");
    fs::create_directory(dir_ / "a-directory");

    // Admission allows about 128 MiB of running VMs: starting the 256 MiB alpha is refused for
    // memory.
    std::string ratio = fmt::format("{:.9f}", 128.0 / static_cast<double>(host_.memory.value));
    data_ = dir_.path() / "data";
    // Metering writes on its own every interval (and once a minute per quiet VM): not within a
    // test that compares the files before and after a request.
    auto daemon =
        DaemonProcess::Start(data_, {"--memory-ratio", ratio, "--metering-interval", "1h"});
    ASSERT_TRUE(daemon) << daemon.error().message;
    daemon_ = std::move(*daemon);
    unix_ = std::make_unique<http::Client>(daemon_->UnixClient());
    tcp_ = std::make_unique<http::Client>(daemon_->TcpClient());
    tcp_no_token_ = std::make_unique<http::Client>(daemon_->TcpClient(/*with_token=*/false));

    CreateVm({{"name", "alpha"},
              {"kernel", kernel_},
              {"memory_mib", 256},
              {"rootfs", Path("alpha.img")},
              {"publish", {{{"host_port", 8080}, {"guest_port", 80}}}}});
    CreateVm({{"name", "beta"}, {"kernel", kernel_}, {"memory_mib", 64}});
    CreateVm({{"name", "gamma"},
              {"kernel", kernel_},
              {"memory_mib", 64},
              {"rootfs", Path("gamma.img")},
              {"rootfs_readonly", true},
              {"timers", {{"stop_at", "2099-01-01T00:00:00Z"}}}});
  }

  static void Write(const fs::path& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary) << bytes;
  }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  void CreateVm(const json& body) {
    auto r = unix_->Request("POST", "/v1/vms", body.dump());
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_EQ(r->status, 201) << r->body;
  }

  // A create body: a valid VM named "fresh", with `changes` applied (a null value removes the key).
  json Create(const json& changes) const {
    json body = {{"name", "fresh"}, {"kernel", kernel_}};
    for (const auto& [key, value] : changes.items()) {
      if (value.is_null()) {
        body.erase(key);
      } else {
        body[key] = value;
      }
    }
    return body;
  }

  http::Client& ClientFor(Via via) {
    switch (via) {
      case Via::kTcp:
        return *tcp_;
      case Via::kTcpNoToken:
        return *tcp_no_token_;
      case Via::kUnix:
        break;
    }
    return *unix_;
  }

  std::string VmList() {
    auto r = unix_->Request("GET", "/v1/vms");
    EXPECT_TRUE(r) << r.error().message;
    return r ? r->body : "";
  }

  // Sends the request and checks its answer, and that neither the files nor the VMs changed.
  void Check(const Rejected& c) {
    SCOPED_TRACE(fmt::format("{}: {} {} {}", c.what, c.method, c.target, c.body.substr(0, 200)));
    auto files_before = Snapshot(data_);
    std::string vms_before = VmList();
    auto r = ClientFor(c.via).Request(c.method, c.target, c.body, c.headers);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->status, c.status) << r->body;
    json body = json::parse(r->body, nullptr, /*allow_exceptions=*/false);
    if (body.is_object() && body["error"].is_object()) {
      EXPECT_EQ(body["error"].value("code", ""), c.code) << r->body;
      EXPECT_EQ(body["error"].value("field", ""), c.field) << r->body;
      EXPECT_FALSE(body["error"].value("message", "").empty()) << r->body;
    } else {
      ADD_FAILURE() << "not a JSON error: " << r->body;
    }
    auto files_after = Snapshot(data_);
    EXPECT_TRUE(files_after == files_before)
        << "the refused request changed the data directory:" << Diff(files_before, files_after);
    EXPECT_EQ(VmList(), vms_before) << "the refused request changed the VMs";
    ++checked_;
  }

  TempDir dir_;
  HostInfo host_;
  std::string kernel_;
  fs::path data_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<http::Client> unix_, tcp_, tcp_no_token_;
  int checked_ = 0;
};

TEST_F(StoreUnchangedTest, RefusedCreatesLeaveTheStoreUnchanged) {
  const int max_vcpus = std::min(32, host_.cpus);
  const int64_t too_much_memory = host_.memory.value + 2 - host_.memory.value % 2;
  const std::string bad = "invalid_argument";
  auto create = [&](std::string what, const json& changes, std::string field,
                    Via via = Via::kUnix) {
    Rejected r{std::move(what), "POST", "/v1/vms", Create(changes).dump(), 400, bad};
    r.field = std::move(field);
    r.via = via;
    return r;
  };
  auto raw = [&](std::string what, std::string body, std::string field) {
    return Rejected{std::move(what), "POST", "/v1/vms", std::move(body), 400, bad,
                    std::move(field)};
  };
  auto port = [](int host, int guest) {
    return json::array({{{"host_port", host}, {"guest_port", guest}}});
  };
  const std::vector<Rejected> cases = {
      // Names.
      create("uppercase name", {{"name", "Fresh"}}, "name"),
      create("empty name", {{"name", ""}}, "name"),
      create("64-character name", {{"name", std::string(64, 'a')}}, "name"),
      create("name starting with a digit", {{"name", "9lives"}}, "name"),
      create("name starting with '-'", {{"name", "-fresh"}}, "name"),
      create("name ending with '-'", {{"name", "fresh-"}}, "name"),
      create("underscore in name", {{"name", "fre_sh"}}, "name"),
      create("dot in name", {{"name", "fre.sh"}}, "name"),
      create("slash in name", {{"name", "fre/sh"}}, "name"),
      create("missing name", {{"name", nullptr}}, "name"),
      create("name not a string", {{"name", 7}}, "name"),
      Rejected{"duplicate name", "POST", "/v1/vms", Create({{"name", "alpha"}}).dump(), 409,
               "already_exists", "name"},
      Rejected{"duplicate name over TCP", "POST", "/v1/vms", Create({{"name", "beta"}}).dump(), 409,
               "already_exists", "name", Via::kTcp},
      // vCPUs and memory.
      create("0 vcpus", {{"vcpus", 0}}, "vcpus"),
      create("-1 vcpus", {{"vcpus", -1}}, "vcpus"),
      create("33 vcpus", {{"vcpus", 33}}, "vcpus"),
      create("more vcpus than the host", {{"vcpus", max_vcpus + 1}}, "vcpus"),
      create("vcpus beyond int", {{"vcpus", int64_t{1} << 31}}, "vcpus"),
      create("vcpus as a string", {{"vcpus", "2"}}, "vcpus"),
      create("vcpus as a fraction", {{"vcpus", 1.5}}, "vcpus"),
      create("63 MiB", {{"memory_mib", 63}}, "memory_mib"),
      create("0 MiB", {{"memory_mib", 0}}, "memory_mib"),
      create("negative memory", {{"memory_mib", -2}}, "memory_mib"),
      create("odd memory", {{"memory_mib", 65}}, "memory_mib"),
      create("more memory than the host", {{"memory_mib", too_much_memory}}, "memory_mib"),
      create("memory beyond int64", {{"memory_mib", UINT64_MAX}}, "memory_mib"),
      create("memory as a string", {{"memory_mib", "256M"}}, "memory_mib"),
      create("memory as a float", {{"memory_mib", 256.0}}, "memory_mib"),
      // Kernel, initrd, image.
      create("no kernel and no image", {{"kernel", nullptr}}, "kernel"),
      create("empty kernel", {{"kernel", ""}}, "kernel"),
      create("missing kernel", {{"kernel", Path("no-such-vmlinux")}}, "kernel"),
      create("relative kernel", {{"kernel", "vmlinux"}}, "kernel"),
      create("kernel is a directory", {{"kernel", Path("a-directory")}}, "kernel"),
      create("kernel is not ELF", {{"kernel", Path("not-elf")}}, "kernel"),
      create("kernel is a char device", {{"kernel", "/dev/null"}}, "kernel"),
      create("kernel not a string", {{"kernel", json::array({kernel_})}}, "kernel"),
      create("missing initrd", {{"initrd", Path("no-such-initrd")}}, "initrd"),
      create("relative initrd", {{"initrd", "initrd.img"}}, "initrd"),
      create("initrd is a directory", {{"initrd", Path("a-directory")}}, "initrd"),
      create("initrd is a char device", {{"initrd", "/dev/null"}}, "initrd"),
      create("unknown image", {{"image", "no-such-image"}}, "image"),
      create("invalid image name", {{"image", "../etc"}}, "image"),
      create("cmdline too long", {{"cmdline", std::string(2049, 'x')}}, "cmdline"),
      create("newline in cmdline", {{"cmdline", "console=ttyS0\ninit=/bin/sh"}}, "cmdline"),
      create("NUL in cmdline", {{"cmdline", std::string("a\0b", 3)}}, "cmdline"),
      create("label key with a space", {{"labels", {{"bad key", "v"}}}}, "labels.bad key"),
      create("label value too long", {{"labels", {{"env", std::string(64, 'v')}}}}, "labels.env"),
      create("label not a string", {{"labels", {{"env", 1}}}}, "labels.env"),
      // Root filesystem.
      create("missing rootfs", {{"rootfs", Path("no-such.img")}}, "rootfs"),
      create("relative rootfs", {{"rootfs", "alpha.img"}}, "rootfs"),
      create("rootfs is a char device", {{"rootfs", "/dev/null"}}, "rootfs"),
      create("rootfs is a directory", {{"rootfs", Path("a-directory")}}, "rootfs"),
      create("rootfs used read-write by alpha", {{"rootfs", Path("alpha.img")}}, "rootfs"),
      create("rootfs used by alpha, via a symlink", {{"rootfs", Path("alpha-link.img")}}, "rootfs"),
      create("read-only rootfs used read-write by alpha",
             {{"rootfs", Path("alpha.img")}, {"rootfs_readonly", true}}, "rootfs"),
      create("read-write rootfs used read-only by gamma", {{"rootfs", Path("gamma.img")}},
             "rootfs"),
      create("rootfs_readonly as a string", {{"rootfs_readonly", "yes"}}, "rootfs_readonly"),
      // Ports.
      create("host port 0", {{"publish", port(0, 80)}}, "publish[0].host_port"),
      create("host port 65536", {{"publish", port(65536, 80)}}, "publish[0].host_port"),
      create("host port -1", {{"publish", port(-1, 80)}}, "publish[0].host_port"),
      create("guest port 0", {{"publish", port(8081, 0)}}, "publish[0].guest_port"),
      create("guest port 65536", {{"publish", port(8081, 65536)}}, "publish[0].guest_port"),
      create("host port published by alpha", {{"publish", port(8080, 81)}}, "publish[0].host_port"),
      create("host port published by alpha, as a string", {{"publish", {"9000:90", "8080:81"}}},
             "publish[1].host_port"),
      create("host port published twice", {{"publish", {"9000:90", "9000:91/tcp"}}},
             "publish[1].host_port"),
      create("host port missing", {{"publish", {{{"guest_port", 80}}}}}, "publish[0].host_port"),
      create("guest port missing", {{"publish", {{{"host_port", 9000}}}}}, "publish[0].guest_port"),
      create("port as a string", {{"publish", {{{"host_port", "9000"}, {"guest_port", 80}}}}},
             "publish[0].host_port"),
      create("unknown protocol",
             {{"publish", {{{"host_port", 9000}, {"guest_port", 80}, {"protocol", "sctp"}}}}},
             "publish[0].protocol"),
      create("mapping without a colon", {{"publish", {"9000"}}}, "publish[0]"),
      create("mapping with a bad port", {{"publish", {"x:80"}}}, "publish[0]"),
      create("mapping with a bad protocol", {{"publish", {"9000:80/sctp"}}}, "publish[0]"),
      create("publish not an array", {{"publish", "9000:80"}}, "publish"),
      create("publish item a number", {{"publish", {9000}}}, "publish[0]"),
      create("wake port 0", {{"wake_ports", {"tcp:0"}}}, "wake_ports[0]"),
      create("wake port 65536", {{"wake_ports", {"udp:65536"}}}, "wake_ports[0]"),
      create("wake port twice", {{"wake_ports", {"tcp:80", "tcp:80"}}}, "wake_ports[1]"),
      create("wake port without protocol", {{"wake_ports", {"80"}}}, "wake_ports[0]"),
      create("wake port with unknown protocol", {{"wake_ports", {"http:80"}}}, "wake_ports[0]"),
      create("wake port a number", {{"wake_ports", {80}}}, "wake_ports[0]"),
      create("wake_ports not an array", {{"wake_ports", "tcp:80"}}, "wake_ports"),
      // Timers and policies.
      create("stop_after not a duration", {{"timers", {{"stop_after", "soon"}}}},
             "timers.stop_after"),
      create("stop_after 500ms", {{"timers", {{"stop_after", "500ms"}}}}, "timers.stop_after"),
      create("stop_after 0s", {{"timers", {{"stop_after", "0s"}}}}, "timers.stop_after"),
      create("stop_after negative", {{"timers", {{"stop_after", "-5s"}}}}, "timers.stop_after"),
      create("stop_after without unit", {{"timers", {{"stop_after", "10"}}}}, "timers.stop_after"),
      create("stop_after as a number", {{"timers", {{"stop_after", 30}}}}, "timers.stop_after"),
      create("idle_timeout 500ms", {{"timers", {{"idle_timeout", "500ms"}}}},
             "timers.idle_timeout"),
      create("idle_timeout 999ms", {{"timers", {{"idle_timeout", "999ms"}}}},
             "timers.idle_timeout"),
      create("idle_timeout unknown unit", {{"timers", {{"idle_timeout", "1x"}}}},
             "timers.idle_timeout"),
      create("stop_at in the past", {{"timers", {{"stop_at", "2000-01-01T00:00:00Z"}}}},
             "timers.stop_at"),
      create("stop_at not a time", {{"timers", {{"stop_at", "tomorrow"}}}}, "timers.stop_at"),
      create("stop_at month 13", {{"timers", {{"stop_at", "2099-13-01T00:00:00Z"}}}},
             "timers.stop_at"),
      create("stop_at February 30", {{"timers", {{"stop_at", "2099-02-30T00:00:00Z"}}}},
             "timers.stop_at"),
      create("stop_at without zone", {{"timers", {{"stop_at", "2099-01-01T00:00:00"}}}},
             "timers.stop_at"),
      create("stop_at as a number", {{"timers", {{"stop_at", 4102444800}}}}, "timers.stop_at"),
      create("unknown timer action", {{"timers", {{"on_timer", "pause"}}}}, "timers.on_timer"),
      create("timers not an object", {{"timers", "30s"}}, "timers"),
      create("unknown wake mode", {{"wake", "sometimes"}}, "wake"),
      create("wake as a boolean", {{"wake", true}}, "wake"),
      create("unknown restart policy", {{"restart", "maybe"}}, "restart"),
      // Unknown fields.
      create("unknown field", {{"colour", "red"}}, "colour"),
      create("id given", {{"id", "vm-0000000000000001"}}, "id"),
      create("state given", {{"state", "running"}}, "state"),
      create("version given", {{"version", 5}}, "version"),
      create("unknown timers field", {{"timers", {{"colour", 1}}}}, "timers.colour"),
      create("unknown publish field",
             {{"publish", {{{"host_port", 9000}, {"guest_port", 80}, {"colour", 1}}}}},
             "publish[0].colour"),
      // Bodies.
      raw("not JSON", R"({"name": "fresh", )", "body"),
      raw("empty body", "", "body"),
      raw("array body", "[]", "body"),
      raw("null body", "null", "body"),
      // The same rules over TCP.
      create("odd memory over TCP", {{"memory_mib", 65}}, "memory_mib", Via::kTcp),
      create("rootfs conflict over TCP", {{"rootfs", Path("alpha.img")}}, "rootfs", Via::kTcp),
  };
  for (const Rejected& c : cases) Check(c);
  EXPECT_EQ(checked_, static_cast<int>(cases.size()));
}

TEST_F(StoreUnchangedTest, RefusedEditsLeaveTheStoreUnchanged) {
  const std::string bad = "invalid_argument", stale = "failed_precondition";
  auto edit = [&](std::string what, const json& body, int status, std::string code,
                  std::string field, Headers headers = {}, std::string vm = "beta") {
    Rejected r{std::move(what), "PATCH", "/v1/vms/" + vm, body.dump(), status, std::move(code)};
    r.field = std::move(field);
    r.headers = std::move(headers);
    return r;
  };
  auto invalid = [&](std::string what, const json& body, std::string field,
                     std::string vm = "beta") {
    return edit(std::move(what), body, 400, bad, std::move(field), {}, std::move(vm));
  };
  const json grow = {{"vcpus", 2 <= host_.cpus ? 2 : 1}, {"memory_mib", 128}};
  const std::vector<Rejected> cases = {
      // Generations. (A stale one with no change is answered 200 and writes nothing, as RFC
      // 9110 allows for a change that has already been made: node_test.cc.)
      edit("stale If-Match", grow, 409, stale, "generation", {{"If-Match", "\"7\""}}),
      edit("stale unquoted If-Match", grow, 409, stale, "generation", {{"If-Match", "0"}}),
      edit("stale generation in the body", {{"generation", 3}, {"memory_mib", 128}}, 409, stale,
           "generation"),
      edit("malformed If-Match", grow, 400, bad, "If-Match", {{"If-Match", "W/\"1\""}}),
      edit("If-Match not a number", grow, 400, bad, "If-Match", {{"If-Match", "\"one\""}}),
      edit("If-Match and body disagree", {{"generation", 2}, {"memory_mib", 128}}, 400, bad,
           "generation", {{"If-Match", "\"1\""}}),
      invalid("generation as a string", {{"generation", "1"}, {"memory_mib", 128}}, "generation"),
      invalid("the record's version in the body", {{"version", 1}, {"memory_mib", 128}}, "version"),
      // Values.
      invalid("rename", {{"name", "delta"}}, "name"),
      invalid("0 vcpus", {{"vcpus", 0}}, "vcpus"),
      invalid("more vcpus than the host", {{"vcpus", std::min(32, host_.cpus) + 1}}, "vcpus"),
      invalid("63 MiB", {{"memory_mib", 63}}, "memory_mib"),
      invalid("odd memory", {{"memory_mib", 129}}, "memory_mib"),
      invalid("a valid change with an invalid one",
              {{"vcpus", 1}, {"cmdline", "quiet"}, {"memory_mib", 63}}, "memory_mib"),
      invalid("kernel removed", {{"kernel", nullptr}}, "kernel"),
      invalid("missing kernel", {{"kernel", Path("no-such-vmlinux")}}, "kernel"),
      invalid("kernel is not ELF", {{"kernel", Path("not-elf")}}, "kernel"),
      invalid("relative initrd", {{"initrd", "initrd.img"}}, "initrd"),
      invalid("rootfs used read-write by alpha", {{"rootfs", Path("alpha.img")}}, "rootfs"),
      invalid("rootfs used read-only by gamma", {{"rootfs", Path("gamma.img")}}, "rootfs"),
      invalid("gamma's read-only rootfs moved to alpha's", {{"rootfs", Path("alpha.img")}},
              "rootfs", "gamma"),
      invalid("rootfs is a char device", {{"rootfs", "/dev/null"}}, "rootfs"),
      invalid("host port published by alpha", {{"publish", {"8080:80"}}}, "publish[0].host_port"),
      invalid("host port 0", {{"publish", {"0:80"}}}, "publish[0].host_port"),
      invalid("stop_at in the past", {{"timers", {{"stop_at", "2001-01-01T00:00:00Z"}}}},
              "timers.stop_at", "gamma"),
      invalid("idle_timeout 500ms", {{"timers", {{"idle_timeout", "500ms"}}}},
              "timers.idle_timeout"),
      invalid("bad duration", {{"timers", {{"stop_after", "forever"}}}}, "timers.stop_after"),
      invalid("unknown field", {{"colour", "red"}}, "colour"),
      invalid("discard_state as a string", {{"discard_state", "yes"}}, "discard_state"),
      invalid("wake_ports wrong type", {{"wake_ports", {{{"port", 80}}}}}, "wake_ports[0]"),
      Rejected{"not JSON", "PATCH", "/v1/vms/beta", R"({"vcpus": )", 400, bad, "body"},
      Rejected{"array body", "PATCH", "/v1/vms/beta", "[]", 400, bad, "body"},
      Rejected{"unknown query parameter", "PATCH", "/v1/vms/beta?dry_run=1",
               json{{"memory_mib", 128}}.dump(), 400, bad, "dry_run"},
      Rejected{"unknown VM", "PATCH", "/v1/vms/nope", json{{"memory_mib", 128}}.dump(), 404,
               "not_found", ""},
      [&] {
        Rejected r = edit("stale If-Match over TCP", grow, 409, stale, "generation",
                          {{"If-Match", "\"9\""}}, "alpha");
        r.via = Via::kTcp;
        return r;
      }(),
  };
  for (const Rejected& c : cases) Check(c);
  EXPECT_EQ(checked_, static_cast<int>(cases.size()));
}

TEST_F(StoreUnchangedTest, RefusedDeletesActionsAndUnauthenticatedRequestsLeaveTheStoreUnchanged) {
  const std::string bad = "invalid_argument", state = "failed_precondition";
  const std::string valid_create = Create({{"name", "fresh"}}).dump();
  const std::vector<Rejected> cases = {
      // Deletes.
      {"delete unknown VM", "DELETE", "/v1/vms/nope", "", 404, "not_found", ""},
      {"delete with a bad force flag", "DELETE", "/v1/vms/beta?force=maybe", "", 400, bad, "force"},
      {"delete with an unknown parameter", "DELETE", "/v1/vms/beta?forse=1", "", 400, bad, "forse"},
      {"delete with a bad percent-encoding", "DELETE", "/v1/vms/beta?force=%zz", "", 400, bad, ""},
      {"delete with a bad name encoding", "DELETE", "/v1/vms/bet%a", "", 400, bad, ""},
      {"delete every VM", "DELETE", "/v1/vms", "", 405, bad, ""},
      // Lifecycle actions: no hypervisor driver, admission, state rules, bad queries.
      {"start over the admission limit", "POST", "/v1/vms/alpha/start", "", 429,
       "resource_exhausted", "memory_mib"},
      {"start with a bad fresh flag", "POST", "/v1/vms/beta/start?fresh=maybe", "", 400, bad,
       "fresh"},
      {"start with an unknown parameter", "POST", "/v1/vms/beta/start?now=1", "", 400, bad, "now"},
      {"start unknown VM", "POST", "/v1/vms/nope/start", "", 404, "not_found", ""},
      {"stop with a bad kill flag", "POST", "/v1/vms/beta/stop?kill=2", "", 400, bad, "kill"},
      {"suspend a created VM", "POST", "/v1/vms/beta/suspend", "", 409, state, ""},
      {"suspend with a parameter", "POST", "/v1/vms/beta/suspend?x=1", "", 400, bad, "x"},
      {"resume a created VM", "POST", "/v1/vms/beta/resume", "", 409, state, ""},
      {"unknown action", "POST", "/v1/vms/beta/reboot", "", 404, "not_found", ""},
      {"action with the wrong method", "PUT", "/v1/vms/beta/start", "", 405, bad, ""},
      {"create with the wrong method", "PUT", "/v1/vms", valid_create, 405, bad, ""},
      {"create on a VM's path", "POST", "/v1/vms/fresh", valid_create, 405, bad, ""},
      {"put with another name", "PUT", "/v1/vms/beta", valid_create, 400, bad, "name"},
      {"put with a stale generation", "PUT", "/v1/vms/beta",
       json{{"kernel", kernel_}, {"generation", 9}}.dump(), 409, state, "generation"},
      // Reads with bad parameters.
      {"list with a parameter", "GET", "/v1/vms?all=1", "", 400, bad, "all"},
      {"list with an unknown state", "GET", "/v1/vms?state=asleep", "", 400, bad, "state"},
      {"list with a label without =", "GET", "/v1/vms?label=env", "", 400, bad, "label"},
      {"logs tail_lines 0", "GET", "/v1/vms/beta/logs?tail_lines=0", "", 400, bad, "tail_lines"},
      {"events limit 0", "GET", "/v1/vms/beta/events?limit=0", "", 400, bad, "limit"},
      {"events limit not a number", "GET", "/v1/vms/beta/events?limit=ten", "", 400, bad, "limit"},
      {"logs tail_bytes 0", "GET", "/v1/vms/beta/logs?tail_bytes=0", "", 400, bad, "tail_bytes"},
      // TCP needs the token, for every method.
      {"create without a token", "POST", "/v1/vms", valid_create, 401, "unauthenticated", "",
       Via::kTcpNoToken},
      {"edit without a token", "PATCH", "/v1/vms/beta", json{{"memory_mib", 128}}.dump(), 401,
       "unauthenticated", "", Via::kTcpNoToken},
      {"delete without a token", "DELETE", "/v1/vms/beta?force=true", "", 401, "unauthenticated",
       "", Via::kTcpNoToken},
      {"start without a token", "POST", "/v1/vms/beta/start", "", 401, "unauthenticated", "",
       Via::kTcpNoToken},
      {"list without a token", "GET", "/v1/vms", "", 401, "unauthenticated", "", Via::kTcpNoToken},
      {"create with a wrong token",
       "POST",
       "/v1/vms",
       valid_create,
       401,
       "unauthenticated",
       "",
       Via::kTcpNoToken,
       {{"Authorization", "Bearer hth_0000"}}},
      {"delete with a wrong token",
       "DELETE",
       "/v1/vms/beta",
       "",
       401,
       "unauthenticated",
       "",
       Via::kTcpNoToken,
       {{"Authorization", "Bearer " + daemon_->token() + "x"}}},
      {"create with an empty bearer token",
       "POST",
       "/v1/vms",
       valid_create,
       401,
       "unauthenticated",
       "",
       Via::kTcpNoToken,
       {{"Authorization", "Bearer "}}},
      {"create with the token as Basic",
       "POST",
       "/v1/vms",
       valid_create,
       401,
       "unauthenticated",
       "",
       Via::kTcpNoToken,
       {{"Authorization", "Basic " + daemon_->token()}}},
      {"create with the bare token",
       "POST",
       "/v1/vms",
       valid_create,
       401,
       "unauthenticated",
       "",
       Via::kTcpNoToken,
       {{"Authorization", daemon_->token()}}},
      {"create with the token hash",
       "POST",
       "/v1/vms",
       valid_create,
       401,
       "unauthenticated",
       "",
       Via::kTcpNoToken,
       {{"Authorization", "Bearer " + api::Sha256Hex(daemon_->token())}}},
  };
  for (const Rejected& c : cases) Check(c);
  EXPECT_EQ(checked_, static_cast<int>(cases.size()));
}

// Answers that change nothing must not write: reads, and edits that leave the spec as it is (the
// version stays).
TEST_F(StoreUnchangedTest, ReadsAndEditsThatChangeNothingDoNotWrite) {
  struct Case {
    std::string method, target, body;
    Headers headers = {};
  };
  const std::vector<Case> cases = {
      {"GET", "/healthz", ""},
      {"GET", "/v1/node", ""},
      {"GET", "/v1/vms", ""},
      {"GET", "/v1/vms/alpha", ""},
      {"GET", "/v1/vms/alpha/events", ""},
      {"GET", "/v1/vms/alpha/logs", ""},
      {"PATCH", "/v1/vms/beta", "{}"},
      {"PATCH", "/v1/vms/beta", json{{"memory_mib", 64}, {"kernel", kernel_}}.dump()},
      {"PATCH", "/v1/vms/beta", json{{"memory_mib", 64}}.dump(), {{"If-Match", "\"1\""}}},
      {"PATCH", "/v1/vms/gamma", json{{"timers", {{"stop_at", "2099-01-01T00:00:00Z"}}}}.dump()},
      {"PATCH", "/v1/vms/gamma",
       json{{"timers", {{"stop_at", "2099-01-01T01:00:00+01:00"}}}}.dump()},
      {"PATCH", "/v1/vms/alpha", json{{"publish", {"8080:80/tcp"}}}.dump()},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(fmt::format("{} {} {}", c.method, c.target, c.body));
    auto before = Snapshot(data_);
    auto r = unix_->Request(c.method, c.target, c.body, c.headers);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->status, 200) << r->body;
    if (c.method == "PATCH") {
      EXPECT_EQ(json::parse(r->body)["version"], 1) << r->body;
    }
    auto after = Snapshot(data_);
    EXPECT_TRUE(after == before) << "the data directory changed:" << Diff(before, after);
  }
}

// The control: the comparison sees a real write, in the WAL, and an accepted edit is not refused
// by the table's setup.
TEST_F(StoreUnchangedTest, AnAcceptedEditChangesTheFiles) {
  auto before = Snapshot(data_);
  ASSERT_TRUE(before.count("state.db"));
  ASSERT_TRUE(before.count("state.db-wal"));
  auto r = unix_->Request("PATCH", "/v1/vms/beta", json{{"memory_mib", 128}}.dump(),
                          {{"If-Match", "\"1\""}});
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body)["version"], 2);
  auto after = Snapshot(data_);
  EXPECT_NE(after.at("state.db-wal"), before.at("state.db-wal"));
}

}  // namespace
}  // namespace hearth::testing

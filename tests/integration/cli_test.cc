// The hearth CLI against a real hearthd: exit codes, one-line errors, output formats.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/output.h"
#include "common/clock.h"
#include "support/daemon.h"
#include "support/temp_dir.h"

namespace hearth::testing {
namespace {

using nlohmann::json;

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = DaemonProcess::Start(dir_ / "data");
    ASSERT_TRUE(d) << d.error().message;
    daemon_ = std::move(*d);
  }

  RunResult Hearth(std::vector<std::string> args, std::vector<std::string> env = {},
                   const std::string& input = "") {
    std::vector<std::string> argv = {(BuildDir() / "hearth").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    env.push_back("HEARTH_SOCKET=" + daemon_->socket().string());
    return RunProgram(argv, env, input);
  }

  static void ExpectOneLineError(const RunResult& r, int code, const std::string& says) {
    EXPECT_EQ(r.exit_code, code) << r.err;
    EXPECT_EQ(r.err.rfind("hearth: ", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(says), std::string::npos) << r.err;
  }

  TempDir dir_;
  std::unique_ptr<DaemonProcess> daemon_;
};

TEST_F(CliTest, CreateShowListEditDelete) {
  RunResult created = Hearth({"vm", "create", "web", "--kernel", "/bin/true", "--memory", "256M",
                              "--publish", "8080:80", "--idle-timeout", "30s"});
  ASSERT_EQ(created.exit_code, 0) << created.err;
  EXPECT_NE(created.out.find("vm 'web' created"), std::string::npos);

  RunResult shown = Hearth({"vm", "show", "web", "-o", "json"});
  ASSERT_EQ(shown.exit_code, 0);
  json vm = json::parse(shown.out);
  EXPECT_EQ(vm["memory_mib"], 256);
  EXPECT_EQ(vm["publish"][0]["host_port"], 8080);
  EXPECT_EQ(vm["timers"]["idle_timeout"], "30s");
  EXPECT_EQ(vm["wake"], "on-packet");

  RunResult yaml = Hearth({"-o", "yaml", "vm", "show", "web"});
  ASSERT_EQ(yaml.exit_code, 0);
  EXPECT_EQ(*cli::YamlToJson(yaml.out), vm);

  RunResult table = Hearth({"vm", "ls"});
  EXPECT_NE(table.out.find("web   created"), std::string::npos) << table.out;
  json list = json::parse(Hearth({"vm", "ls", "-o", "json"}).out);
  EXPECT_EQ(list["vms"].size(), 1u);

  RunResult edited = Hearth({"vm", "edit", "web", "--memory", "1G", "--if-version", "1"});
  ASSERT_EQ(edited.exit_code, 0) << edited.err;
  ExpectOneLineError(Hearth({"vm", "edit", "web", "--vcpus", "2", "--if-version", "1"}), 1,
                     "is at generation 2");
  EXPECT_EQ(json::parse(Hearth({"vm", "show", "web", "-o", "json"}).out)["memory_mib"], 1024);

  RunResult events = Hearth({"vm", "events", "web"});
  EXPECT_NE(events.out.find("memory_mib 256 -> 1024"), std::string::npos) << events.out;

  EXPECT_EQ(Hearth({"vm", "rm", "web"}).exit_code, 0);
  ExpectOneLineError(Hearth({"vm", "show", "web"}), 1, "vm 'web' does not exist");
}

TEST_F(CliTest, SpecFileWithFlagsOverriding) {
  std::ofstream(dir_ / "web.yaml") << "vcpus: 1\nmemory_mib: 128\nkernel: /bin/true\n"
                                      "timers:\n  stop_after: 2h\n";
  RunResult r = Hearth({"vm", "create", "web", "-f", (dir_ / "web.yaml").string(), "--memory",
                        "192M", "--idle-timeout", "1m", "-o", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json vm = json::parse(r.out);
  EXPECT_EQ(vm["memory_mib"], 192);
  EXPECT_EQ(vm["timers"]["stop_after"], "2h");
  EXPECT_EQ(vm["timers"]["idle_timeout"], "1m");
  RunResult stdin_spec = Hearth({"vm", "create", "db", "-f", "-"}, {},
                                "{\"kernel\": \"/bin/true\", \"memory_mib\": 64}");
  EXPECT_EQ(stdin_spec.exit_code, 0) << stdin_spec.err;
  std::ofstream(dir_ / "bad.yaml") << "kernel: /bin/true\nvcpuz: 2\n";
  ExpectOneLineError(Hearth({"vm", "create", "x", "-f", (dir_ / "bad.yaml").string()}), 1,
                     "vcpuz: unknown field");
  ExpectOneLineError(Hearth({"vm", "create", "x", "-f", (dir_ / "missing.yaml").string()}), 2,
                     "cannot read");
}

// What `vm show -o yaml` prints goes back in through create -f, edit -f and apply -f; the
// generation guards an edit and is not moved by a start.
TEST_F(CliTest, ShowOutputFeedsCreateEditAndApply) {
  ASSERT_EQ(Hearth({"vm", "create", "web", "--kernel", "/bin/true", "--memory", "128M", "--publish",
                    "8080:80", "--restart", "never"})
                .exit_code,
            0);
  RunResult shown = Hearth({"vm", "show", "web", "-o", "yaml"});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  const std::string web = (dir_ / "web.yaml").string();
  std::ofstream(web) << shown.out;
  ExpectOneLineError(Hearth({"vm", "create", "other", "-f", web}), 2, "the file is for vm 'web'");
  RunResult same = Hearth({"apply", "-f", web});
  EXPECT_EQ(same.exit_code, 0) << same.err;
  EXPECT_EQ(same.out, "vm 'web' unchanged (generation 1)\n");

  // A start moves the version, not the generation: the file still applies.
  ExpectOneLineError(Hearth({"vm", "start", "web"}), 1, "vm 'web' failed: ");
  json failed = json::parse(Hearth({"vm", "show", "web", "-o", "json"}).out);
  EXPECT_GT(failed["version"].get<int>(), 1);
  EXPECT_EQ(failed["generation"], 1);
  std::ofstream(web) << shown.out << "memory: 256M\n";  // the flag's units, beside memory_mib
  ExpectOneLineError(Hearth({"apply", "-f", web}), 2, "memory: 256M disagrees with memory_mib 128");
  std::string edited = shown.out;
  edited.replace(edited.find("memory_mib: 128"), 15, "memory: 256M");
  std::ofstream(web) << edited;
  RunResult applied = Hearth({"apply", "-f", web});
  EXPECT_EQ(applied.exit_code, 0) << applied.err;
  EXPECT_EQ(applied.out, "vm 'web' updated (generation 2)\n");
  // The file still says generation 1: a further change from it would undo someone's edit.
  edited.replace(edited.find("memory: 256M"), 12, "memory: 512M");
  std::ofstream(web) << edited;
  ExpectOneLineError(Hearth({"apply", "-f", web}), 1,
                     "based on generation 1 but vm 'web' is at generation 2");
  ExpectOneLineError(Hearth({"vm", "edit", "web", "-f", web}), 1, "is at generation 2");
  EXPECT_EQ(json::parse(Hearth({"vm", "show", "web", "-o", "json"}).out)["memory_mib"], 256);

  // Several VMs in one file; a VM left out of the file's fields gets the defaults.
  std::ofstream(dir_ / "two.yaml") << "name: web\nkernel: /bin/true\nvcpus: 2\n---\n"
                                      "name: db\nkernel: /bin/true\nidle_timeout: 5m\n";
  RunResult two = Hearth({"apply", "-f", (dir_ / "two.yaml").string()});
  EXPECT_EQ(two.exit_code, 0) << two.err;
  EXPECT_EQ(two.out, "vm 'web' updated (generation 3)\nvm 'db' created (generation 1)\n");
  json now = json::parse(Hearth({"vm", "show", "web", "-o", "json"}).out);
  EXPECT_EQ(now["vcpus"], 2);
  EXPECT_EQ(now["memory_mib"], 256) << "apply replaces the spec: memory back to its default";
  EXPECT_EQ(now["publish"], json::array());
  EXPECT_EQ(json::parse(Hearth({"vm", "show", "db", "-o", "json"}).out)["timers"]["idle_timeout"],
            "5m");

  // edit -f changes what the file gives; a file from a VM since deleted and created again is
  // refused by its id.
  RunResult db = Hearth({"vm", "show", "db", "-o", "yaml"});
  std::ofstream(dir_ / "db.yaml") << db.out;
  ASSERT_EQ(Hearth({"vm", "rm", "db"}).exit_code, 0);
  ASSERT_EQ(Hearth({"vm", "create", "-f", (dir_ / "two.yaml").string()}).exit_code, 2)
      << "two VMs are for apply";
  std::ofstream(dir_ / "db-new.yaml") << "name: db\nkernel: /bin/true\n";
  RunResult recreated = Hearth({"vm", "create", "-f", (dir_ / "db-new.yaml").string()});
  ASSERT_EQ(recreated.exit_code, 0) << recreated.err;
  ExpectOneLineError(Hearth({"vm", "edit", "db", "-f", (dir_ / "db.yaml").string()}), 1,
                     "id: the file is for vm 'db' with id");
  ExpectOneLineError(Hearth({"apply", "-f", (dir_ / "db.yaml").string()}), 1,
                     "id: the file describes vm 'db' with id");
}

TEST_F(CliTest, ExitCodesAndErrors) {
  ExpectOneLineError(Hearth({"vm", "create", "x", "--kernel", "/bin/true", "--memory", "3"}), 1,
                     "memory_mib: 3 is below the minimum of 64");
  ExpectOneLineError(Hearth({"vm", "create", "x", "--memory", "lots"}), 2, "--memory: 'lots'");
  ExpectOneLineError(Hearth({"vm", "create", "x", "--kernel", "/bin/true", "--vcpus", "two"}), 2,
                     "--vcpus");
  ExpectOneLineError(Hearth({"vm", "frobnicate"}), 2, "frobnicate");
  ExpectOneLineError(Hearth({"vm", "ls", "-o", "xml"}), 2, "xml");
  ExpectOneLineError(Hearth({}), 2, "subcommand");
  ExpectOneLineError(Hearth({"vm", "edit", "x"}), 2, "nothing to change");
  ASSERT_EQ(Hearth({"vm", "create", "web", "--kernel", "/bin/true"}).exit_code, 0);
  RunResult stop = Hearth({"vm", "stop", "web"});  // nothing to stop: fine, and said so
  EXPECT_EQ(stop.exit_code, 0) << stop.err;
  EXPECT_EQ(stop.out, "vm 'web' is not running (never started)\n");
  ExpectOneLineError(Hearth({"vm", "suspend", "web"}), 1, "it is created");
  // /bin/true is no kernel: the CLI waits for the start to settle and reports the failure.
  ASSERT_EQ(Hearth({"vm", "edit", "web", "--restart", "never"}).exit_code, 0);
  ExpectOneLineError(Hearth({"vm", "start", "web"}), 1, "vm 'web' failed: ");
  RunResult help = Hearth({"vm", "create", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--idle-timeout"), std::string::npos);
  EXPECT_NE(help.out.find("Examples"), std::string::npos);
  RunResult info = Hearth({"node", "info"});
  EXPECT_EQ(info.exit_code, 0);
  EXPECT_NE(info.out.find("memory running:"), std::string::npos);
  RunResult nowhere = RunProgram(
      {(BuildDir() / "hearth").string(), "--socket", (dir_ / "nope.sock").string(), "vm", "ls"});
  ExpectOneLineError(nowhere, 1, "is hearthd running?");
}

// Item 6 of issue 17: suggestions, names, help of each command, versions.
TEST_F(CliTest, MistakesGetSuggestionsAndExitTwo) {
  RunResult memroy = Hearth({"vm", "create", "web", "--memroy", "1G"});
  ExpectOneLineError(memroy, 2, "unknown flag --memroy; did you mean --memory?");
  EXPECT_EQ(
      memroy.err,
      "hearth: unknown flag --memroy; did you mean --memory? (see hearth vm create --help)\n");
  ExpectOneLineError(Hearth({"vm", "strat", "web"}), 2,
                     "'hearth vm' has no subcommand 'strat'; did you mean start?");
  ExpectOneLineError(Hearth({"vm", "ls", "--lable", "a=b"}), 2, "did you mean --label?");
  // A VM name the rule refuses is a usage error, found before any request.
  RunResult bad_name = Hearth({"vm", "create", "Web_1", "--kernel", "/bin/true"});
  ExpectOneLineError(bad_name, 2, "'Web_1' does not start with a lowercase letter");
  ExpectOneLineError(Hearth({"vm", "start", "web-"}), 2, "ends with '-'");
  EXPECT_EQ(json::parse(Hearth({"vm", "ls", "-o", "json"}).out)["vms"].size(), 0u);
}

TEST_F(CliTest, EachCommandHasItsOwnHelp) {
  RunResult create = Hearth({"vm", "create", "--help"});
  ASSERT_EQ(create.exit_code, 0);
  EXPECT_NE(create.out.find("(default 1)"), std::string::npos) << create.out;
  EXPECT_NE(create.out.find("default 256M"), std::string::npos) << create.out;
  EXPECT_NE(create.out.find("kernel plus an initrd or a root disk"), std::string::npos);
  EXPECT_NE(create.out.find("hearth vm create web --image default"), std::string::npos);
  EXPECT_EQ(create.out.find("hearth usage"), std::string::npos) << "another command's example";
  RunResult ls = Hearth({"vm", "ls", "--help"});
  EXPECT_NE(ls.out.find("-o,--output"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("wide"), std::string::npos) << ls.out;
  EXPECT_NE(ls.out.find("--state"), std::string::npos) << ls.out;
  EXPECT_EQ(ls.out.find("hearth vm create web"), std::string::npos) << ls.out;
  RunResult top = Hearth({"--help"});
  EXPECT_NE(top.out.find("kebab-case"), std::string::npos) << top.out;
}

TEST_F(CliTest, VersionShowsClientAndDaemon) {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"version"}, std::vector<std::string>{"--version"}}) {
    RunResult v = Hearth(args);
    ASSERT_EQ(v.exit_code, 0) << v.err;
    EXPECT_NE(v.out.find(fmt::format("hearth  {}", HEARTH_VERSION)), std::string::npos) << v.out;
    EXPECT_NE(v.out.find(fmt::format("hearthd {}", HEARTH_VERSION)), std::string::npos) << v.out;
  }
  json j = json::parse(Hearth({"version", "-o", "json"}).out);
  EXPECT_EQ(j["hearth"], HEARTH_VERSION);
  EXPECT_EQ(j["hearthd"], HEARTH_VERSION);
  // hearthd down: the client's version, what went wrong, exit 1.
  RunResult down = RunProgram(
      {(BuildDir() / "hearth").string(), "--socket", (dir_ / "nope.sock").string(), "version"});
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_EQ(down.out, fmt::format("hearth  {}\n", HEARTH_VERSION));
  ExpectOneLineError(down, 1, "hearthd's version is unknown");
}

// Labels end to end, and `vm ls` filters applied by hearthd.
TEST_F(CliTest, LabelsAndListFilters) {
  ASSERT_EQ(Hearth({"vm", "create", "web", "--kernel", "/bin/true", "--label", "env=prod",
                    "--label", "team=a"})
                .exit_code,
            0);
  ASSERT_EQ(
      Hearth({"vm", "create", "db", "--kernel", "/bin/true", "--label", "env=prod"}).exit_code, 0);
  ASSERT_EQ(Hearth({"vm", "create", "dev", "--kernel", "/bin/true"}).exit_code, 0);
  auto names = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"vm", "ls", "-o", "json"});
    RunResult r = Hearth(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<std::string> out;
    json list = json::parse(r.out);
    for (const auto& vm : list["vms"]) out.push_back(vm["name"]);
    return out;
  };
  using Names = std::vector<std::string>;
  EXPECT_EQ(names({"--label", "env=prod"}), (Names{"db", "web"}));
  EXPECT_EQ(names({"--label", "env=prod", "--label", "team=a"}), Names{"web"});
  EXPECT_EQ(names({"--state", "created,running"}), (Names{"db", "dev", "web"}));
  EXPECT_EQ(names({"--state", "running"}), Names{});
  ExpectOneLineError(Hearth({"vm", "ls", "--state", "sleeping"}), 1,
                     "state: 'sleeping' is not a VM state");
  ExpectOneLineError(Hearth({"vm", "ls", "--label", "env"}), 1, "label: 'env' is not KEY=VALUE");

  ASSERT_EQ(Hearth({"vm", "edit", "web", "--label", "team-", "--label", "tier=front"}).exit_code,
            0);
  json web = ShowVm(*daemon_, "web");
  EXPECT_EQ(web["labels"], json({{"env", "prod"}, {"tier", "front"}}));
  EXPECT_NE(Hearth({"vm", "show", "web"}).out.find("env=prod,tier=front"), std::string::npos);
  RunResult wide = Hearth({"vm", "ls", "-o", "wide"});
  EXPECT_NE(wide.out.find("LABELS"), std::string::npos) << wide.out;
  EXPECT_NE(wide.out.find(web["id"].get<std::string>()), std::string::npos) << wide.out;
  ExpectOneLineError(Hearth({"vm", "edit", "web", "--label", "bad key=x"}), 1,
                     "is not a label key");
  ExpectOneLineError(Hearth({"vm", "show", "web", "-o", "wide"}), 2,
                     "--output: wide not in {table,json,yaml}");
  ExpectOneLineError(Hearth({"-o", "wide", "vm", "show", "web"}), 2,
                     "-o wide: only lists (`hearth vm ls`, `hearth image ls`) have a wide form");
  // Kept across a restart of hearthd (the spec is stored as JSON).
  daemon_.reset();
  auto d = DaemonProcess::Start(dir_ / "data");
  ASSERT_TRUE(d) << d.error().message;
  daemon_ = std::move(*d);
  EXPECT_EQ(names({"--label", "tier=front"}), Names{"web"});
}

// `vm logs --tail N` and `--timestamps`: hearthd stamps each line with when it first saw it, the
// same on every read.
TEST_F(CliTest, LogsTailAndTimestamps) {
  ASSERT_EQ(Hearth({"vm", "create", "web", "--kernel", "/bin/true"}).exit_code, 0);
  std::string id = ShowVm(*daemon_, "web")["id"];
  auto vm_dir = daemon_->data_dir() / "vms" / id;
  std::filesystem::create_directories(vm_dir);
  std::ofstream(vm_dir / "console.log") << "one\ntwo\nthree\n";
  RunResult tail = Hearth({"vm", "logs", "web", "--tail", "2"});
  ASSERT_EQ(tail.exit_code, 0) << tail.err;
  EXPECT_EQ(tail.out, "two\nthree\n");
  RunResult stamped = Hearth({"vm", "logs", "web", "--timestamps"});
  ASSERT_EQ(stamped.exit_code, 0) << stamped.err;
  ASSERT_EQ(std::count(stamped.out.begin(), stamped.out.end(), '\n'), 3) << stamped.out;
  std::string first = stamped.out.substr(0, stamped.out.find(' '));
  auto when = ParseTime(first);
  ASSERT_TRUE(when) << stamped.out;
  EXPECT_LE(std::chrono::abs(*when - SystemClock().Now()), std::chrono::minutes(1));
  EXPECT_NE(stamped.out.find(first + " three\n"), std::string::npos) << stamped.out;
  EXPECT_EQ(Hearth({"vm", "logs", "web", "--timestamps"}).out, stamped.out);  // stable
  std::ofstream(vm_dir / "console.log", std::ios::app) << "four\n";
  RunResult later = Hearth({"vm", "logs", "web", "--timestamps", "--tail", "2"});
  ASSERT_EQ(later.exit_code, 0) << later.err;
  EXPECT_EQ(later.out.rfind(first + " three\n", 0), 0u) << later.out;
  EXPECT_NE(later.out.find(" four\n"), std::string::npos) << later.out;
  EXPECT_TRUE(std::filesystem::exists(vm_dir / "console.times"));
  ExpectOneLineError(Hearth({"vm", "logs", "web", "--tail", "0"}), 2, "--tail");
}

TEST_F(CliTest, TcpNeedsAToken) {
  std::string host = fmt::format("127.0.0.1:{}", daemon_->port());
  ExpectOneLineError(Hearth({"--host", host, "vm", "ls"}), 2, "HEARTH_TOKEN");
  ExpectOneLineError(Hearth({"--host", host, "vm", "ls"}, {"HEARTH_TOKEN=wrong"}), 1,
                     "invalid bearer token");
  RunResult ok = Hearth({"vm", "ls"}, {"HEARTH_HOST=" + host, "HEARTH_TOKEN=" + daemon_->token()});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
}

}  // namespace
}  // namespace hearth::testing

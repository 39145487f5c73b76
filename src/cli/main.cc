// hearth: the command-line client of hearthd. Exit codes: 0 success, 1 the request failed,
// 2 the command line is wrong. Errors are one line on stderr.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/apply_command.h"
#include "cli/cli.h"
#include "cli/image_commands.h"
#include "cli/output.h"
#include "cli/suggest.h"
#include "cli/vm_commands.h"
#include "common/text.h"

namespace hearth::cli {
namespace {

using nlohmann::json;

// The flags every command takes, with their defaults from the environment.
void AddGlobalFlags(CLI::App& app, Globals& g) {
  const char* env_socket = std::getenv("HEARTH_SOCKET");
  const char* env_host = std::getenv("HEARTH_HOST");
  g.socket = env_socket && *env_socket ? env_socket : "/var/lib/hearth/hearthd.sock";
  if (env_host) g.host = env_host;
  app.add_option("--socket", g.socket,
                 "hearthd's unix socket (env HEARTH_SOCKET, default /var/lib/hearth/hearthd.sock)");
  app.add_option("--host", g.host,
                 "talk TCP to HOST[:PORT] instead (env HEARTH_HOST; token "
                 "from HEARTH_TOKEN)");
  app.add_option("-o,--output", g.output,
                 "table, json or yaml; wide for lists (vm ls, image ls), csv for usage")
      ->check(CLI::IsMember({"table", "wide", "json", "yaml", "csv"}));
}

// `hearth usage`: GET /v1/usage, as a table or CSV.
void AddUsageCommand(CLI::App& app, Cli& cli, int& rc) {
  struct Args {
    std::string name, since, until, by, source;
  };
  auto a = std::make_shared<Args>();
  auto* usage = app.add_subcommand(
      "usage",
      "resources used per VM and in total: CPU-seconds, GiB-hours of RAM while running and of "
      "saved state while suspended, network and disk bytes, wakes and their latency");
  usage->add_option("NAME", a->name, "only this VM");
  usage->add_option("--since", a->since,
                    "from this RFC 3339 time, or this long ago (e.g. 24h); default 24h");
  usage->add_option("--until", a->until, "up to this RFC 3339 time or this long ago; default now");
  usage->add_option("--by", a->by, "also per minute, hour or day")
      ->check(CLI::IsMember({"minute", "hour", "day"}));
  usage
      ->add_option("--source", a->source,
                   "local (the node's store, default; hourly after a day, kept 7 days) or "
                   "clickhouse (with hearthd --clickhouse)")
      ->check(CLI::IsMember({"local", "clickhouse"}));
  AddOutputFlag(usage, cli, {"table", "json", "yaml", "csv"});
  usage->footer(
      CommandFooter("  hearth usage                          # every VM, the last 24 hours\n"
                    "  hearth usage web --since 7d --by day  # one VM, per day\n"
                    "  hearth usage --since 2026-11-01T00:00:00Z -o csv > usage.csv"));
  usage->callback([a, &cli, &rc] {
    std::string target = "/v1/usage";
    char sep = '?';
    for (auto [key, value] :
         {std::pair{"vm", &a->name}, std::pair{"since", &a->since}, std::pair{"until", &a->until},
          std::pair{"by", &a->by}, std::pair{"source", &a->source}}) {
      if (value->empty()) continue;
      target += fmt::format("{}{}={}", sep, key, UrlQueryValue(*value));
      sep = '&';
    }
    auto r = cli.Call("GET", target);
    if (!r) return void(rc = kFailed);
    if (cli.globals().output == "csv") {
      std::fputs(UsageCsv(json::parse(r->body)).c_str(), stdout);
      return void(rc = kOk);
    }
    rc = cli.Print(*r, UsageTable);
  });
}

// `hearth node info`: GET /v1/node.
void AddNodeCommands(CLI::App& app, Cli& cli, int& rc) {
  auto* node =
      app.add_subcommand("node", "this node's capacity and backends")->require_subcommand(1);
  auto* info =
      node->add_subcommand("info", "CPUs, memory, memory held by VMs, hypervisor backends");
  AddOutputFlag(info, cli, {"table", "json", "yaml"});
  info->footer(CommandFooter("  hearth node info\n  hearth node info -o json"));
  info->callback([&cli, &rc] {
    auto r = cli.Call("GET", "/v1/node");
    rc = r ? cli.Print(*r, NodeTable) : kFailed;
  });
}

// Every flag `cmd` and the commands above it take ("--memory", "-o").
std::vector<std::string> FlagsOf(const CLI::App* cmd) {
  std::vector<std::string> out = {"--help"};
  for (; cmd; cmd = cmd->get_parent()) {
    for (const CLI::Option* o : cmd->get_options()) {
      for (const auto& l : o->get_lnames()) out.push_back("--" + l);
      for (const auto& s : o->get_snames()) out.push_back("-" + s);
    }
  }
  return out;
}

// The first argument of the command line that CLI11 left over, in the order it was typed.
std::optional<std::string> FirstLeftOver(CLI::App& app, int argc, char** argv, bool flag) {
  std::vector<std::string> left = app.remaining();
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (flag != arg.starts_with("-")) continue;
    if (std::find(left.begin(), left.end(), arg) != left.end()) return arg;
  }
  return std::nullopt;
}

// The one-line error for a command line CLI11 refused. Names the command, what was typed and,
// for a mistyped flag or subcommand, the nearest one.
std::string ParseErrorLine(CLI::App& app, const CLI::ParseError& e, int argc, char** argv) {
  CLI::App* cmd = &app;
  std::string path = "hearth";
  while (!cmd->get_subcommands().empty()) {
    cmd = cmd->get_subcommands().front();
    path += " " + cmd->get_name();
  }
  std::string msg = e.what();
  auto did_you_mean = [](const std::optional<std::string>& s) {
    return s ? fmt::format("; did you mean {}?", *s) : std::string();
  };
  if (cmd->get_subcommands({}).size() > 0 && cmd->get_subcommands().empty()) {
    std::vector<std::string> names;
    for (const CLI::App* sub : cmd->get_subcommands({})) names.push_back(sub->get_name());
    std::string list = fmt::format("{}", fmt::join(names, ", "));
    auto typed = FirstLeftOver(app, argc, argv, false);
    msg = !typed ? fmt::format("'{}' needs a subcommand: {}", path, list)
                 : fmt::format("'{}' has no subcommand '{}'; use one of: {}", path, *typed, list);
    if (auto near = typed ? Nearest(*typed, names) : std::nullopt) {
      msg = fmt::format("'{}' has no subcommand '{}'; did you mean {}?", path, *typed, *near);
    }
  } else if (auto flag = FirstLeftOver(app, argc, argv, true)) {
    std::string name = flag->substr(0, flag->find('='));
    msg = fmt::format("unknown flag {}{}", name, did_you_mean(Nearest(name, FlagsOf(cmd))));
  }
  return fmt::format("hearth: {} (see {} --help)\n", msg, path);
}

// `hearth version` and `hearth --version`: the client's version and hearthd's (GET /v1/node).
// When hearthd cannot be reached, the client's version is still printed and the exit code is 1,
// as for any request that failed.
int PrintVersions(Cli& cli) {
  json out = {{"hearth", HEARTH_VERSION}, {"hearthd", nullptr}};
  auto r = cli.Request("GET", "/v1/node");
  std::string error;
  if (!r) {
    error = r.error().message;
  } else if (r->status != 200) {
    error = fmt::format("HTTP {}", r->status);
  } else {
    json node = json::parse(r->body, nullptr, false);
    if (node.is_object()) {
      out["hearthd"] = node.value("version", "?");
      out["node"] = node.value("hostname", "?");
    }
  }
  auto format = ParseFormat(cli.globals().output);
  if (format && (*format == Format::kJson || *format == Format::kYaml)) {
    std::fputs(Render(out, *format, nullptr).c_str(), stdout);
  } else {
    std::printf("hearth  %s\n", HEARTH_VERSION);
    if (error.empty()) {
      std::printf("hearthd %s (node %s, at %s)\n",
                  EscapeText(out["hearthd"].get<std::string>()).c_str(),
                  EscapeText(out.value("node", "?")).c_str(), cli.Where().c_str());
    }
  }
  if (error.empty()) return kOk;
  std::fprintf(stderr, "hearth: hearthd's version is unknown: %s\n", EscapeText(error).c_str());
  return kFailed;
}

}  // namespace

int Main(int argc, char** argv) {
  Globals g;
  CLI::App app{"hearth - manage the microVMs of a hearth node.", "hearth"};
  app.require_subcommand(0, 1);  // none only with --version
  app.fallthrough();             // global flags such as -o may come after the subcommand
  AddGlobalFlags(app, g);
  bool version = false;
  app.add_flag("--version", version, "print hearth's version and hearthd's");

  Cli cli(g);
  int rc = kOk;
  AddVmCommands(app, cli, rc);
  AddImageCommands(app, rc);
  AddApplyCommand(app, cli, rc);
  AddUsageCommand(app, cli, rc);
  AddNodeCommands(app, cli, rc);
  app.add_subcommand("version",
                     "print hearth's version and hearthd's (exit 1 if hearthd cannot "
                     "be reached)")
      ->callback([&cli, &rc] { rc = PrintVersions(cli); })
      ->footer(CommandFooter("  hearth version\n  hearth version -o json"));
  // Set last: a subcommand inherits the footer its parent has when it is added.
  app.footer(R"(Examples:
  hearth vm create web --image default --memory 128M --publish 8080:80
  hearth vm start web && curl http://127.0.0.1:8080/
  hearth vm ls -o wide --state running,suspended
  HEARTH_HOST=node1:7777 HEARTH_TOKEN=$(cat admin.token) hearth node info

Every command has its own --help with its flags, defaults and examples (hearth vm create --help).
Names: flags are kebab-case (--idle-timeout); fields in -o json/yaml output and in -f files are
snake_case (idle_timeout), as in the API.

Exit codes: 0 success, 1 the request failed (or hearthd could not be reached), 2 the command line
is wrong.)");

  try {
    app.parse(argc, argv);
    if (version) return PrintVersions(cli);
    if (app.get_subcommands().empty()) {
      throw CLI::RequiredError("A subcommand");
    }
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return kOk;
  } catch (const CLI::CallForAllHelp&) {
    std::cout << app.help("", CLI::AppFormatMode::All);
    return kOk;
  } catch (const CLI::ParseError& e) {
    std::fputs(ParseErrorLine(app, e, argc, argv).c_str(), stderr);
    return kUsage;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "hearth: %s\n", e.message.c_str());
    return kUsage;
  }
  return rc;
}

}  // namespace hearth::cli

int main(int argc, char** argv) { return hearth::cli::Main(argc, argv); }

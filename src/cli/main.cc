// hearth: the command-line client of hearthd. Exit codes: 0 success, 1 the request failed,
// 2 the command line is wrong. Errors are one line on stderr.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/apply_command.h"
#include "cli/cli.h"
#include "cli/image_commands.h"
#include "cli/output.h"
#include "cli/vm_commands.h"

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
  app.add_option("-o,--output", g.output, "table, json or yaml (and csv for usage)")
      ->check(CLI::IsMember({"table", "json", "yaml", "csv"}));
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
  node->add_subcommand("info", "CPUs, memory, memory held by VMs, hypervisor backends")
      ->callback([&cli, &rc] {
        auto r = cli.Call("GET", "/v1/node");
        rc = r ? cli.Print(*r, NodeTable) : kFailed;
      });
}

// The one-line error for a command line CLI11 refused. Names the command that lacks a
// subcommand and what was typed instead.
std::string ParseErrorLine(CLI::App& app, const CLI::ParseError& e) {
  CLI::App* cmd = &app;
  std::string path = "hearth";
  while (!cmd->get_subcommands().empty()) {
    cmd = cmd->get_subcommands().front();
    path += " " + cmd->get_name();
  }
  std::string msg = e.what();
  if (cmd->get_require_subcommand_min() > 0 && cmd->get_subcommands().empty()) {
    std::string names;
    for (const CLI::App* sub : cmd->get_subcommands({})) {
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    std::vector<std::string> extra = app.remaining();
    msg = extra.empty() ? fmt::format("'{}' needs a subcommand: {}", path, names)
                        : fmt::format("'{}' has no subcommand '{}'; use one of: {}", path,
                                      extra.front(), names);
  }
  return fmt::format("hearth: {} (see {} --help)\n", msg, path);
}

}  // namespace

int Main(int argc, char** argv) {
  Globals g;
  CLI::App app{"hearth - manage the microVMs of a hearth node.", "hearth"};
  app.footer(R"(Examples:
  hearth vm create web --kernel /srv/vmlinux --initrd /srv/initrd --memory 256M --publish 8080:80
  hearth vm create -f web.yaml web      # spec fields as in the API: vcpus, memory_mib, kernel, ...
  hearth vm ls
  hearth vm edit web --memory 512M --idle-timeout 30s
  hearth vm start web && hearth vm logs web -f
  hearth vm show web -o json
  HEARTH_HOST=node1:7777 HEARTH_TOKEN=$(cat admin.token) hearth node info
  hearth usage --since 7d --by day -o csv   # what each VM used, per day

Timers (--idle-timeout, --stop-after, --stop-at) act on a running VM within a second of their
time, also when it came while hearthd was down; `vm ls` shows the next one, and each firing is a
`timer` event in `vm events`.

Exit codes: 0 success, 1 the request failed, 2 the command line is wrong.)");
  app.require_subcommand(1);
  app.fallthrough();  // global flags such as -o may come after the subcommand
  AddGlobalFlags(app, g);

  Cli cli(g);
  int rc = kOk;
  AddVmCommands(app, cli, rc);
  AddImageCommands(app, rc);
  AddApplyCommand(app, cli, rc);
  AddUsageCommand(app, cli, rc);
  AddNodeCommands(app, cli, rc);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return kOk;
  } catch (const CLI::CallForAllHelp&) {
    std::cout << app.help("", CLI::AppFormatMode::All);
    return kOk;
  } catch (const CLI::ParseError& e) {
    std::fputs(ParseErrorLine(app, e).c_str(), stderr);
    return kUsage;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "hearth: %s\n", e.message.c_str());
    return kUsage;
  }
  return rc;
}

}  // namespace hearth::cli

int main(int argc, char** argv) { return hearth::cli::Main(argc, argv); }

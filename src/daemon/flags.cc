#include "daemon/flags.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "config/daemon_options.h"

namespace hearth::daemon {
namespace {

using config::DaemonConfig;
using config::DaemonOption;

constexpr const char* kDescription =
    "hearthd - the hearth node daemon: runs microVMs on this host and serves the hearth API.\n"
    "Runs as root, in the foreground; logs go to stderr.\n\n"
    "Examples:\n"
    "  hearthd                                  # data in /var/lib/hearth, API on "
    "127.0.0.1:7777\n"
    "  hearthd --data-dir /srv/hearth --listen 0.0.0.0:7777\n"
    "  hearthd --config /etc/hearth/hearthd.yaml   # YAML, same keys as the flags\n";

using PathField = std::filesystem::path DaemonConfig::*;

// One option as a flag: where CLI11 parses it to, and whether it was given.
struct Flag {
  const DaemonOption* option;
  CLI::Option* cli = nullptr;
  // A path flag is parsed as text, and an empty one counts as not given (--data-dir "").
  std::string path_text;

  bool Given() const {
    if (std::holds_alternative<PathField>(option->field)) {
      return !path_text.empty();
    }
    return cli->count() > 0;
  }
};

// Adds `flag` to `app`, parsing into its field of `cfg`.
void AddFlag(CLI::App& app, Flag& flag, DaemonConfig& cfg) {
  const DaemonOption& o = *flag.option;
  std::string name = "--" + std::string(o.name);
  std::string help(o.help);
  flag.cli = std::visit(
      [&](auto field) -> CLI::Option* {
        using T = std::remove_reference_t<decltype(cfg.*field)>;
        if constexpr (std::is_same_v<T, std::filesystem::path>) {
          return app.add_option(name, flag.path_text, help);
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          return app.add_option(name, cfg.*field, help)->delimiter(',');
        } else {
          return app.add_option(name, cfg.*field, help);
        }
      },
      o.field);
  if (!o.default_text.empty()) flag.cli->default_str(std::string(o.default_text));
}

// Sets the options in `cfg` that no flag gave from `file`, if there is one, and then the paths
// that flags gave. An empty path, from a flag or the file, leaves the default.
int ApplyConfigFile(const std::string& file, std::vector<Flag>& flags, DaemonConfig& cfg) {
  if (!file.empty()) {
    // The file sets defaults; flags given on the command line win.
    DaemonConfig from_file;
    if (auto s = config::LoadConfigFile(file, from_file); !s) {
      std::fprintf(stderr, "hearthd: %s\n", s.error().message.c_str());
      return 2;
    }
    for (const Flag& f : flags) {
      auto* path = std::get_if<PathField>(&f.option->field);
      if (f.Given() || (path && (from_file.**path).empty())) continue;
      config::CopyOption(*f.option, from_file, cfg);
    }
  }
  for (const Flag& f : flags) {
    auto* path = std::get_if<PathField>(&f.option->field);
    if (path && f.Given()) cfg.** path = f.path_text;
  }
  return 0;
}

}  // namespace

std::optional<int> ParseCommandLine(int argc, char** argv, DaemonConfig& cfg) {
  CLI::App app{kDescription, "hearthd"};
  std::string config_file;
  app.add_option("--config", config_file, "YAML file with the same keys as the long flags")
      ->check(CLI::ExistingFile);
  std::vector<Flag> flags;
  for (const DaemonOption& o : config::DaemonOptions()) flags.push_back(Flag{&o});
  for (Flag& f : flags) AddFlag(app, f, cfg);
  app.set_version_flag("--version", HEARTH_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    std::cout << app.help();
    return 0;
  } catch (const CLI::CallForVersion&) {
    std::cout << HEARTH_VERSION << "\n";
    return 0;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "hearthd: %s (see hearthd --help)\n", e.what());
    return 2;
  }
  if (int rc = ApplyConfigFile(config_file, flags, cfg); rc != 0) return rc;
  return std::nullopt;
}

}  // namespace hearth::daemon

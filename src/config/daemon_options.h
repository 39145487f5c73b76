// hearthd's options, each written once: its name (the long flag without "--", and the key of a
// config file), the field of DaemonConfig it sets, its --help text and the default --help shows.
// The flag parser (daemon/flags.cc), the config file loader (LoadConfigFile) and --help all read
// this table, so an option added here is a flag, a config key and a line of help at once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "config/daemon_config.h"

namespace hearth::config {

// The field an option sets; its type is the flag's type and the type a config file must give.
using OptionField = std::variant<std::string DaemonConfig::*, std::filesystem::path DaemonConfig::*,
                                 int64_t DaemonConfig::*, double DaemonConfig::*,
                                 std::vector<std::string> DaemonConfig::*>;

struct DaemonOption {
  std::string_view name;  // kebab-case: --NAME on the command line, NAME: in a config file
  OptionField field;
  std::string_view help;
  std::string_view default_text;  // the default --help shows; empty: none is shown
  // In a config file, a YAML boolean that sets the (string) field to "on" or "off".
  bool yaml_on_off = false;
};

// Every option, in the order of --help.
std::span<const DaemonOption> DaemonOptions();

// The option called `name`, or null.
const DaemonOption* FindDaemonOption(std::string_view name);

// The option a config file's `key` names, or null. A key may be spelled as the flag (kebab-case,
// `data-dir`) or as JSON/YAML fields are (snake_case, `data_dir`).
const DaemonOption* FindDaemonOptionByKey(std::string_view key);

// Sets option `option` of `to` to its value in `from`.
void CopyOption(const DaemonOption& option, const DaemonConfig& from, DaemonConfig& to);

}  // namespace hearth::config

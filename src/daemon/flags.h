// hearthd's command line: every option of config/daemon_options.h as a flag, and --config FILE,
// which sets the options that no flag gives.
#pragma once

#include <optional>

#include "config/daemon_config.h"

namespace hearth::daemon {

// Reads argv (and the --config file it names) into `cfg`. Returns nullopt when hearthd is to run,
// else the exit code: 0 after --help or --version, 2 when the command line or the config file is
// wrong (the error is printed on stderr).
std::optional<int> ParseCommandLine(int argc, char** argv, config::DaemonConfig& cfg);

}  // namespace hearth::daemon

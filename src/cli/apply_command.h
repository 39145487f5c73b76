// `hearth apply -f FILE`: declarative VMs.
#pragma once

#include <CLI/CLI.hpp>

#include "cli/cli.h"

namespace hearth::cli {

void AddApplyCommand(CLI::App& app, Cli& cli, int& rc);

}  // namespace hearth::cli

// `hearth vm ...`: create, edit, list, show, read the logs and events of, delete, start, stop,
// suspend and resume VMs through hearthd's API.
#pragma once

#include <CLI/CLI.hpp>

#include "cli/cli.h"

namespace hearth::cli {

// Adds the `vm` subcommand to `app`; its callbacks send their requests through `cli` and set `rc`
// to the exit code.
void AddVmCommands(CLI::App& app, Cli& cli, int& rc);

}  // namespace hearth::cli

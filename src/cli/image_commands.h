// `hearth image build NAME` and `hearth image ls`: local commands (no daemon) that build and list
// guest images under <data-dir>/images/.
#pragma once

#include <CLI/CLI.hpp>

namespace hearth::cli {

// Adds the `image` subcommand to `app`. The callbacks set `rc` to 0 (success), 1 (the command
// failed) or 2 (the command line is wrong), like the rest of the CLI.
void AddImageCommands(CLI::App& app, int& rc);

}  // namespace hearth::cli

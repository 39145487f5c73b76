// "Did you mean": the known word nearest to one that was mistyped (a flag, a subcommand).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hearth::cli {

// Edits (insert, delete, substitute, swap two neighbours) that turn `a` into `b`.
int EditDistance(std::string_view a, std::string_view b);

// The candidate nearest to `typed`, if it is near enough to be what was meant: at most 2 edits
// (1 for words of up to 4 characters), or `typed` is a prefix of exactly one candidate.
std::optional<std::string> Nearest(std::string_view typed,
                                   const std::vector<std::string>& candidates);

}  // namespace hearth::cli

// Runs a program to completion with fork/exec: argv is data, never a shell string. The one seam
// between the image builder and the host's tools (apt-get, dpkg-deb, lz4, gzip, xz).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "common/result.h"

namespace hearth::image {

struct CommandOptions {
  std::filesystem::path cwd;          // empty: inherit
  std::filesystem::path stdin_file;   // empty: /dev/null
  std::filesystem::path stdout_file;  // empty: captured into CommandOutput::out
};

inline CommandOptions InDirectory(std::filesystem::path cwd) {
  CommandOptions o;
  o.cwd = std::move(cwd);
  return o;
}
inline CommandOptions FileToFile(std::filesystem::path in, std::filesystem::path out) {
  CommandOptions o;
  o.stdin_file = std::move(in);
  o.stdout_file = std::move(out);
  return o;
}

struct CommandOutput {
  std::string out;  // stdout, unless it went to a file
  std::string err;  // stderr
};

// Runs argv[0] (searched in PATH) and waits for it. Fails with kUnavailable when the program
// cannot be started and kInternal when it exits non-zero or dies; the message names the command
// and ends with the last lines of its stderr.
Result<CommandOutput> RunCommand(const std::vector<std::string>& argv,
                                 const CommandOptions& options = {});

// "a b 'c d'": argv for messages.
std::string QuoteArgv(const std::vector<std::string>& argv);

}  // namespace hearth::image

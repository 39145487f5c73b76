// The README's quick start and tour, run as written: every command of their `sh` blocks, in
// order, against a real hearthd with real VMs, so that the README cannot drift from what hearth
// does. A command must exit 0; a comment "# -> TEXT" on it says its output contains TEXT.
// `make` lines are what this test stands in for (it builds nothing and starts its own hearthd);
// `build/hearth` and `hearth` are the build's CLI.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iostream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "support/daemon.h"
#include "support/vm_fixture.h"

namespace hearth {
namespace {

namespace fs = std::filesystem;
using testing::RunProgram;
using testing::RunResult;

struct TourStep {
  int line = 0;         // in README.md
  std::string command;  // as written, continuation lines joined
  std::string expect;   // from "# -> TEXT", or empty
};

// The commands of the sh blocks of the README sections ("## " headings, up to the next heading of
// any level) whose titles start with `sections`.
std::vector<TourStep> ReadTour(const fs::path& readme, const std::vector<std::string>& sections) {
  std::ifstream in(readme);
  std::vector<TourStep> steps;
  bool in_section = false, in_block = false;
  std::string line, pending;
  int number = 0, pending_line = 0;
  while (std::getline(in, line)) {
    ++number;
    if (!in_block && line.rfind("#", 0) == 0) {  // a heading of any level ends a section
      in_section = false;
      for (const auto& s : sections) in_section |= line.rfind("## " + s, 0) == 0;
      continue;
    }
    if (!in_section) continue;
    if (line.rfind("```", 0) == 0) {
      in_block = !in_block && line == "```sh";
      continue;
    }
    if (!in_block) continue;
    std::string code = line.substr(0, line.find(" #"));
    std::string comment = code.size() < line.size() ? line.substr(code.size()) : "";
    if (code.find_first_not_of(' ') == std::string::npos) continue;  // a comment's continuation
    if (pending.empty()) pending_line = number;
    bool continues = !code.empty() && code.back() == '\\';
    pending += continues ? code.substr(0, code.size() - 1) : code;
    if (continues) continue;
    std::smatch m;
    std::string expect;
    if (std::regex_search(comment, m, std::regex("# -> (.*?)( {2,}.*)?$"))) expect = m[1];
    steps.push_back({pending_line, pending, expect});
    pending.clear();
  }
  return steps;
}

class ReadmeTourTest : public testing::VmFixture {};

TEST_F(ReadmeTourTest, TheQuickStartAndTheTourRunAsWritten) {
  const fs::path readme = fs::path(HEARTH_SOURCE_DIR) / "README.md";
  std::vector<TourStep> steps = ReadTour(readme, {"Quick start", "A short tour"});
  ASSERT_GE(steps.size(), 20u) << "the README's quick start and tour are gone or were not found";
  testing::TempDir cwd;
  const std::string env_path =
      fmt::format("PATH={}:/usr/sbin:/usr/bin:/sbin:/bin", testing::BuildDir().string());
  int ran = 0, checked = 0;
  for (const TourStep& step : steps) {
    std::string command =
        std::regex_replace(step.command, std::regex("^ *build/hearth "), "hearth ");
    if (command.rfind("make ", 0) == 0) continue;
    SCOPED_TRACE(fmt::format("README.md:{}: {}", step.line, step.command));
    RunResult r = RunProgram(
        {"timeout", "300", "sh", "-c", fmt::format("cd '{}' && {}", cwd.path().string(), command)},
        {env_path, "HEARTH_SOCKET=" + daemon_->socket().string()});
    ++ran;
    ASSERT_EQ(r.exit_code, 0) << "out: " << r.out << "\nerr: " << r.err;
    if (!step.expect.empty()) {
      ++checked;
      EXPECT_NE(r.out.find(step.expect), std::string::npos)
          << "expected '" << step.expect << "' in: " << r.out;
    }
  }
  EXPECT_GE(checked, 5) << "the README checks few outputs; is the '# -> ' form still used?";
  std::cout << fmt::format("[ README ] {} commands run, {} outputs checked\n", ran, checked);
}

}  // namespace
}  // namespace hearth

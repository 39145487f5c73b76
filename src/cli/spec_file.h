// VMs written in files: what `hearth vm create -f`, `hearth vm edit -f` and `hearth apply -f`
// read. A file holds the fields of the API, as `hearth vm show -o yaml` prints them, so that
// output can be fed back:
//   - spec fields pass to hearthd as they are (it refuses an unknown one by name);
//   - the units of the flags are accepted too: `memory: 256M` for `memory_mib: 256`, and the
//     timers at the top level (`idle_timeout: 30s`) as well as under `timers:`;
//   - fields that describe the record rather than ask for something (state, version, ip, pid,
//     backend, snapshot, times) are ignored;
//   - `name`, `id` and `generation` identify what the file was written from: they must match the
//     VM it is applied to (checked here for the name, by the caller for the id, by hearthd for
//     the generation), else the file is refused naming the field.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace hearth::cli {

// One VM of a file.
struct DeclaredVm {
  std::string name;  // from the file, or empty
  std::optional<std::string> id;
  std::optional<int64_t> generation;
  nlohmann::json spec = nlohmann::json::object();  // spec fields, in the API's form
};

// The VMs of a file's text: one mapping, several separated by "---", or a sequence of mappings.
// Errors name the document ("vm 2 of 3") when there are several.
Result<std::vector<DeclaredVm>> ParseVmFile(std::string_view text);

// One document, already parsed from YAML or JSON.
Result<DeclaredVm> DeclaredFromJson(const nlohmann::json& doc);

// Reads `path` ("-" for stdin); a usage error when it cannot be read.
std::string ReadFileArgument(const std::string& path, std::string_view flag);

}  // namespace hearth::cli

// vm_spec_yaml_fuzz: the CLI's spec file (`hearth vm create -f spec.yaml`): YAML (or JSON, which
// is YAML) to JSON with cli::YamlToJson, then the create and edit parsing the daemon does with
// that body. An input is the file's bytes. Findings besides the sanitizers': an exception from
// any of these (the CLI would die instead of printing a usage error), and a parsed create spec
// that does not survive the store's round trip.
#include <exception>

#include "cli/output.h"
#include "fuzz_support.h"
#include "model/vm_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hearth;
  try {
    auto doc = cli::YamlToJson(fuzz::AsText(data, size));
    if (!doc || !doc->is_object()) return 0;
    (*doc)["name"] = "fuzz";  // as `hearth vm create fuzz -f FILE` sets it
    (void)ParseJsonObject(doc->dump());
    if (auto create = ParseCreateRequest(*doc)) {
      nlohmann::json stored = SpecToJson(create->spec, /*resolve_wake=*/false);
      VmSpec loaded;
      if (!ApplySpecJson(stored, loaded)) fuzz::Crash("a parsed spec does not load", stored.dump());
    }
    (void)ParseEditRequest(*doc);
  } catch (const std::exception& e) {
    fuzz::Crash("parsing a spec file threw", e.what());
  }
  return 0;
}

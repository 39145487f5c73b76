// snapshot_manifest_fuzz: a snapshot's manifest.json (snapshot/manifest.h) as hearthd reads it
// before a restore: JSON, then ManifestFromJson, then CheckOrigin against itself. An input is the
// file's bytes. Findings besides the sanitizers' (a number out of a field's range is undefined
// behaviour when converted, so UBSan reports it): an exception; a manifest that does not survive
// ToJson and ManifestFromJson unchanged; an origin that does not match itself.
#include <exception>

#include "fuzz_support.h"
#include "snapshot/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hearth;
  using nlohmann::json;
  try {
    auto m = fuzz::CheckJsonRoundTrip(
        fuzz::AsText(data, size), [](const json& j) { return snapshot::ManifestFromJson(j); },
        [](const snapshot::Manifest& m) { return snapshot::ToJson(m); },
        [](const auto& a, const auto& b) { return a == b; });
    if (m && !snapshot::CheckOrigin(m->origin, m->origin)) {
      fuzz::Crash("origin differs", snapshot::ToJson(*m).dump());
    }
  } catch (const std::exception& e) {
    fuzz::Crash("reading a snapshot manifest threw", e.what());
  }
  return 0;
}

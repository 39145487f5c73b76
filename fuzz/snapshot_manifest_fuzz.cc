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
    json j = json::parse(fuzz::AsText(data, size), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return 0;
    auto m = snapshot::ManifestFromJson(j);
    if (!m) return 0;
    json stored = snapshot::ToJson(*m);
    auto again = snapshot::ManifestFromJson(json::parse(stored.dump()));
    if (!again) fuzz::Crash("a manifest written back does not load", again.error().message);
    if (!(*again == *m)) fuzz::Crash("a manifest changes when written back", stored.dump());
    if (!snapshot::CheckOrigin(m->origin, m->origin)) fuzz::Crash("origin differs", stored.dump());
  } catch (const std::exception& e) {
    fuzz::Crash("reading a snapshot manifest threw", e.what());
  }
  return 0;
}

// image_manifest_fuzz: an image's manifest.json (image/image_manifest.h) as ReadManifest reads it
// (JSON, then ManifestFromJson) for `hearth image ls|show` and for every VM that boots the image.
// An input is the file's bytes. Findings besides the sanitizers': an
// exception, and a manifest that does not survive ToJson and ManifestFromJson unchanged.
#include <exception>

#include "fuzz_support.h"
#include "image/image_manifest.h"

namespace {

bool Same(const hearth::image::ImageManifest& a, const hearth::image::ImageManifest& b) {
  if (a.files.size() != b.files.size()) return false;
  for (const auto& [name, f] : a.files) {
    auto it = b.files.find(name);
    if (it == b.files.end() || it->second.sha256 != f.sha256 || it->second.size != f.size) {
      return false;
    }
  }
  return a.name == b.name && a.created_at == b.created_at && a.kernel_package == b.kernel_package &&
         a.kernel_version == b.kernel_version && a.kernel_release == b.kernel_release &&
         a.busybox_version == b.busybox_version && a.cmdline == b.cmdline;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hearth;
  using nlohmann::json;
  try {
    (void)fuzz::CheckJsonRoundTrip(
        fuzz::AsText(data, size), [](const json& j) { return image::ManifestFromJson(j); },
        [](const image::ImageManifest& m) { return image::ToJson(m); }, Same);
  } catch (const std::exception& e) {
    fuzz::Crash("reading an image manifest threw", e.what());
  }
  return 0;
}

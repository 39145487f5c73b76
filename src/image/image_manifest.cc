#include "image/image_manifest.h"

#include <fmt/format.h>

#include <fstream>
#include <memory>
#include <sstream>

#include "common/files.h"

namespace hearth::image {

using nlohmann::json;

json ToJson(const ImageManifest& m) {
  json files = json::object();
  for (const auto& [name, f] : m.files) files[name] = {{"sha256", f.sha256}, {"size", f.size}};
  return {{"name", m.name},
          {"format_version", 1},
          {"created_at", m.created_at},
          {"kernel",
           {{"package", m.kernel_package},
            {"version", m.kernel_version},
            {"release", m.kernel_release}}},
          {"busybox_version", m.busybox_version},
          {"cmdline", m.cmdline},
          {"files", files}};
}

Result<ImageManifest> ManifestFromJson(const json& j) {
  try {
    ImageManifest m;
    m.name = j.at("name").get<std::string>();
    m.created_at = j.value("created_at", "");
    if (j.contains("kernel")) {
      const json& k = j.at("kernel");
      m.kernel_package = k.value("package", "");
      m.kernel_version = k.value("version", "");
      m.kernel_release = k.value("release", "");
    }
    m.busybox_version = j.value("busybox_version", "");
    m.cmdline = j.value("cmdline", "");
    for (const auto& [name, f] : j.at("files").items()) {
      // Checked first: get<uint64_t>() converts a float or a negative number without complaint
      // (a float out of range with undefined behaviour).
      if (!f.at("size").is_number_unsigned()) {
        return Fail(Code::kInvalidArgument,
                    fmt::format("bad image manifest: files.{}.size: {} is not a size in bytes",
                                name, f.at("size").dump()));
      }
      m.files[name] = {f.at("sha256").get<std::string>(), f.at("size").get<uint64_t>()};
    }
    return m;
  } catch (const json::exception& e) {
    return Fail(Code::kInvalidArgument, fmt::format("bad image manifest: {}", e.what()));
  }
}

Result<ImageManifest> ReadManifest(const std::filesystem::path& dir) {
  std::filesystem::path path = dir / kManifestFile;
  std::ifstream in(path);
  if (!in) return Fail(Code::kNotFound, fmt::format("{}: no such file", path.string()));
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return Fail(Code::kInvalidArgument, fmt::format("{}: not valid JSON", path.string()));
  }
  auto m = ManifestFromJson(j);
  if (!m) return Fail(m.error().Wrap(path.string()));
  return m;
}

Status WriteManifest(const std::filesystem::path& dir, const ImageManifest& m) {
  return WriteFileDurably(dir / kManifestFile, ToJson(m).dump(2) + "\n");
}

}  // namespace hearth::image

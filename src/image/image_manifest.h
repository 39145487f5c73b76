// manifest.json, the description of a built image, written last into its directory:
//   {"name": "default", "format_version": 1, "created_at": "2026-11-26T09:30:00Z",
//    "kernel": {"package": "linux-image-6.1.0-56-cloud-amd64", "version": "6.1.192-2",
//               "release": "6.1.0-56-cloud-amd64"},
//    "busybox_version": "1:1.35.0-4+deb12u1+b1", "cmdline": "console=ttyS0 ...",
//    "files": {"vmlinux": {"sha256": "...", "size": 123}, "initrd.img": {...}}}
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "common/paths.h"
#include "common/result.h"

namespace hearth::image {

struct ImageFile {
  std::string sha256;  // lower-case hex
  uint64_t size = 0;
};

struct ImageManifest {
  std::string name;
  std::string created_at;  // RFC 3339 UTC
  std::string kernel_package, kernel_version, kernel_release;
  std::string busybox_version;
  std::string cmdline;                     // base kernel command line for this image
  std::map<std::string, ImageFile> files;  // by file name in the image directory
};

inline constexpr std::string_view kManifestFile = files::kManifest;

nlohmann::json ToJson(const ImageManifest& m);
Result<ImageManifest> ManifestFromJson(const nlohmann::json& j);

// Reads <dir>/manifest.json.
Result<ImageManifest> ReadManifest(const std::filesystem::path& dir);
// Writes <dir>/manifest.json (through a temporary file and rename).
Status WriteManifest(const std::filesystem::path& dir, const ImageManifest& m);

}  // namespace hearth::image

// An image's manifest.json as hearthd reads it back.
#include "image/image_manifest.h"

#include <gtest/gtest.h>

namespace hearth::image {
namespace {

using nlohmann::json;

ImageManifest Default() {
  ImageManifest m;
  m.name = "default";
  m.created_at = "2026-11-26T09:30:00Z";
  m.kernel_package = "linux-image-6.1.0-56-cloud-amd64";
  m.cmdline = "console=ttyS0";
  m.files["vmlinux"] = {"9f86d0", 31457280};
  return m;
}

TEST(ImageManifestTest, RoundTrips) {
  auto back = ManifestFromJson(ToJson(Default()));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->name, "default");
  EXPECT_EQ(back->files.at("vmlinux").size, 31457280u);
  EXPECT_EQ(back->files.at("vmlinux").sha256, "9f86d0");
}

// Found by fuzz/image_manifest_fuzz: get<uint64_t>() converted a float out of range with
// undefined behaviour, and took -1 as 18446744073709551615.
TEST(ImageManifestTest, RefusesSizesThatAreNotByteCounts) {
  for (json size : {json(1e300), json(-1), json(1.5), json("12")}) {
    json j = ToJson(Default());
    j["files"]["vmlinux"]["size"] = size;
    auto r = ManifestFromJson(j);
    ASSERT_FALSE(r) << size.dump();
    EXPECT_EQ(r.error().code, Code::kInvalidArgument);
    EXPECT_NE(r.error().message.find("size"), std::string::npos) << r.error().message;
  }
}

}  // namespace
}  // namespace hearth::image

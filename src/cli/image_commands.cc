#include "cli/image_commands.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "cli/output.h"
#include "common/paths.h"
#include "image/image_builder.h"
#include "image/image_manifest.h"

namespace hearth::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int kOk = 0, kFailed = 1, kUsage = 2;

std::string HumanSize(uint64_t bytes) {
  if (bytes >= (10ULL << 20)) return fmt::format("{}M", bytes >> 20);
  if (bytes >= (1ULL << 20)) return fmt::format("{:.1f}M", static_cast<double>(bytes) / (1 << 20));
  return fmt::format("{}K", (bytes + 1023) >> 10);
}

std::string ImageTable(const json& list) {
  std::vector<std::vector<std::string>> rows = {{"NAME", "KERNEL", "SIZE", "CREATED"}};
  for (const json& img : list.at("images")) {
    uint64_t size = 0;
    for (const auto& [_, f] : img.at("files").items()) size += f.value("size", uint64_t{0});
    rows.push_back({img.value("name", ""), img.at("kernel").value("release", ""), HumanSize(size),
                    img.value("created_at", "")});
  }
  return FormatTable(rows);
}

// -o wide: each file of the image and its size too.
std::string ImageWideTable(const json& list) {
  std::vector<std::vector<std::string>> rows = {{"NAME", "KERNEL", "SIZE", "CREATED", "FILES"}};
  for (const json& img : list.at("images")) {
    uint64_t size = 0;
    std::string files;
    for (const auto& [name, f] : img.at("files").items()) {
      size += f.value("size", uint64_t{0});
      files += fmt::format("{}{} {}", files.empty() ? "" : ", ", name,
                           HumanSize(f.value("size", uint64_t{0})));
    }
    rows.push_back({img.value("name", ""), img.at("kernel").value("release", ""), HumanSize(size),
                    img.value("created_at", ""), files});
  }
  return FormatTable(rows);
}

int Build(const std::string& name, const std::string& data_dir, bool force) {
  if (name != "default") {
    std::fprintf(stderr, "hearth: unknown image '%s': only 'default' can be built\n", name.c_str());
    return kUsage;
  }
  if (geteuid() != 0) {
    std::fprintf(stderr,
                 "hearth: `hearth image build` needs root (it runs apt-get); run it "
                 "with sudo\n");
    return kFailed;
  }
  fs::path target = Paths(data_dir).image_dir(name);
  image::BuildOptions options;
  options.force = force;
  auto built = image::ImageBuilder().Build(name, target, options);
  if (!built) {
    std::fprintf(stderr, "hearth: building image '%s': %s\n", name.c_str(),
                 built.error().message.c_str());
    return kFailed;
  }
  std::printf("image '%s' built in %s (kernel %s)\n", name.c_str(), target.c_str(),
              built->kernel_release.c_str());
  return kOk;
}

int List(const std::string& data_dir, const std::string& output) {
  auto format = ParseFormat(output);
  if (!format) {
    std::fprintf(stderr, "hearth: %s\n", format.error().message.c_str());
    return kUsage;
  }
  json images = json::array();
  fs::path dir = Paths(data_dir).images_dir();
  std::error_code ec;
  std::vector<fs::path> entries;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::string f = e.path().filename().string();
    if (e.is_directory() && !f.empty() && f[0] != '.') entries.push_back(e.path());
  }
  if (ec && ec != std::errc::no_such_file_or_directory) {
    std::fprintf(stderr, "hearth: reading %s: %s\n", dir.c_str(), ec.message().c_str());
    return kFailed;
  }
  std::sort(entries.begin(), entries.end());
  for (const auto& e : entries) {
    auto m = image::ReadManifest(e);
    if (!m) {
      std::fprintf(stderr, "hearth: skipping %s: %s\n", e.c_str(), m.error().message.c_str());
      continue;
    }
    images.push_back(image::ToJson(*m));
  }
  std::fputs(Render(json{{"images", images}}, *format,
                    *format == Format::kWide ? ImageWideTable : ImageTable)
                 .c_str(),
             stdout);
  return kOk;
}

}  // namespace

void AddImageCommands(CLI::App& app, int& rc) {
  auto* image = app.add_subcommand("image", "build and list guest images (local, as root)")
                    ->require_subcommand(1);
  // Owned by the callbacks: CLI11 keeps the option targets alive through parsing.
  struct Flags {
    std::string name, data_dir = std::string(Paths::kDefaultDataDir), output = "table";
    bool force = false;
  };
  auto flags = std::make_shared<Flags>();

  auto* build = image->add_subcommand("build", "build an image into DIR/images/NAME");
  build->add_option("NAME", flags->name, "image name; only 'default' for now")->required();
  build->add_option("--data-dir", flags->data_dir, "hearth's data directory")
      ->capture_default_str();
  build->add_flag("--force", flags->force, "replace an existing image");
  build->callback([flags, &rc] { rc = Build(flags->name, flags->data_dir, flags->force); });

  auto* ls = image->add_subcommand("ls", "list the built images");
  ls->add_option("--data-dir", flags->data_dir, "hearth's data directory")->capture_default_str();
  // Its own -o (shown in its --help); hearth's global -o/--output applies too.
  CLI::Option* own = ls->add_option("-o,--output", flags->output,
                                    "output format: table, wide, json or yaml (default table)")
                         ->check(CLI::IsMember({"table", "wide", "json", "yaml"}));
  CLI::Option* global = app.get_option_no_throw("--output");
  ls->footer("Examples:\n  hearth image ls\n  hearth image ls -o wide");
  build->footer("Examples:\n  hearth image build default          # as root: runs apt-get");
  ls->callback([flags, own, global, &rc] {
    std::string format = own->count() > 0                ? flags->output
                         : global && global->count() > 0 ? global->as<std::string>()
                                                         : "table";
    rc = List(flags->data_dir, format);
  });
}

}  // namespace hearth::cli

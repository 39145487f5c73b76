#include "config/daemon_options.h"

#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <string>
#include <type_traits>

#include "support/temp_dir.h"

namespace hearth::config {
namespace {

using PathField = std::filesystem::path DaemonConfig::*;

TEST(DaemonOptionsTest, NamesAreUniqueKebabCaseAndFound) {
  std::set<std::string_view> names;
  for (const DaemonOption& o : DaemonOptions()) {
    SCOPED_TRACE(o.name);
    EXPECT_TRUE(names.insert(o.name).second) << "listed twice";
    EXPECT_EQ(o.name.find_first_not_of("abcdefghijklmnopqrstuvwxyz-"), std::string_view::npos);
    EXPECT_FALSE(o.help.empty());
    EXPECT_EQ(FindDaemonOption(o.name), &o);
  }
  EXPECT_EQ(FindDaemonOption("data_dir"), nullptr);
  EXPECT_EQ(FindDaemonOption("config"), nullptr) << "--config is a flag, not a key of the file";
}

// --help shows the defaults DaemonConfig really has.
TEST(DaemonOptionsTest, HelpDefaultsAreTheConfigDefaults) {
  const DaemonConfig defaults;
  for (const DaemonOption& o : DaemonOptions()) {
    if (o.default_text.empty()) continue;
    SCOPED_TRACE(o.name);
    std::string text(o.default_text);
    std::visit(
        [&](auto field) {
          using T = std::remove_cvref_t<decltype(defaults.*field)>;
          if constexpr (std::is_same_v<T, std::string>) {
            EXPECT_EQ(defaults.*field, text);
          } else if constexpr (std::is_same_v<T, std::filesystem::path>) {
            EXPECT_EQ((defaults.*field).string(), text);
          } else if constexpr (std::is_same_v<T, int64_t>) {
            EXPECT_EQ(std::to_string(defaults.*field), text);
          } else if constexpr (std::is_same_v<T, double>) {
            EXPECT_EQ(defaults.*field, std::stod(text));
          } else {
            EXPECT_TRUE((defaults.*field).empty()) << "filled in by Validate";
          }
        },
        o.field);
  }
}

// Every option is a key of the config file, of its field's type, and CopyOption moves it.
TEST(DaemonOptionsTest, EveryOptionIsAConfigKey) {
  testing::TempDir dir;
  {
    std::ofstream yaml(dir / "all.yaml");
    for (const DaemonOption& o : DaemonOptions()) {
      yaml << o.name << ": ";
      if (o.yaml_on_off) {
        yaml << "false\n";
        continue;
      }
      std::visit(
          [&](auto field) {
            using T = std::remove_cvref_t<decltype(DaemonConfig{}.*field)>;
            if constexpr (std::is_same_v<T, int64_t>) {
              yaml << "4242\n";
            } else if constexpr (std::is_same_v<T, double>) {
              yaml << "2.5\n";
            } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
              yaml << "[/a, /b]\n";
            } else {
              yaml << "/v/" << o.name << "\n";
            }
          },
          o.field);
    }
  }
  DaemonConfig loaded;
  ASSERT_TRUE(LoadConfigFile(dir / "all.yaml", loaded));
  EXPECT_EQ(loaded.nat, "off");
  EXPECT_EQ(loaded.data_dir, "/v/data-dir");
  EXPECT_EQ(loaded.listen, "/v/listen");
  EXPECT_EQ(loaded.jailer_uid, 4242);
  EXPECT_EQ(loaded.memory_ratio, 2.5);
  EXPECT_EQ(loaded.allowed_paths, (std::vector<std::string>{"/a", "/b"}));
  DaemonConfig copy;
  for (const DaemonOption& o : DaemonOptions()) CopyOption(o, loaded, copy);
  for (const DaemonOption& o : DaemonOptions()) {
    SCOPED_TRACE(o.name);
    std::visit([&](auto field) { EXPECT_EQ(copy.*field, loaded.*field); }, o.field);
  }
}

TEST(DaemonOptionsTest, UnknownKeyListsEveryOption) {
  testing::TempDir dir;
  std::ofstream(dir / "unknown.yaml") << "colour: blue\n";
  DaemonConfig cfg;
  auto s = LoadConfigFile(dir / "unknown.yaml", cfg);
  ASSERT_FALSE(s);
  std::string known;
  for (const DaemonOption& o : DaemonOptions()) {
    known += (known.empty() ? "" : ", ") + std::string(o.name);
  }
  EXPECT_NE(s.error().message.find("unknown key 'colour'; known: " + known), std::string::npos)
      << s.error().message;
}

}  // namespace
}  // namespace hearth::config

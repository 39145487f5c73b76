// Which table and tap owner tag a hearthd uses, from its data dir.
#include <gtest/gtest.h>

#include "net/linux_network.h"

namespace hearth::net {
namespace {

TEST(NetNetworkOptionsTest, TheDefaultDataDirUsesTableHearth) {
  NetworkOptions o = NetworkOptions::ForDataDir("/var/lib/hearth");
  EXPECT_EQ(o.table, "hearth");
  EXPECT_EQ(o.owner, "hearth:/var/lib/hearth");
  EXPECT_EQ(NetworkOptions::ForDataDir("/var/lib/hearth/").table, "hearth");
  EXPECT_EQ(NetworkOptions::ForDataDir("/var/lib/./hearth").table, "hearth");
  // Without options: table hearth and no owner.
  EXPECT_EQ(NetworkOptions{}.table, "hearth");
  EXPECT_EQ(NetworkOptions{}.owner, "");
}

TEST(NetNetworkOptionsTest, OtherDataDirsGetTheirOwnStableTable) {
  NetworkOptions a = NetworkOptions::ForDataDir("/tmp/hearth-test-1/data");
  NetworkOptions b = NetworkOptions::ForDataDir("/tmp/hearth-test-2/data");
  EXPECT_TRUE(a.table.starts_with("hearth_")) << a.table;
  EXPECT_EQ(a.table.size(), 15u) << a.table;
  EXPECT_TRUE(ValidateTableName(a.table)) << a.table;
  EXPECT_NE(a.table, b.table);
  EXPECT_EQ(NetworkOptions::ForDataDir("/tmp/hearth-test-1/data/").table, a.table);
  EXPECT_EQ(a.owner, "hearth:/tmp/hearth-test-1/data");
  EXPECT_NE(a.owner, b.owner);
}

TEST(NetNetworkOptionsTest, RelativeAndLongDataDirs) {
  NetworkOptions relative = NetworkOptions::ForDataDir("data");
  EXPECT_EQ(relative.owner, "hearth:" + (std::filesystem::current_path() / "data").string());
  std::string long_dir = "/" + std::string(300, 'x');
  NetworkOptions long_one = NetworkOptions::ForDataDir(long_dir);
  EXPECT_EQ(long_one.owner, "hearth:" + long_one.table);
  EXPECT_LE(long_one.owner.size(), 255u);
}

TEST(NetNetworkOptionsTest, TableNames) {
  for (std::string_view good : {"hearth", "hearth_0123abcd", "h", "Hearth_2"}) {
    EXPECT_TRUE(ValidateTableName(good)) << good;
  }
  for (std::string_view bad :
       {"", "1hearth", "_hearth", "hearth-x", "hearth x", "hearth;", "hearth\n", "hearth{}"}) {
    auto s = ValidateTableName(bad);
    ASSERT_FALSE(s) << bad;
    EXPECT_EQ(s.error().code, Code::kInvalidArgument);
  }
  EXPECT_FALSE(ValidateTableName(std::string(65, 'a')));
}

}  // namespace
}  // namespace hearth::net

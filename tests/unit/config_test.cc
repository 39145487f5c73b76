#include <gtest/gtest.h>

#include <fstream>

#include "config/daemon_config.h"
#include "support/temp_dir.h"

namespace hearth::config {
namespace {

TEST(DaemonConfigTest, ParsesListenAddresses) {
  auto v4 = ParseListen("127.0.0.1:7777");
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->host, "127.0.0.1");
  EXPECT_EQ(v4->port, 7777);
  auto v6 = ParseListen("[::1]:80");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_TRUE(ParseListen("none")->host.empty());
  for (const char* bad : {"7777", ":7777", "host:", "host:70000", "host:x", "127.0.0.1"}) {
    SCOPED_TRACE(bad);
    auto r = ParseListen(bad);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("--listen"), std::string::npos);
  }
}

TEST(DaemonConfigTest, ValidateNamesTheFlagAndValue) {
  struct Case {
    void (*mutate)(DaemonConfig&);
    const char* says;
  } cases[] = {
      {[](DaemonConfig& c) { c.data_dir = "relative"; }, "--data-dir: 'relative'"},
      {[](DaemonConfig& c) { c.memory_ratio = 0; }, "--memory-ratio: 0"},
      {[](DaemonConfig& c) { c.memory_ratio = -1; }, "--memory-ratio"},
      {[](DaemonConfig& c) { c.hypervisor = "vmware"; }, "--hypervisor: 'vmware'"},
      {[](DaemonConfig& c) { c.store = "mysql://x"; }, "--store: 'mysql://x'"},
      {[](DaemonConfig& c) { c.store = "postgresql://db/hearth"; }, "--store: PostgreSQL"},
      {[](DaemonConfig& c) { c.clickhouse = "https://127.0.0.1:8123"; }, "--clickhouse: 'https"},
      {[](DaemonConfig& c) { c.clickhouse = "http://h:99999"; }, "--clickhouse: 'http://h:99999'"},
      {[](DaemonConfig& c) { c.clickhouse = "http://h/bad-db"; }, "--clickhouse"},
      {[](DaemonConfig& c) { c.metering_interval = "500ms"; }, "--metering-interval: '500ms'"},
      {[](DaemonConfig& c) { c.metering_interval = "2h"; }, "--metering-interval: '2h'"},
      {[](DaemonConfig& c) { c.metering_retention = "1h"; }, "--metering-retention: '1h'"},
      {[](DaemonConfig& c) { c.log_level = "loud"; }, "--log-level: 'loud'"},
      {[](DaemonConfig& c) { c.jailer = "/usr/bin/jailer"; }, "--jailer: '/usr/bin/jailer' needs"},
      {[](DaemonConfig& c) { c.jailer_uid = 70000; }, "--jailer-uid: 70000"},
      {[](DaemonConfig& c) { c.jailer_chroot_base = "srv"; }, "--jailer-chroot-base: 'srv'"},
      {[](DaemonConfig& c) { c.accel = "hvf"; }, "--accel: 'hvf'"},
      {[](DaemonConfig& c) { c.network_pool = "10.0.0.0/30"; }, "--network-pool"},
      {[](DaemonConfig& c) { c.network_pool = "fd00::/64"; }, "--network-pool"},
      {[](DaemonConfig& c) { c.nat = "maybe"; }, "--nat: 'maybe'"},
      {[](DaemonConfig& c) { c.listen = "nowhere"; }, "--listen: 'nowhere'"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.says);
    DaemonConfig cfg;
    c.mutate(cfg);
    auto s = Validate(cfg);
    ASSERT_FALSE(s);
    EXPECT_NE(s.error().message.find(c.says), std::string::npos) << s.error().message;
  }
  DaemonConfig good;
  ASSERT_TRUE(Validate(good));
  EXPECT_EQ(good.store, "sqlite:///var/lib/hearth/state.db");
  EXPECT_EQ(MeteringInterval(good), std::chrono::seconds(10));
  EXPECT_EQ(MeteringRetention(good), std::chrono::hours(24 * 7));
  good.clickhouse = "http://u:p@ch.example:9123/usage";
  good.metering_interval = "1s";
  ASSERT_TRUE(Validate(good));
  EXPECT_EQ(MeteringInterval(good), std::chrono::seconds(1));
  // Firecracker is a valid choice now; whether it can run is decided at start (main.cc).
  good.hypervisor = "firecracker";
  good.jailer = "/usr/bin/jailer";
  good.jailer_uid = 123;
  good.jailer_gid = 100;
  ASSERT_TRUE(Validate(good));
}

TEST(DaemonConfigTest, LoadsYamlAndRefusesUnknownKeys) {
  testing::TempDir dir;
  {
    std::ofstream(dir / "ok.yaml") << "data-dir: /srv/hearth\nmemory-ratio: 1.5\nlisten: none\n"
                                   << "hypervisor: firecracker\nfirecracker: /opt/fc/firecracker\n"
                                   << "jailer: /opt/fc/jailer\njailer-uid: 123\njailer-gid: 100\n"
                                   << "jailer-chroot-base: /srv/fc\n";
    std::ofstream(dir / "unknown.yaml") << "data_dir: /srv/hearth\n";
    std::ofstream(dir / "type.yaml") << "memory-ratio: lots\n";
    std::ofstream(dir / "broken.yaml") << "listen: [\n";
  }
  DaemonConfig cfg;
  ASSERT_TRUE(LoadConfigFile(dir / "ok.yaml", cfg));
  EXPECT_EQ(cfg.data_dir, "/srv/hearth");
  EXPECT_EQ(cfg.memory_ratio, 1.5);
  EXPECT_EQ(cfg.listen, "none");
  EXPECT_EQ(cfg.hypervisor, "firecracker");
  EXPECT_EQ(cfg.firecracker, "/opt/fc/firecracker");
  EXPECT_EQ(cfg.jailer, "/opt/fc/jailer");
  EXPECT_EQ(cfg.jailer_uid, 123);
  EXPECT_EQ(cfg.jailer_gid, 100);
  EXPECT_EQ(cfg.jailer_chroot_base, "/srv/fc");
  auto unknown = LoadConfigFile(dir / "unknown.yaml", cfg);
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("unknown key 'data_dir'"), std::string::npos);
  auto type = LoadConfigFile(dir / "type.yaml", cfg);
  ASSERT_FALSE(type);
  EXPECT_NE(type.error().message.find("'memory-ratio'"), std::string::npos);
  EXPECT_FALSE(LoadConfigFile(dir / "broken.yaml", cfg));
  EXPECT_FALSE(LoadConfigFile(dir / "missing.yaml", cfg));
}

// Found by fuzz/config_fuzz: a key that is not a scalar made LoadConfigFile throw (hearthd died
// with std::terminate instead of naming the problem).
TEST(DaemonConfigTest, RefusesKeysThatAreNotNames) {
  testing::TempDir dir;
  std::ofstream(dir / "seq.yaml") << "data-dir: /srv/hearth\n? [listen, store]\n: none\n";
  std::ofstream(dir / "map.yaml") << "{a: b}: 1\n";
  std::ofstream(dir / "null.yaml") << "? \n: 1\n";
  for (const char* name : {"seq.yaml", "map.yaml", "null.yaml"}) {
    DaemonConfig cfg;
    auto s = LoadConfigFile(dir / name, cfg);
    ASSERT_FALSE(s) << name;
    EXPECT_NE(s.error().message.find("a key is not a name"), std::string::npos)
        << s.error().message;
  }
}

}  // namespace
}  // namespace hearth::config

#include <gtest/gtest.h>

#include <filesystem>
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
      // Loopback, multicast and link-local pools cannot route to VMs.
      {[](DaemonConfig& c) { c.network_pool = "127.0.0.0/8"; }, "overlaps 127.0.0.0/8 (loopback)"},
      {[](DaemonConfig& c) { c.network_pool = "224.0.0.0/8"; }, "224.0.0.0/4 (multicast)"},
      {[](DaemonConfig& c) { c.network_pool = "169.254.0.0/16"; }, "169.254.0.0/16 (link-local)"},
      // Strings that reach paths, argv and logs carry no control characters.
      {[](DaemonConfig& c) { c.data_dir = std::string("/srv/h\0x", 8); },
       "--data-dir: '/srv/h\\x00x' contains a NUL byte"},
      {[](DaemonConfig& c) { c.jailer = "/usr/bin/jailer\n"; }, "--jailer: '/usr/bin/jailer\\n'"},
      {[](DaemonConfig& c) { c.allowed_paths = {"images"}; },
       "--allowed-paths: 'images' is not an absolute path"},
      {[](DaemonConfig& c) { c.allowed_paths = {"/srv/a\x1b[0m"}; },
       "--allowed-paths: '/srv/a\\x1b[0m' contains an escape"},
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
  EXPECT_EQ(good.allowed_paths,
            (std::vector<std::string>{"/var/lib/hearth/images", "/srv/hearth"}));
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
    std::ofstream(dir / "unknown.yaml") << "data_dri: /srv/hearth\n";
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
  EXPECT_NE(unknown.error().message.find("unknown key 'data_dri'"), std::string::npos);
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

TEST(DaemonConfigTest, ConnectionLimitsFromYamlAreChecked) {
  testing::TempDir dir;
  std::ofstream(dir / "limits.yaml") << "max-connections: 200\nmax-connections-per-address: 8\n"
                                        "first-byte-timeout: 250ms\n";
  DaemonConfig c;
  ASSERT_TRUE(LoadConfigFile(dir / "limits.yaml", c));
  EXPECT_EQ(c.max_connections, 200);
  EXPECT_EQ(c.max_connections_per_address, 8);
  ASSERT_TRUE(Validate(c));
  EXPECT_EQ(FirstByteTimeout(c), std::chrono::milliseconds(250));
  EXPECT_EQ(FirstByteTimeout(DaemonConfig{}), std::chrono::seconds(5));

  for (auto [mutate, says] : std::initializer_list<std::pair<void (*)(DaemonConfig&), const char*>>{
           {[](DaemonConfig& d) { d.max_connections = 0; }, "--max-connections: 0"},
           {[](DaemonConfig& d) { d.max_connections_per_address = -1; },
            "--max-connections-per-address: -1"},
           {[](DaemonConfig& d) { d.first_byte_timeout = "1ms"; }, "--first-byte-timeout: '1ms'"},
           {[](DaemonConfig& d) { d.first_byte_timeout = "soon"; },
            "--first-byte-timeout: 'soon'"}}) {
    DaemonConfig bad;
    mutate(bad);
    auto s = Validate(bad);
    ASSERT_FALSE(s) << says;
    EXPECT_NE(s.error().message.find(says), std::string::npos) << s.error().message;
  }
}

TEST(DaemonConfigTest, RefusesDuplicateYamlKeys) {
  testing::TempDir dir;
  std::ofstream(dir / "dup.yaml") << "network-pool: 172.30.0.0/16\nlisten: none\n"
                                  << "network-pool: 127.0.0.0/8\n";
  DaemonConfig cfg;
  auto s = LoadConfigFile(dir / "dup.yaml", cfg);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("key 'network-pool' is given twice (again on line 3)"),
            std::string::npos)
      << s.error().message;
}

// One naming rule: YAML fields are snake_case, flags kebab-case; the config file takes both.
TEST(DaemonConfigTest, AcceptsSnakeCaseKeysButNotBothSpellings) {
  testing::TempDir dir;
  std::ofstream(dir / "snake.yaml") << "data_dir: /srv/snake\nmemory_ratio: 1.5\n"
                                    << "max-connections-per-address: 9\n";
  std::ofstream(dir / "both.yaml") << "data-dir: /srv/a\nlisten: none\ndata_dir: /srv/b\n";
  DaemonConfig cfg;
  ASSERT_TRUE(LoadConfigFile(dir / "snake.yaml", cfg));
  EXPECT_EQ(cfg.data_dir, "/srv/snake");
  EXPECT_EQ(cfg.memory_ratio, 1.5);
  EXPECT_EQ(cfg.max_connections_per_address, 9);
  auto s = LoadConfigFile(dir / "both.yaml", cfg);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("keys 'data-dir' and 'data_dir' are the same option (again on "
                                   "line 3)"),
            std::string::npos)
      << s.error().message;
}

TEST(DaemonConfigTest, AllowedPathsFromYamlAndResolved) {
  testing::TempDir dir;
  std::filesystem::create_directories(dir / "real");
  std::filesystem::create_symlink(dir / "real", dir / "link");
  std::ofstream(dir / "list.yaml")
      << "allowed-paths: [" << (dir / "link").string() << ", /srv/hearth/../guests]\n";
  std::ofstream(dir / "one.yaml") << "allowed-paths: /srv/guests\n";
  DaemonConfig cfg;
  ASSERT_TRUE(LoadConfigFile(dir / "list.yaml", cfg));
  ASSERT_TRUE(Validate(cfg));
  EXPECT_EQ(AllowedPaths(cfg), (std::vector<std::filesystem::path>{
                                   std::filesystem::canonical(dir / "real"), "/srv/guests"}));
  DaemonConfig one;
  ASSERT_TRUE(LoadConfigFile(dir / "one.yaml", one));
  EXPECT_EQ(one.allowed_paths, (std::vector<std::string>{"/srv/guests"}));
}

}  // namespace
}  // namespace hearth::config

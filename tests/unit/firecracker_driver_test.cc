// The Firecracker driver's parts that run without Firecracker: its command line (plain and
// jailed), where its files are on the host and in the jail, the metrics it sums, and the host CPU
// model that snapshots record.
#include "hv/firecracker/firecracker_driver.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <thread>

#include "hv/firecracker/firecracker_host.h"
#include "model/host.h"
#include "snapshot/manifest.h"
#include "support/temp_dir.h"

namespace hearth::hv::firecracker {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

MachineSpec Spec(const fs::path& data_dir) {
  MachineSpec s;
  s.vm_id = "vm-0123456789abcdef";
  s.name = "web";
  UseLayout(s, Paths(data_dir), s.vm_id);
  return s;
}

TEST(FirecrackerDriverTest, RunsFirecrackerOnTheVmsSocketOrThroughTheJailer) {
  FirecrackerDriverOptions o;
  o.binary = "/opt/fc/firecracker";
  FirecrackerDriver plain(o);
  MachineSpec spec = Spec("/var/lib/hearth");
  EXPECT_EQ(plain.Argv(spec),
            (std::vector<std::string>{"/opt/fc/firecracker", "--api-sock",
                                      "/var/lib/hearth/vms/vm-0123456789abcdef/firecracker.socket",
                                      "--id", "vm-0123456789abcdef"}));
  EXPECT_FALSE(plain.TakesTapFd());
  EXPECT_EQ(plain.Backend(), "firecracker");

  o.jail = {"/opt/fc/jailer", "/opt/fc/firecracker", 123, 100, "/srv/jailer"};
  FirecrackerDriver jailed(o);
  EXPECT_EQ(jailed.Argv(spec),
            (std::vector<std::string>{"/opt/fc/jailer", "--id", "vm-0123456789abcdef",
                                      "--exec-file", "/opt/fc/firecracker", "--uid", "123", "--gid",
                                      "100", "--chroot-base-dir", "/srv/jailer", "--", "--api-sock",
                                      "/firecracker.socket"}));
  VmmRoot root = jailed.RootFor(spec);
  EXPECT_EQ(root.dir(), "/srv/jailer/firecracker/vm-0123456789abcdef/root");
  EXPECT_EQ(root.Vmm(kMetricsName), "/metrics.fifo");
  EXPECT_EQ(root.Host(kMetricsName),
            "/srv/jailer/firecracker/vm-0123456789abcdef/root/metrics.fifo");
  VmmRoot direct = plain.RootFor(spec);
  EXPECT_EQ(direct.Vmm(kLogName), "/var/lib/hearth/vms/vm-0123456789abcdef/firecracker.log");
}

TEST(FirecrackerDriverTest, TheJailGetsLinksOfItsInputsAndGivesBackItsOutputs) {
  testing::TempDir dir;
  fs::create_directories(dir / "img");
  std::ofstream(dir / "img" / "vmlinux") << "kernel";
  JailConfig jail{"/opt/fc/jailer", "/opt/fc/firecracker", getuid(), getgid(), dir / "jail"};
  VmmRoot root = VmmRoot::Jailed(jail, "vm-1");
  ASSERT_TRUE(root.Reset());
  auto kernel = root.Import(dir / "img" / "vmlinux", "vmlinux", false, true);
  ASSERT_TRUE(kernel) << kernel.error().message;
  EXPECT_EQ(*kernel, "/vmlinux");
  struct stat a {
  }, b{};
  ASSERT_EQ(stat((dir / "img" / "vmlinux").c_str(), &a), 0);
  ASSERT_EQ(stat(root.Host("vmlinux").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino) << "a hard link, not a copy";
  ASSERT_TRUE(root.MakeFifo(kMetricsName));
  ASSERT_EQ(stat(root.Host(kMetricsName).c_str(), &b), 0);
  EXPECT_TRUE(S_ISFIFO(b.st_mode));
  std::ofstream(root.Host("state.saving")) << "state";
  ASSERT_TRUE(root.Export("state.saving", dir / "state"));
  EXPECT_TRUE(fs::exists(dir / "state"));
  EXPECT_FALSE(fs::exists(root.Host("state.saving")));
  // A new process starts from an empty jail; a deleted VM leaves none.
  ASSERT_TRUE(root.Reset());
  EXPECT_FALSE(fs::exists(root.Host("vmlinux")));
  root.Remove();
  EXPECT_FALSE(fs::exists(dir / "jail" / "firecracker" / "vm-1"));
  EXPECT_TRUE(fs::exists(dir / "img" / "vmlinux")) << "the image's kernel stays";

  VmmRoot direct = VmmRoot::Direct(dir / "vm");
  auto same = direct.Import(dir / "img" / "vmlinux", "vmlinux", false, true);
  ASSERT_TRUE(same);
  EXPECT_EQ(*same, (dir / "img" / "vmlinux").string()) << "unjailed: the host path itself";
}

TEST(FirecrackerMetricsTest, SumsDeltaCountersAndKeepsTheLastLatencies) {
  MetricsTotals t;
  t.Add(R"({"utc_timestamp_ms":1,"net_eth0":{"rx_bytes_count":100,"tx_bytes_count":10,
            "rx_packets_count":2,"tx_packets_count":1},"net":{"rx_bytes_count":999},
            "block_rootfs":{"read_bytes":4096,"write_bytes":512,"read_count":1,"write_count":1},
            "block":{"read_bytes":99999},
            "latencies_us":{"full_create_snapshot":0,"load_snapshot":8000}})");
  t.Add(R"({"net_eth0":{"rx_bytes_count":50,"tx_bytes_count":5,"rx_packets_count":1,
            "tx_packets_count":1},"block_rootfs":{"read_bytes":4096,"write_bytes":0,
            "read_count":1,"write_count":0},"block_data":{"write_bytes":1024,"write_count":2},
            "latencies_us":{"full_create_snapshot":15000,"load_snapshot":0}})");
  t.Add("not json");
  EXPECT_EQ(t.net_rx_bytes, 150);
  EXPECT_EQ(t.net_tx_bytes, 15);
  EXPECT_EQ(t.net_rx_packets, 3);
  EXPECT_EQ(t.net_tx_packets, 2);
  EXPECT_EQ(t.block_read_bytes, 8192) << "the per-drive sections, not the aggregate";
  EXPECT_EQ(t.block_write_bytes, 1536);
  EXPECT_EQ(t.block_read_ops, 2);
  EXPECT_EQ(t.block_write_ops, 3);
  EXPECT_EQ(t.load_snapshot_us, 8000) << "a current value, kept while later lines say 0";
  EXPECT_EQ(t.full_create_snapshot_us, 15000);
  EXPECT_EQ(t.lines, 2);
  EXPECT_EQ(t.bad_lines, 1);
  MetricsTotals aggregate;
  aggregate.Add(R"({"block":{"read_bytes":7,"read_count":1}})");
  EXPECT_EQ(aggregate.block_read_bytes, 7) << "the aggregate when there is no per-drive section";
}

// Found by fuzz/firecracker_metrics_fuzz: a float out of int64_t's range was converted with
// undefined behaviour, negative values were summed and the sums could overflow.
TEST(FirecrackerMetricsTest, OnlyUnsignedIntegersCountAndTheSumsSaturate) {
  MetricsTotals t;
  t.Add(R"({"net_eth0":{"rx_bytes_count":1e300,"tx_bytes_count":-5,"rx_packets_count":1.5,
            "tx_packets_count":"7"},"latencies_us":{"load_snapshot":-1}})");
  EXPECT_EQ(t, (MetricsTotals{.lines = 1}));
  t.Add(R"({"net_eth0":{"rx_bytes_count":9223372036854775807,"tx_bytes_count":18446744073709551615},
            "block":{"read_bytes":9223372036854775807}})");
  t.Add(R"({"net_eth0":{"rx_bytes_count":9223372036854775807,"tx_bytes_count":1},
            "block":{"read_bytes":1}})");
  EXPECT_EQ(t.net_rx_bytes, INT64_MAX);
  EXPECT_EQ(t.net_tx_bytes, INT64_MAX);
  EXPECT_EQ(t.block_read_bytes, INT64_MAX);
  EXPECT_EQ(t.lines, 3);
}

TEST(FirecrackerMetricsTest, TheReaderKeepsTheFifoDrainedAndSumsPerVm) {
  testing::TempDir dir;
  fs::path fifo = dir / "metrics.fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  MetricsReader reader;
  ASSERT_TRUE(reader.Attach("vm-1", fifo));
  // As Firecracker opens it: read-write, non-blocking.
  int writer = open(fifo.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(writer, 0);
  std::string line = R"({"block_rootfs":{"read_bytes":10,"read_count":1}})";
  line += "\n";
  // Far more than a pipe holds: only a reader that keeps up lets every line through.
  int written = 0;
  for (int i = 0; i < 5000; ++i) {
    for (int tries = 0; tries < 1000; ++tries) {
      if (write(writer, line.data(), line.size()) == static_cast<ssize_t>(line.size())) {
        ++written;
        break;
      }
      // The fifo is full: wait until the reader has made room.
      pollfd room{writer, POLLOUT, 0};
      if (poll(&room, 1, 5000) <= 0) break;
    }
  }
  EXPECT_EQ(written, 5000);
  auto totals = reader.Totals("vm-1");
  ASSERT_TRUE(totals);
  EXPECT_EQ(totals->block_read_bytes, 50000);
  EXPECT_EQ(totals->lines, 5000);
  // A new process: the totals start again.
  ASSERT_TRUE(reader.Attach("vm-1", fifo));
  EXPECT_EQ(reader.Totals("vm-1")->lines, 0);
  reader.Detach("vm-1");
  EXPECT_FALSE(reader.Totals("vm-1"));
  close(writer);
}

// Writes `text` into the FIFO from another thread (blocking: as fast as the reader takes it).
std::thread WriteInto(const fs::path& fifo, std::string text) {
  return std::thread([fifo, text = std::move(text)] {
    int fd = open(fifo.c_str(), O_WRONLY | O_CLOEXEC);  // the reader holds it open: no wait
    for (size_t at = 0; fd >= 0 && at < text.size();) {
      ssize_t n = write(fd, text.data() + at, text.size() - at);
      if (n <= 0) break;
      at += static_cast<size_t>(n);
    }
    close(fd);
  });
}

TEST(FirecrackerMetricsTest, ALineTooLongIsSkippedWholeAndNotHeldInMemory) {
  testing::TempDir dir;
  fs::path fifo = dir / "metrics.fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  MetricsReader reader;
  ASSERT_TRUE(reader.Attach("vm-1", fifo));
  // An 8 MiB line whose end would pass for a metrics line, a real line, then a line that does not
  // end (512 KiB so far).
  std::string text = std::string(8 << 20, ' ') +
                     R"({"block_rootfs":{"read_bytes":1000000,"read_count":1}})" + "\n" +
                     R"({"block_rootfs":{"read_bytes":10,"read_count":1}})" + "\n" +
                     std::string(512 << 10, 'z');
  WriteInto(fifo, std::move(text)).join();
  auto totals = reader.Totals("vm-1");
  ASSERT_TRUE(totals);
  EXPECT_EQ(totals->lines, 1);
  EXPECT_EQ(totals->block_read_bytes, 10) << "nothing from the long line";
  EXPECT_EQ(totals->bad_lines, 2) << "the long line and the one under way";
  EXPECT_LE(reader.pending_bytes("vm-1"), kMaxMetricsLineBytes);
  // The line under way ends: the next one counts again.
  WriteInto(fifo, "zz\n" + std::string(R"({"block_rootfs":{"read_bytes":5}})") + "\n").join();
  totals = reader.Totals("vm-1");
  EXPECT_EQ(totals->lines, 2);
  EXPECT_EQ(totals->block_read_bytes, 15);
  EXPECT_EQ(totals->bad_lines, 2);
}

TEST(FirecrackerMetricsTest, AFifoThatNeverRunsDryDoesNotHoldTheReader) {
  testing::TempDir dir;
  fs::path fifo = dir / "metrics.fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  MetricsReader reader;
  ASSERT_TRUE(reader.Attach("vm-1", fifo));
  // Junk without a newline, as fast as the FIFO takes it, until told to stop (or after 8 s).
  std::atomic<bool> stop{false};
  std::atomic<int64_t> written{0};
  std::thread flood([&] {
    int fd = open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    std::string junk(65536, 'z');
    auto until = std::chrono::steady_clock::now() + 8s;
    while (fd >= 0 && !stop && std::chrono::steady_clock::now() < until) {
      ssize_t n = write(fd, junk.data(), junk.size());
      if (n > 0) written += n;
    }
    close(fd);
  });
  auto deadline = std::chrono::steady_clock::now() + 8s;
  while (written < (4 << 20) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  size_t most_pending = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 20; ++i) {
    auto totals = reader.Totals("vm-1");
    EXPECT_TRUE(totals);
    most_pending = std::max(most_pending, reader.pending_bytes("vm-1"));
  }
  auto took = std::chrono::steady_clock::now() - t0;
  stop = true;
  flood.join();
  EXPECT_LT(took, 1s) << "20 reads of the totals while the FIFO floods";
  EXPECT_LE(most_pending, kMaxMetricsLineBytes);
  EXPECT_GE(written.load(), 4 << 20);
  EXPECT_EQ(reader.Totals("vm-1")->bad_lines, 1) << "one endless line";
}

TEST(FirecrackerHostTest, FindsBinariesAndSaysWhereItLooked) {
  testing::TempDir dir;
  fs::create_directories(dir / "bin");
  std::ofstream(dir / "bin" / "firecracker") << "#!/bin/sh\n";
  fs::permissions(dir / "bin" / "firecracker", fs::perms::owner_all);
  std::string path = "/nonexistent:" + (dir / "bin").string();
  auto found = FindExecutable("", "firecracker", "firecracker", path);
  ASSERT_TRUE(found) << found.error().message;
  EXPECT_EQ(*found, dir / "bin" / "firecracker");
  auto missing = FindExecutable("", "firecracker", "firecracker", "/nonexistent:/also-not");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Code::kFailedPrecondition);
  EXPECT_NE(missing.error().message.find("looked in PATH (/nonexistent:/also-not)"),
            std::string::npos);
  EXPECT_NE(missing.error().message.find("--firecracker PATH"), std::string::npos);
  auto wrong = FindExecutable("/opt/none/jailer", "jailer", "jailer", path);
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.error().message.find("--jailer: /opt/none/jailer"), std::string::npos);
  auto no_kvm = CheckKvmDevice(dir / "kvm");
  ASSERT_FALSE(no_kvm);
  EXPECT_NE(no_kvm.error().message.find("Firecracker needs KVM"), std::string::npos);
  EXPECT_NE(no_kvm.error().message.find("kvm_intel"), std::string::npos);
}

TEST(HostCpuModelTest, NamesVendorFamilyModelSteppingAndName) {
  std::string cpuinfo =
      "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\n"
      "model name\t: Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz\nstepping\t: 7\n\n"
      "processor\t: 1\nvendor_id\t: AuthenticAMD\n";
  EXPECT_EQ(ParseCpuModel(cpuinfo),
            "GenuineIntel family 6 model 85 stepping 7 (Intel(R) Xeon(R) Platinum 8259CL CPU @ "
            "2.50GHz)");
  EXPECT_EQ(ParseCpuModel(""), "");
  EXPECT_FALSE(HostCpuModel().empty()) << "this host's /proc/cpuinfo";
}

TEST(SnapshotCompatibilityTest, AnotherFirecrackerOrCpuIsRefusedWithBothValuesAndAColdBoot) {
  snapshot::Origin taken;
  taken.backend = "firecracker";
  taken.hypervisor_version = "Firecracker v1.16.1";
  taken.cpu_model = "GenuineIntel family 6 model 85 stepping 7 (Xeon)";
  snapshot::Origin now = taken;
  EXPECT_TRUE(snapshot::CheckOrigin(taken, now, "web"));
  now.hypervisor_version = "Firecracker v1.15.0";
  auto version = snapshot::CheckOrigin(taken, now, "web");
  ASSERT_FALSE(version);
  EXPECT_EQ(version.error().code, Code::kFailedPrecondition);
  EXPECT_NE(version.error().message.find("'Firecracker v1.16.1'"), std::string::npos);
  EXPECT_NE(version.error().message.find("'Firecracker v1.15.0'"), std::string::npos);
  EXPECT_NE(version.error().message.find("hearth vm start --fresh web"), std::string::npos);
  now = taken;
  now.cpu_model = "AuthenticAMD family 25 model 1 stepping 1 (EPYC)";
  auto cpu = snapshot::CheckOrigin(taken, now, "web");
  ASSERT_FALSE(cpu);
  EXPECT_NE(cpu.error().message.find("host CPU 'GenuineIntel"), std::string::npos);
  EXPECT_NE(cpu.error().message.find("'AuthenticAMD"), std::string::npos);
  // A manifest from before the CPU was recorded (QEMU snapshots) still restores.
  taken.cpu_model.clear();
  EXPECT_TRUE(snapshot::CheckOrigin(taken, now, "web"));
}

TEST(SnapshotCompatibilityTest, ManifestsWithoutACpuModelStillParse) {
  snapshot::Manifest m;
  m.vm_id = "vm-1";
  m.origin.backend = "qemu-tcg";
  m.origin.cpu_model = "GenuineIntel family 6";
  auto j = snapshot::ToJson(m);
  EXPECT_EQ(snapshot::ManifestFromJson(j)->origin.cpu_model, "GenuineIntel family 6");
  j["origin"].erase("cpu_model");
  auto old = snapshot::ManifestFromJson(j);
  ASSERT_TRUE(old) << old.error().message;
  EXPECT_EQ(old->origin.cpu_model, "");
}

}  // namespace
}  // namespace hearth::hv::firecracker

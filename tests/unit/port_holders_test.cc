// Who holds a host port: the /proc/net parsers, and LinuxPortHolders over a directory laid out
// like /proc (the real /proc is covered by tests/integration/input_limits_test.cc).
#include "model/port_holders.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "support/temp_dir.h"

namespace hearth {
namespace {

constexpr const char* kTcp =
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout "
    "inode\n"
    "   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 "
    "4242 1 0000000000000000 100 0 0 10 0\n"
    "   1: 0100007F:1E61 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 "
    "5151 1 0000000000000000 100 0 0 10 0\n"
    "   2: 0100007F:9C40 0100007F:0016 01 00000000:00000000 00:00000000 00000000     0        0 "
    "6161 1 0000000000000000 20 4 30 10 -1\n"
    "garbage line\n";

constexpr const char* kUdp6 =
    "  sl  local_address                         remote_address                        st "
    "tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n"
    "  512: 00000000000000000000000000000000:0035 00000000000000000000000000000000:0000 07 "
    "00000000:00000000 00:00000000 00000000   101        0 7373 2 0000000000000000 0\n"
    "  513: 0000000000000000FFFF00000302010A:14E9 00000000000000000000000000000000:0000 07 "
    "00000000:00000000 00:00000000 00000000   101        0 7474 2 0000000000000000 0\n"
    "  514: 00000000000000000000000001000000:007B 00000000000000000000000000000000:0000 07 "
    "00000000:00000000 00:00000000 00000000   101        0 7575 2 0000000000000000 0\n";

TEST(PortHoldersTest, ParsesProcNetSockets) {
  EXPECT_EQ(ParseProcNetSockets(kTcp, /*listening_only=*/true),
            (std::vector<ProcSocket>{{22, 4242, "0.0.0.0"}, {7777, 5151, "127.0.0.1"}}));
  EXPECT_EQ(ParseProcNetSockets(kTcp, /*listening_only=*/false).size(), 3u)
      << "the connected socket from port 40000 counts when not only listeners are wanted";
  EXPECT_EQ(
      ParseProcNetSockets(kUdp6, false),
      (std::vector<ProcSocket>{{53, 7373, "::"}, {5353, 7474, "10.1.2.3"}, {123, 7575, "::1"}}));
  EXPECT_TRUE(ParseProcNetSockets("", true).empty());
}

TEST(PortHoldersTest, ParsesSocketLinks) {
  EXPECT_EQ(ParseSocketLink("socket:[4242]"), 4242u);
  EXPECT_FALSE(ParseSocketLink("pipe:[4242]"));
  EXPECT_FALSE(ParseSocketLink("socket:[]"));
  EXPECT_FALSE(ParseSocketLink("socket:[12x]"));
  EXPECT_FALSE(ParseSocketLink("/dev/null"));
  EXPECT_FALSE(ParseSocketLink(""));
}

TEST(PortHoldersTest, NamesTheProcessHoldingThePort) {
  testing::TempDir proc;
  namespace fs = std::filesystem;
  fs::create_directories(proc / "net");
  std::ofstream(proc / "net" / "tcp") << kTcp;
  std::ofstream(proc / "net" / "tcp6") << "";
  std::ofstream(proc / "net" / "udp") << "";
  std::ofstream(proc / "net" / "udp6") << kUdp6;
  fs::create_directories(proc / "412" / "fd");
  std::ofstream(proc / "412" / "comm") << "sshd\n";
  fs::create_symlink("/dev/null", proc / "412" / "fd" / "0");
  fs::create_symlink("socket:[4242]", proc / "412" / "fd" / "3");
  fs::create_directories(proc / "77" / "fd");
  std::ofstream(proc / "77" / "comm") << "dnsmasq\n";
  fs::create_symlink("socket:[7373]", proc / "77" / "fd" / "5");
  fs::create_directories(proc / "self");  // not a pid

  LinuxPortHolders holders(proc.path());
  EXPECT_EQ(holders.Holder("", 22, Protocol::kTcp), "sshd (pid 412)");
  EXPECT_EQ(holders.Holder("", 53, Protocol::kUdp), "dnsmasq (pid 77)");
  EXPECT_EQ(holders.Holder("", 7777, Protocol::kTcp),
            "a socket of no process visible to hearthd (inode 5151)");
  EXPECT_FALSE(holders.Holder("", 22, Protocol::kUdp));
  EXPECT_FALSE(holders.Holder("", 40000, Protocol::kTcp)) << "a client socket does not listen";
  EXPECT_FALSE(holders.Holder("", 8080, Protocol::kTcp));
}

TEST(PortHoldersTest, ASocketOnOneAddressHoldsThePortOnlyThere) {
  testing::TempDir proc;
  namespace fs = std::filesystem;
  fs::create_directories(proc / "net");
  std::ofstream(proc / "net" / "tcp") << kTcp;
  std::ofstream(proc / "net" / "tcp6") << "";
  std::ofstream(proc / "net" / "udp") << "";
  std::ofstream(proc / "net" / "udp6") << kUdp6;
  LinuxPortHolders holders(proc.path());
  // 0.0.0.0:22 and [::]:53 hold their port on every address.
  EXPECT_TRUE(holders.Holder("127.0.0.1", 22, Protocol::kTcp));
  EXPECT_TRUE(holders.Holder("10.9.9.9", 53, Protocol::kUdp));
  // 127.0.0.1:7777 holds it on 127.0.0.1 and on all addresses, not on another one.
  EXPECT_TRUE(holders.Holder("127.0.0.1", 7777, Protocol::kTcp));
  EXPECT_TRUE(holders.Holder("", 7777, Protocol::kTcp));
  EXPECT_FALSE(holders.Holder("10.1.2.3", 7777, Protocol::kTcp));
  // [::ffff:10.1.2.3]:5353 is 10.1.2.3's; [::1]:123 holds no IPv4 address but counts for all.
  EXPECT_TRUE(holders.Holder("10.1.2.3", 5353, Protocol::kUdp));
  EXPECT_FALSE(holders.Holder("127.0.0.1", 5353, Protocol::kUdp));
  EXPECT_FALSE(holders.Holder("127.0.0.1", 123, Protocol::kUdp));
  EXPECT_TRUE(holders.Holder("", 123, Protocol::kUdp));
}

TEST(PortHoldersTest, TheHostsAddressesAreItsInterfacesAndLoopback) {
  LinuxPortHolders holders;
  EXPECT_TRUE(holders.IsHostAddress("127.0.0.1"));
  EXPECT_TRUE(holders.IsHostAddress("127.3.2.1")) << "all of 127.0.0.0/8 is local";
  EXPECT_FALSE(holders.IsHostAddress("192.0.2.1")) << "TEST-NET-1 is nobody's";
  EXPECT_FALSE(holders.IsHostAddress("localhost"));
  EXPECT_FALSE(holders.IsHostAddress(""));
}

}  // namespace
}  // namespace hearth

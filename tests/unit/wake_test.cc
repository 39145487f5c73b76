// What wakes a suspended VM: only an IPv4 packet for the guest, and with wake_ports only a listed
// protocol/port; neighbour discovery, multicast, broadcast and other addresses never do.
#include "net/wake.h"

#include <gtest/gtest.h>

#include <string>

namespace hearth::net {
namespace {

const std::string kGuestMac("\x52\x54\xac\x1e\x00\x02", 6);

// An Ethernet frame to `dst_mac` carrying an IPv4 packet to `dst_ip` (protocol, dst port).
std::string Frame(const std::string& dst_mac, uint32_t dst_ip, uint8_t proto = 6,
                  uint16_t port = 80, uint16_t ethertype = 0x0800) {
  std::string f = dst_mac + std::string("\x02\x00\x00\x00\x00\x01", 6);
  f += static_cast<char>(ethertype >> 8);
  f += static_cast<char>(ethertype & 0xff);
  std::string ip(20, '\0');
  ip[0] = 0x45;
  ip[9] = static_cast<char>(proto);
  for (int i = 0; i < 4; ++i) ip[16 + i] = static_cast<char>(dst_ip >> (24 - 8 * i));
  std::string l4(20, '\0');
  l4[2] = static_cast<char>(port >> 8);
  l4[3] = static_cast<char>(port & 0xff);
  return f + ip + l4;
}

WakeFilter Filter(std::vector<WakePort> ports = {}) {
  auto f = MakeWakeFilter("52:54:ac:1e:00:02", "172.30.0.2", std::move(ports));
  EXPECT_TRUE(f) << f.error().message;
  return *f;
}

constexpr uint32_t kGuestIp = (172u << 24) | (30u << 16) | 2u;

TEST(WakeClassifyTest, AnIpv4PacketForTheGuestWakesIt) {
  EXPECT_EQ(Classify(Frame(kGuestMac, kGuestIp), Filter()), FrameVerdict::kWake);
  EXPECT_EQ(Classify(Frame(kGuestMac, kGuestIp, 17, 53), Filter()), FrameVerdict::kWake);
  EXPECT_EQ(Classify(Frame(kGuestMac, kGuestIp, 1, 0), Filter()), FrameVerdict::kWake) << "ICMP";
}

TEST(WakeClassifyTest, NoiseNeverWakes) {
  std::string broadcast(6, '\xff');
  std::string ipv6_multicast = "\x33\x33\x00\x00\x00\x01";
  EXPECT_EQ(Classify(Frame(broadcast, kGuestIp), Filter()), FrameVerdict::kNoise);
  EXPECT_EQ(Classify(Frame(ipv6_multicast, kGuestIp, 58, 0, 0x86dd), Filter()),
            FrameVerdict::kNoise);
  EXPECT_EQ(Classify(Frame(kGuestMac, kGuestIp, 58, 0, 0x86dd), Filter()), FrameVerdict::kNoise)
      << "IPv6 to the guest's MAC (neighbour discovery)";
  EXPECT_EQ(Classify(Frame(kGuestMac, kGuestIp, 0, 0, 0x0806), Filter()), FrameVerdict::kNoise)
      << "ARP";
  EXPECT_EQ(Classify(Frame(kGuestMac, kGuestIp + 1), Filter()), FrameVerdict::kNoise)
      << "another address";
  EXPECT_EQ(Classify("short", Filter()), FrameVerdict::kNoise);
}

TEST(WakeClassifyTest, WakePortsRestrictWhatWakes) {
  WakeFilter f = Filter({{Protocol::kTcp, 80}, {Protocol::kUdp, 53}});
  EXPECT_EQ(Classify(Frame(kGuestMac, kGuestIp, 6, 80), f), FrameVerdict::kWake);
  EXPECT_EQ(Classify(Frame(kGuestMac, kGuestIp, 17, 53), f), FrameVerdict::kWake);
  EXPECT_EQ(Classify(Frame(kGuestMac, kGuestIp, 6, 22), f), FrameVerdict::kFiltered);
  EXPECT_EQ(Classify(Frame(kGuestMac, kGuestIp, 17, 80), f), FrameVerdict::kFiltered);
  EXPECT_EQ(Classify(Frame(kGuestMac, kGuestIp, 1, 0), f), FrameVerdict::kFiltered) << "ICMP";
}

TEST(WakeClassifyTest, FilterInputsAreChecked) {
  EXPECT_FALSE(MakeWakeFilter("52:54", "172.30.0.2", {}));
  EXPECT_FALSE(MakeWakeFilter("52:54:ac:1e:00:02", "not-an-ip", {}));
}

}  // namespace
}  // namespace hearth::net

// The waker on a real tap (root): packets from the host to the guest's address wake it exactly
// once however many arrive, frames are kept within the limits and the rest counted, and noise on
// the tap (broadcast, IPv6 multicast, packets for other ports with wake_ports) never wakes it.
#include "net/wake_listener.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "net/tun_device.h"
#include "support/daemon.h"
#include "support/scope_guard.h"

namespace hearth::net {
namespace {

using namespace std::chrono_literals;

class WakeListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(CreatePersistentTap(tap_));
    for (const auto& argv : std::vector<std::vector<std::string>>{
             {"sysctl", "-qw", fmt::format("net.ipv6.conf.{}.disable_ipv6=1", tap_)},
             {"ip", "addr", "add", host_ + "/30", "dev", tap_},
             {"ip", "link", "set", tap_, "up"},
             {"ip", "neigh", "replace", guest_, "lladdr", mac_, "dev", tap_, "nud", "permanent"}}) {
      auto r = testing::RunProgram(argv);
      ASSERT_EQ(r.exit_code, 0) << argv[0] << ": " << r.err;
    }
  }
  void TearDown() override { testing::RunProgram({"ip", "link", "del", tap_}); }

  void Watch(WakeListener& w, std::vector<WakePort> ports = {}) {
    auto fd = OpenTap(tap_);
    ASSERT_TRUE(fd) << fd.error().message;
    auto filter = MakeWakeFilter(mac_, guest_, std::move(ports));
    ASSERT_TRUE(filter);
    ASSERT_TRUE(w.Watch("vm", *fd, *filter));
    // The fd brings the tap's carrier up, but the kernel activates its queue only when its link
    // watch runs, which it batches (up to a second later while other links change, as when
    // hearthds of other tests make taps). Until then whatever is sent to the tap is dropped.
    auto until = std::chrono::steady_clock::now() + 5s;
    while (OperState() != "up") {
      ASSERT_LT(std::chrono::steady_clock::now(), until) << tap_ << " never came up";
      std::this_thread::sleep_for(5ms);
    }
  }
  std::string OperState() {
    std::ifstream in("/sys/class/net/" + tap_ + "/operstate");
    std::string state;
    in >> state;
    return state;
  }
  // A UDP datagram from the host to the guest's port.
  void SendUdp(int port) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    inet_pton(AF_INET, guest_.c_str(), &a.sin_addr);
    sendto(s, "x", 1, 0, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    close(s);
  }
  // A raw frame into the tap, as the host's stack would send it.
  void SendFrame(const std::string& frame) { ASSERT_TRUE(SendToGuest(tap_, {frame})); }

  std::string tap_ = fmt::format("hthwake{}", getpid() % 100000);
  std::string host_ = fmt::format("10.252.{}.1", getpid() % 250);
  std::string guest_ = fmt::format("10.252.{}.2", getpid() % 250);
  std::string mac_ = "52:54:0a:fc:00:02";
};

TEST_F(WakeListenerTest, AFloodFromSeveralSendersWakesOnceAndIsKeptWithinLimits) {
  WakeListener w(WakeLimits{64, 1 << 20});
  std::atomic<int> wakes{0};
  w.SetOnWake([&](const std::string& vm, auto) {
    EXPECT_EQ(vm, "vm");
    ++wakes;
  });
  Watch(w);
  std::vector<std::thread> senders;
  for (int t = 0; t < 4; ++t) {
    senders.emplace_back([&] {
      for (int i = 0; i < 2500; ++i) SendUdp(9);
    });
  }
  for (auto& s : senders) s.join();
  std::this_thread::sleep_for(200ms);
  Handoff h = w.TakeOver("vm");
  testing::Guard close_fd([&] { close(h.fd); });
  EXPECT_EQ(wakes.load(), 1) << "10,000 packets, one wake";
  ASSERT_GE(h.fd, 0);
  ASSERT_TRUE(h.woken_at.has_value());
  EXPECT_EQ(h.frames.size(), 64u) << "kept up to the limit";
  EXPECT_EQ(h.counters.kept, 64u);
  EXPECT_GT(h.counters.overflow, 0u) << "the rest counted";
  std::cerr << fmt::format("10,000 packets: kept {}, overflow {}, noise {}\n", h.counters.kept,
                           h.counters.overflow, h.counters.noise);
  EXPECT_LE(h.counters.kept + h.counters.overflow, 10000u);
}

TEST_F(WakeListenerTest, NoiseAndOtherPortsNeverWake) {
  WakeListener w;
  std::atomic<int> wakes{0};
  w.SetOnWake([&](const std::string&, auto) { ++wakes; });
  Watch(w, {{Protocol::kTcp, 80}});
  std::string guest_mac("\x52\x54\x0a\xfc\x00\x02", 6);
  std::string src("\x02\x00\x00\x00\x00\x01", 6);
  std::string payload(46, '\0');
  SendFrame(std::string(6, '\xff') + src + "\x08\x06" + payload);  // ARP broadcast
  SendFrame(std::string("\x33\x33\x00\x00\x00\x01", 6) + src + "\x86\xdd" + payload);  // IPv6 mc
  SendFrame(guest_mac + src + "\x86\xdd" + payload);  // IPv6 to the guest (ND)
  for (int i = 0; i < 10; ++i) SendUdp(53);           // for the guest, not a wake port
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(wakes.load(), 0);
  // A TCP SYN to port 80 does.
  int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(80);
  inet_pton(AF_INET, guest_.c_str(), &a.sin_addr);
  connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  for (int i = 0; i < 100 && wakes.load() == 0; ++i) std::this_thread::sleep_for(10ms);
  close(s);
  EXPECT_EQ(wakes.load(), 1);
  Handoff h = w.TakeOver("vm");
  close(h.fd);
  EXPECT_EQ(h.counters.filtered, 10u);
  EXPECT_GE(h.counters.noise, 2u) << "read and dropped, not kept";
  ASSERT_EQ(h.frames.size(), 1u) << "the SYN, kept for the guest";
  EXPECT_EQ(h.frames[0].substr(0, 6), guest_mac);
}

}  // namespace
}  // namespace hearth::net

// Network isolation from inside real guests. Guest "a" boots the default image with a probe added
// to its initramfs (a second cpio archive after the image's, which the kernel unpacks over the
// first): once the guest is ready, init runs /bin/hearth-probe, which tries what a hostile guest
// tries with busybox (nc, ping, arping, ip) and writes one console line per attempt
// ("hearth-probe: NAME ok|fail ..."). The test
// reads them with `hearth vm logs` and checks, on the host, what arrived. Guest "b" is a plain
// default-image VM with a published port; a client namespace is the outside world.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "image/cpio_archive.h"
#include "image/guest_init.h"
#include "net/tap.h"
#include "support/netns.h"
#include "support/vm_env.h"
#include "support/vm_fixture.h"

namespace hearth {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::RunResult;

// The ICMP echo requests that arrive in namespace `ns` (a raw socket sees a copy of each), by
// payload size, collected until destruction. The probe tells its pings apart by their size.
class EchoCollector {
 public:
  explicit EchoCollector(const std::string& ns) {
    std::promise<Status> ready;
    auto started = ready.get_future();
    thread_ = std::thread([this, ns, &ready] {
      if (auto s = testing::EnterNetns(ns); !s) return ready.set_value(s);
      int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
      if (fd < 0) return ready.set_value(Fail(Code::kInternal, "raw ICMP socket failed"));
      ready.set_value(Ok());
      while (!stop_) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 50) != 1) continue;
        unsigned char buf[2048];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 28) continue;
        size_t ihl = (buf[0] & 0x0f) * 4u;
        if (ihl + 8 > static_cast<size_t>(n) || buf[ihl] != 8) continue;  // echo request
        std::lock_guard lock(mu_);
        sizes_.push_back(static_cast<size_t>(n) - ihl - 8);
      }
      close(fd);
    });
    status_ = started.get();
  }
  ~EchoCollector() {
    stop_ = true;
    thread_.join();
  }
  const Status& status() const { return status_; }
  // Whether an echo request with `payload` bytes arrived.
  bool Got(size_t payload) {
    std::lock_guard lock(mu_);
    return std::find(sizes_.begin(), sizes_.end(), payload) != sizes_.end();
  }

 private:
  std::mutex mu_;
  std::vector<size_t> sizes_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  Status status_;
};

// What the probe tries, in order; see the file comment. @NAME@ are filled in by ProbeScript.
constexpr std::string_view kProbe = R"PROBE(#!/bin/sh
export PATH=/bin
say() { echo "hearth-probe: $*" >/dev/console; }
# line NAME IP PORT: a test LineServer answers "<name> sees <address>".
line() {
  out=$(echo ping | nc -w 3 "$2" "$3" 2>/dev/null)
  if [ -n "$out" ]; then say "$1 ok $out"; else say "$1 fail"; fi
}
# http NAME IP PORT PATH: the status line of an HTTP GET.
http() {
  out=$(printf 'GET %s HTTP/1.0\r\n\r\n' "$4" | nc -w 3 "$2" "$3" 2>/dev/null | busybox head -n 1)
  if [ -n "$out" ]; then say "$1 ok $out"; else say "$1 fail"; fi
}
icmp() {
  if busybox ping -c 1 -W 2 "$2" >/dev/null 2>&1; then say "$1 ok"; else say "$1 fail"; fi
}
gw=$(ip route | awk '/^default/ {print $3}')
mac=$(cat /sys/class/net/eth0/address)
say "start gw=$gw mac=$mac"

line outside @OUTSIDE@ 8000
http published "$gw" @PUBLISHED@ /
icmp ping-gateway "$gw"
busybox ping -c 1 -W 2 -s 111 @OUTSIDE@ >/dev/null 2>&1

line host-gateway "$gw" @HOSTPORT@
line host-outer @OUTER@ @HOSTPORT@
line host-veth @VETHHOST@ @HOSTPORT@
icmp ping-host-veth @VETHHOST@
http guest-b @B@ 80 /
icmp ping-guest-b @B@

# Loopback through the gateway: the local routes go with lo's address, then 127/8 is routed out.
ip addr del 127.0.0.1/8 dev lo
ip route add 127.0.0.0/8 via "$gw"
echo 1 >/proc/sys/net/ipv4/conf/all/route_localnet
echo 1 >/proc/sys/net/ipv4/conf/eth0/route_localnet
http loopback-hearthd 127.0.0.1 @HEARTHD@ /healthz
line loopback-host 127.0.0.1 @HOSTPORT@
ip route del 127.0.0.0/8
ip addr add 127.0.0.1/8 dev lo

# Guest b's address as the source, for ICMP and for ARP.
ip addr add @B@/32 dev eth0
busybox ping -c 1 -W 1 -s 122 -I @B@ @OUTSIDE@ >/dev/null 2>&1
busybox arping -c 1 -w 1 -s @B@ -I eth0 "$gw" >/dev/null 2>&1
ip addr del @B@/32 dev eth0
say "spoof-ip sent"

# Another MAC (the guest has to ARP for its gateway again, with that MAC).
ip link set dev eth0 address 52:54:00:99:99:99
busybox ping -c 1 -W 2 -s 133 @OUTSIDE@ >/dev/null 2>&1
ip link set dev eth0 address "$mac"
say "spoof-mac sent"

line outside-again @OUTSIDE@ 8000
say done
)PROBE";

std::string Replace(std::string text, std::string_view token, const std::string& value) {
  for (size_t at = text.find(token); at != std::string::npos; at = text.find(token, at)) {
    text.replace(at, token.size(), value);
    at += value.size();
  }
  return text;
}

std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The host's address on the interface of its default route ("" without one).
std::string OuterAddress() {
  RunResult route = testing::RunProgram({"ip", "-j", "-4", "route", "show", "default"});
  json r = json::parse(route.out, nullptr, false);
  if (!r.is_array() || r.empty()) return "";
  std::string dev = r[0].value("dev", "");
  RunResult addr = testing::RunProgram({"ip", "-j", "-4", "addr", "show", "dev", dev});
  json a = json::parse(addr.out, nullptr, false);
  if (!a.is_array() || a.empty() || a[0]["addr_info"].empty()) return "";
  return a[0]["addr_info"][0].value("local", "");
}

class VmIsolationTest : public testing::VmFixture {
 protected:
  // The default image's initrd with the probe and an init that starts it.
  std::filesystem::path ProbeInitrd(const std::string& script) {
    std::string init(image::InitScript());
    const std::string loop = "\nwhile :; do sleep 3600; done";
    EXPECT_NE(init.find(loop), std::string::npos) << "the default init changed; adapt the probe";
    init = Replace(init, loop, "\n/bin/hearth-probe &" + loop);
    image::CpioArchive overlay;
    overlay.AddFile("init", init, 0755);
    overlay.AddFile("bin/hearth-probe", script, 0755);
    std::string initrd = ReadAll(testing::SharedDefaultImage() / "initrd.img");
    EXPECT_FALSE(initrd.empty());
    initrd.resize((initrd.size() + 3) / 4 * 4, '\0');  // the next archive starts 4-aligned
    initrd += overlay.Finish();
    std::filesystem::path out = dir_.path() / "probe-initrd.img";
    std::ofstream(out, std::ios::binary) << initrd;
    return out;
  }

  // The probe's lines, once it has said "done" (or whatever it said within `limit`).
  std::map<std::string, std::string> ProbeResults(const std::string& vm,
                                                  std::chrono::seconds limit) {
    std::map<std::string, std::string> results;
    for (auto until = std::chrono::steady_clock::now() + limit;
         std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(500ms)) {
      RunResult logs = Cli({"vm", "logs", vm});
      results.clear();
      std::istringstream in(logs.out);
      constexpr std::string_view kPrefix = "hearth-probe: ";
      for (std::string l; std::getline(in, l);) {
        size_t at = l.find(kPrefix);
        if (at == std::string::npos) continue;
        std::string rest = l.substr(at + kPrefix.size());
        while (!rest.empty() && (rest.back() == '\r' || rest.back() == ' ')) rest.pop_back();
        size_t space = rest.find(' ');
        results[rest.substr(0, space)] = space == std::string::npos ? "" : rest.substr(space + 1);
      }
      if (results.count("done")) break;
    }
    return results;
  }
};

TEST_F(VmIsolationTest, AGuestReachesTheOutsideAndPublishedPortsButNothingElse) {
  testing::ClientNamespace outside(getpid() % 250);
  testing::LineServer outside_tcp(outside.name(), "outside", 8000);
  ASSERT_TRUE(outside_tcp.status()) << outside_tcp.status().error().message;
  EchoCollector outside_echo(outside.name());
  ASSERT_TRUE(outside_echo.status()) << outside_echo.status().error().message;
  const int host_port = testing::FreeHostPort();
  testing::LineServer host_tcp("", "host", host_port);  // 0.0.0.0: loopback and every address
  ASSERT_TRUE(host_tcp.status()) << host_tcp.status().error().message;
  std::string outer = OuterAddress();
  if (outer.empty()) outer = outside.host_ip();  // a host without a default route

  const int published = 18000 + getpid() % 1000;
  json b = CreateAndStart("b", {"--publish", fmt::format("{}:80", published)});
  const std::string b_ip = b.value("ip", "");
  ASSERT_FALSE(b_ip.empty()) << b.dump();
  ASSERT_TRUE(testing::HttpGetEventually(b_ip, 80, "/", 10s)) << "the host reaches guest b";

  std::string script(kProbe);
  script = Replace(script, "@OUTSIDE@", outside.ns_ip());
  script = Replace(script, "@PUBLISHED@", std::to_string(published));
  script = Replace(script, "@HOSTPORT@", std::to_string(host_port));
  script = Replace(script, "@OUTER@", outer);
  script = Replace(script, "@VETHHOST@", outside.host_ip());
  script = Replace(script, "@B@", b_ip);
  script = Replace(script, "@HEARTHD@", std::to_string(daemon_->port()));
  json a = CreateAndStart("a", {"--initrd", ProbeInitrd(script).string()});
  const std::string a_ip = a.value("ip", "");
  auto results = ProbeResults("a", 120s);
  ASSERT_TRUE(results.count("done")) << Cli({"vm", "logs", "a"}).out;
  std::string all;
  for (const auto& [k, v] : results) all += k + ": " + v + "\n";
  std::cerr << "probe results of guest a (" << a_ip << "):\n" << all;

  auto ok = [&](const std::string& probe) {
    return results.count(probe) && results[probe].rfind("ok", 0) == 0;
  };
  // Works: the outside through NAT (it sees the host), published ports, pings to the gateway.
  EXPECT_TRUE(ok("outside")) << all;
  EXPECT_EQ(results["outside"], fmt::format("ok outside sees {}", outside.host_ip())) << all;
  EXPECT_TRUE(ok("published")) << all;
  EXPECT_NE(results["published"].find(" 200 "), std::string::npos) << all;
  EXPECT_TRUE(ok("ping-gateway")) << all;
  EXPECT_TRUE(ok("outside-again")) << "after the spoofing attempts: " << all;
  // Blocked: the host on any address, hearthd on loopback, the other guest.
  for (const char* probe : {"host-gateway", "host-outer", "host-veth", "ping-host-veth", "guest-b",
                            "ping-guest-b", "loopback-hearthd", "loopback-host"}) {
    EXPECT_EQ(results[probe], "fail") << probe << " must be blocked:\n" << all;
  }
  // Spoofing: the own ping arrived, the spoofed ones did not; the host did not learn guest b's
  // address from a's ARP.
  EXPECT_TRUE(outside_echo.Got(111)) << "a ping from the guest's own address and MAC";
  EXPECT_FALSE(outside_echo.Got(122)) << "a ping from guest b's address";
  EXPECT_FALSE(outside_echo.Got(133)) << "a ping from another MAC";
  RunResult neigh = testing::RunProgram(
      {"ip", "-j", "-4", "neigh", "show", "dev", net::TapName(a.value("id", "")), "to", b_ip});
  json learnt = json::parse(neigh.out, nullptr, false);
  EXPECT_TRUE(learnt.is_array() && learnt.empty()) << neigh.out << neigh.err;

  // Published ports still answer from 127.0.0.1 and from elsewhere.
  auto local = testing::HttpGet("127.0.0.1", static_cast<uint16_t>(published), "/", 5s);
  EXPECT_TRUE(local && local->status == 200);
  RunResult remote = outside.Run({"curl", "-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}",
                                  fmt::format("http://{}:{}/", outside.host_ip(), published)});
  EXPECT_EQ(remote.out, "200") << remote.err;
}

}  // namespace
}  // namespace hearth

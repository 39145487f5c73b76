#include "support/vm_env.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <sstream>
#include <thread>

#include "hv/firecracker/firecracker_host.h"
#include "hv/process.h"
#include "hv/qemu/kvm_probe.h"
#include "image/guest_init.h"
#include "model/host.h"
#include "net/linux_network.h"

namespace hearth::testing {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A key for what goes into the default image, so that a change to the guest's scripts or
// modules builds a fresh shared image instead of reusing a stale one.
std::string GuestContentKey() {
  std::string all = std::string(image::InitScript()) + std::string(image::HttpHandlerScript()) +
                    std::string(image::PowerOffScript()) + std::string(image::kDefaultCmdline) +
                    std::string(image::kAcpidConf) + std::string(image::GuestAgentBinary());
  for (const auto& m : image::GuestModules()) all += m.name;
  for (const auto& a : image::BusyboxApplets()) all += a;
  return fmt::format("{:016x}", std::hash<std::string>{}(all));
}

fs::path SharedDefaultImage() {
  fs::path root = BuildDir() / ("e2e-image-" + GuestContentKey());
  fs::path image = root / "images" / "default";
  fs::create_directories(root);
  int lock = open((root / ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  flock(lock, LOCK_EX);
  if (!fs::exists(image / "manifest.json")) {
    std::cerr << "building the default image into " << root << " (once per build tree)\n";
    RunResult r = RunProgram({(BuildDir() / "hearth").string(), "image", "build", "default",
                              "--data-dir", root.string()});
    EXPECT_EQ(r.exit_code, 0) << r.err;
  }
  close(lock);
  return image;
}

void LinkDefaultImage(const fs::path& data_dir) {
  fs::path image = SharedDefaultImage();
  fs::create_directories(data_dir / "images");
  std::error_code ec;
  fs::create_directory_symlink(image, data_dir / "images" / "default", ec);
}

std::optional<HttpReply> HttpGet(const std::string& host, uint16_t port, const std::string& path,
                                 std::chrono::milliseconds timeout) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  std::string raw;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
    std::string req = fmt::format("GET {} HTTP/1.0\r\nHost: guest\r\n\r\n", path);
    if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      char buf[4096];
      for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) raw.append(buf, n);
    }
  }
  close(fd);
  auto split = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.", 0) != 0 || split == std::string::npos) return std::nullopt;
  return HttpReply{std::atoi(raw.c_str() + 9), raw.substr(split + 4)};
}

std::optional<HttpReply> HttpGetEventually(const std::string& host, uint16_t port,
                                           const std::string& path,
                                           std::chrono::milliseconds limit) {
  auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    auto r = HttpGet(host, port, path, 2s);
    if (r && r->status == 200) return r;
    if (std::chrono::steady_clock::now() >= until) return r;
    std::this_thread::sleep_for(100ms);
  }
}

ClientNamespace::ClientNamespace(int index) {
  name_ = fmt::format("hthc{}", getpid());
  veth_ = fmt::format("hthv{}", getpid());
  host_ip_ = fmt::format("10.251.{}.1", index);
  ns_ip_ = fmt::format("10.251.{}.2", index);
  auto ip = [](std::vector<std::string> args) {
    args.insert(args.begin(), "ip");
    RunResult r = RunProgram(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
  };
  ip({"netns", "add", name_});
  ip({"link", "add", veth_, "type", "veth", "peer", "name", "eth0", "netns", name_});
  ip({"addr", "add", host_ip_ + "/30", "dev", veth_});
  ip({"link", "set", veth_, "up"});
  ip({"-n", name_, "addr", "add", ns_ip_ + "/30", "dev", "eth0"});
  ip({"-n", name_, "link", "set", "eth0", "up"});
  ip({"-n", name_, "link", "set", "lo", "up"});
  ip({"-n", name_, "route", "add", "default", "via", host_ip_});
}

ClientNamespace::~ClientNamespace() {
  RunProgram({"ip", "link", "del", veth_});
  RunProgram({"ip", "netns", "del", name_});
}

RunResult ClientNamespace::Run(std::vector<std::string> argv) const {
  argv.insert(argv.begin(), {"ip", "netns", "exec", name_});
  return RunProgram(argv);
}

namespace {

// `key` of the `section` lines ("Tcp:" in /proc/net/snmp, "TcpExt:" in /proc/net/netstat).
int64_t TcpCounter(const ClientNamespace& ns, const std::string& file, const std::string& section,
                   const std::string& key) {
  std::istringstream in(ns.Run({"cat", file}).out);
  std::string header, values;
  while (std::getline(in, header) && std::getline(in, values)) {
    if (header.rfind(section, 0) != 0) continue;
    std::istringstream h(header), v(values);
    for (std::string k, value; h >> k && v >> value;) {
      if (k == key) return std::stoll(value);
    }
  }
  return -1;
}

}  // namespace

int64_t ClientNamespace::SynRetransmissions() const {
  return TcpCounter(*this, "/proc/net/netstat", "TcpExt:", "TCPSynRetrans");
}

int64_t ClientNamespace::SegmentsRetransmitted() const {
  return TcpCounter(*this, "/proc/net/snmp", "Tcp:", "RetransSegs");
}

void CleanUpHost(const fs::path& data_dir) {
  for (const auto& p : hv::FindProcesses((data_dir / "vms").string() + "/")) {
    hv::SignalProcess(p, SIGKILL);
    hv::WaitForExit(p, 2s);
  }
  auto network = net::NewLinuxNetwork(net::NetworkOptions::ForDataDir(data_dir));
  if (auto taps = network->ListTaps()) {
    for (const auto& tap : *taps) network->RemoveTap(tap);
  }
  network->RemoveRules();
}

std::string E2eHypervisor() {
  const char* hv = std::getenv("HEARTH_E2E_HYPERVISOR");
  return hv && *hv ? hv : "qemu";
}

std::string FirecrackerUnavailable() {
  const char* configured = std::getenv("HEARTH_E2E_FIRECRACKER");
  const char* path = std::getenv("PATH");
  auto binary = hv::firecracker::FindExecutable(configured ? configured : "", "firecracker",
                                                "firecracker", path ? path : "");
  if (!binary) {
    return "Firecracker e2e skipped: " + binary.error().message +
           " (for the tests: HEARTH_E2E_FIRECRACKER=PATH)";
  }
  if (auto kvm = hv::firecracker::CheckKvmDevice(); !kvm) {
    return "Firecracker e2e skipped: " + kvm.error().message;
  }
  hv::qemu::KvmProbeOptions options;
  options.image_dir = SharedDefaultImage();
  options.cache = Paths::kvm_probe_cache();
  auto host = ReadLinuxHostInfo();
  options.tsc_khz = host ? host->tsc_khz : 0;
  hv::qemu::KvmProbe probe(options);
  hv::qemu::AccelChoice choice = probe.Get();
  if (choice.accel != hv::qemu::Accel::kKvm) {
    return "Firecracker e2e skipped: KVM cannot boot a guest here (" + choice.note + ")";
  }
  return "";
}

std::string TestNetworkPool() {
  // Two test processes whose pids are equal mod 250 would share a /24: each claims its own with a
  // lock held for the process's life (starting from its pid, so the usual pick is unchanged).
  static const std::string pool = [] {
    for (int i = 0; i < 250; ++i) {
      int n = (getpid() + i) % 250;
      int fd = open(fmt::format("/tmp/hearth-test-pool-{}.lock", n).c_str(),
                    O_RDWR | O_CREAT | O_CLOEXEC, 0600);
      if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0) return fmt::format("172.31.{}.0/24", n);
      if (fd >= 0) close(fd);
    }
    return fmt::format("172.31.{}.0/24", getpid() % 250);
  }();
  return pool;
}

}  // namespace hearth::testing

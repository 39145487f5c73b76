#include "model/port_holders.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <ifaddrs.h>
#include <netinet/in.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

namespace hearth {
namespace {

std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < line.size()) {
    while (pos < line.size() && (line[pos] == ' ' || line[pos] == '\t')) ++pos;
    size_t end = pos;
    while (end < line.size() && line[end] != ' ' && line[end] != '\t') ++end;
    if (end > pos) out.push_back(line.substr(pos, end - pos));
    pos = end;
  }
  return out;
}

template <class T>
bool ParseNumber(std::string_view text, T& out, int base) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out, base);
  return ec == std::errc{} && end == text.data() + text.size();
}

// /proc/net prints an address as its 32-bit words in hex, each as the kernel holds it (network
// byte order read as a host integer): "0100007F" is 127.0.0.1 on a little-endian host.
std::optional<std::string> ParseProcAddress(std::string_view hex) {
  if (hex.size() != 8 && hex.size() != 32) return std::nullopt;
  uint32_t words[4] = {};
  for (size_t i = 0; i < hex.size() / 8; ++i) {
    if (!ParseNumber(hex.substr(i * 8, 8), words[i], 16)) return std::nullopt;
  }
  char text[INET6_ADDRSTRLEN] = {};
  if (hex.size() == 8) {
    in_addr a{words[0]};
    return inet_ntop(AF_INET, &a, text, sizeof(text));
  }
  if (words[0] == 0 && words[1] == 0 && words[2] == htonl(0xffff)) {  // ::ffff:a.b.c.d
    in_addr a{words[3]};
    return inet_ntop(AF_INET, &a, text, sizeof(text));
  }
  in6_addr a{};
  std::memcpy(&a, words, sizeof(a));
  return inet_ntop(AF_INET6, &a, text, sizeof(text));
}

// Whether a socket bound to `address` would lose traffic to a publish on `host_ip`.
bool Covers(const std::string& address, const std::string& host_ip) {
  return host_ip.empty() || address == "0.0.0.0" || address == "::" || address == host_ip;
}

}  // namespace

std::vector<ProcSocket> ParseProcNetSockets(std::string_view text, bool listening_only) {
  std::vector<ProcSocket> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::vector<std::string_view> f = Fields(text.substr(start, end - start));
    start = end + 1;
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
    if (f.size() < 10 || f[0].empty() || f[0].back() != ':') continue;  // the header, or junk
    size_t colon = f[1].rfind(':');
    if (colon == std::string_view::npos) continue;
    ProcSocket s;
    if (!ParseNumber(f[1].substr(colon + 1), s.port, 16)) continue;
    auto address = ParseProcAddress(f[1].substr(0, colon));
    if (!address) continue;
    s.address = *address;
    if (listening_only && f[3] != "0A") continue;
    if (!ParseNumber(f[9], s.inode, 10)) continue;
    out.push_back(s);
  }
  return out;
}

std::optional<uint64_t> ParseSocketLink(std::string_view target) {
  constexpr std::string_view kPrefix = "socket:[";
  if (target.substr(0, kPrefix.size()) != kPrefix || target.back() != ']') return std::nullopt;
  uint64_t inode = 0;
  if (!ParseNumber(target.substr(kPrefix.size(), target.size() - kPrefix.size() - 1), inode, 10)) {
    return std::nullopt;
  }
  return inode;
}

std::optional<std::string> LinuxPortHolders::Holder(const std::string& host_ip, int port,
                                                    Protocol protocol) const {
  bool tcp = protocol == Protocol::kTcp;
  std::vector<uint64_t> inodes;
  for (const char* family : {"", "6"}) {
    std::string file = fmt::format("{}{}", tcp ? "tcp" : "udp", family);
    for (const ProcSocket& s : ParseProcNetSockets(ReadAll(proc_ / "net" / file), tcp)) {
      if (s.port == port && Covers(s.address, host_ip)) inodes.push_back(s.inode);
    }
  }
  if (inodes.empty()) return std::nullopt;
  if (auto process = FindProcess(inodes)) return process;
  return fmt::format("a socket of no process visible to hearthd (inode {})", inodes.front());
}

bool LinuxPortHolders::IsHostAddress(const std::string& ip) const {
  in_addr wanted{};
  if (inet_pton(AF_INET, ip.c_str(), &wanted) != 1) return false;
  if ((ntohl(wanted.s_addr) >> 24) == 127) return true;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return false;
  bool found = false;
  for (ifaddrs* i = list; i && !found; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
    found = reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr == wanted.s_addr;
  }
  freeifaddrs(list);
  return found;
}

std::optional<std::string> LinuxPortHolders::FindProcess(
    const std::vector<uint64_t>& inodes) const {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(proc_, ec)) {
    std::string pid = entry.path().filename().string();
    if (pid.empty() || !std::all_of(pid.begin(), pid.end(), ::isdigit)) continue;
    std::error_code fd_ec;
    for (const auto& fd : std::filesystem::directory_iterator(entry.path() / "fd", fd_ec)) {
      std::error_code link_ec;
      auto target = std::filesystem::read_symlink(fd.path(), link_ec);
      if (link_ec) continue;
      auto inode = ParseSocketLink(target.string());
      if (!inode || std::find(inodes.begin(), inodes.end(), *inode) == inodes.end()) continue;
      std::string comm = ReadAll(entry.path() / "comm");
      while (!comm.empty() && comm.back() == '\n') comm.pop_back();
      return fmt::format("{} (pid {})", comm.empty() ? "?" : comm, pid);
    }
  }
  return std::nullopt;
}

}  // namespace hearth

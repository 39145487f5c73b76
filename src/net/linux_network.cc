#include "net/linux_network.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>

#include "common/paths.h"
#include "image/command.h"
#include "net/conntrack.h"
#include "net/ipv4.h"
#include "net/proc_sys.h"
#include "net/stable_hash.h"
#include "net/tun_device.h"
#include "net/wake.h"

namespace hearth::net {
namespace {

using nlohmann::json;

Result<std::string> Ip(std::vector<std::string> args) {
  args.insert(args.begin(), "ip");
  auto out = image::RunCommand(args);
  if (!out) return Fail(out.error());
  return std::move(out->out);
}

Result<json> IpJson(std::vector<std::string> args) {
  args.insert(args.begin(), "-j");
  auto out = Ip(args);
  if (!out) return Fail(out.error());
  json parsed = json::parse(*out, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_array()) {
    return Fail(Code::kInternal, fmt::format("`ip {}` printed no JSON array: {}",
                                             image::QuoteArgv(args), out->substr(0, 200)));
  }
  return parsed;
}

Status CheckHostLinkConfig(std::string_view name, const VmAddress& a, std::string_view mac) {
  if (auto s = ValidateInterfaceName(name); !s) return s;
  auto host = ParseIpv4(a.host);
  auto guest = ParseIpv4(a.guest);
  Ipv4Network net{host.value_or(0), a.prefix};
  if (!host || !guest || a.prefix < 1 || a.prefix > 30 || !net.Contains(*guest) ||
      *host == *guest) {
    return Fail(Code::kInvalidArgument,
                fmt::format("tap {}: host {} and guest {} with prefix /{} are not two IPv4 "
                            "addresses in one subnet; take them from AddressPool",
                            name, a.host, a.guest, a.prefix));
  }
  if (!IsMacAddress(mac)) {
    return Fail(Code::kInvalidArgument,
                fmt::format("tap {}: guest MAC \"{}\" is not of the form 52:54:ac:1e:00:02; use "
                            "GuestMac(address)",
                            name, mac));
  }
  return Ok();
}

// Sets the one IPv4 address `a.host_cidr()` on `name`, removing any other. Fails before changing
// anything when another interface has an address in the same subnet.
Status EnsureAddress(std::string_view name, const VmAddress& a) {
  auto links = IpJson({"-4", "addr", "show"});
  if (!links) return Fail(links.error());
  Ipv4Network subnet{*ParseIpv4(a.host), a.prefix};
  std::vector<std::string> stale;
  bool present = false;
  for (const auto& link : *links) {
    std::string ifname = link.value("ifname", "");
    for (const auto& info : link.value("addr_info", json::array())) {
      std::string local = info.value("local", "");
      int prefixlen = info.value("prefixlen", 0);
      auto address = ParseIpv4(local);
      if (ifname == name) {
        if (local == a.host && prefixlen == a.prefix) {
          present = true;
        } else {
          stale.push_back(fmt::format("{}/{}", local, prefixlen));
        }
      } else if (address && subnet.Contains(*address)) {
        return Fail(Code::kFailedPrecondition,
                    fmt::format("tap {}: {} already has address {}/{} in the tap's subnet {}; "
                                "remove it (`ip addr del {}/{} dev {}`) or the stale tap",
                                name, ifname, local, prefixlen, subnet.ToString(), local, prefixlen,
                                ifname));
      }
    }
  }
  for (const auto& cidr : stale) {
    if (auto r = Ip({"addr", "del", cidr, "dev", std::string(name)}); !r) return Fail(r.error());
  }
  if (!present) {
    if (auto r = Ip({"addr", "add", a.host_cidr(), "dev", std::string(name)}); !r) {
      return Fail(r.error());
    }
  }
  return Ok();
}

// Sets the one permanent neighbour guest -> mac on `name`, removing any other permanent one.
Status EnsureNeighbour(std::string_view name, const VmAddress& a, std::string_view mac) {
  std::string dev(name);
  if (auto r = Ip({"neigh", "replace", a.guest, "lladdr", std::string(mac), "dev", dev, "nud",
                   "permanent"});
      !r) {
    return Fail(r.error());
  }
  auto neighbours = IpJson({"-4", "neigh", "show", "dev", dev, "nud", "permanent"});
  if (!neighbours) return Fail(neighbours.error());
  for (const auto& n : *neighbours) {
    std::string dst = n.value("dst", "");
    if (dst.empty() || dst == a.guest) continue;
    if (auto r = Ip({"neigh", "del", dst, "dev", dev}); !r) return Fail(r.error());
  }
  return Ok();
}

// Runs an nft script in one transaction (`nft -f -`). The script is held in memory (a memfd),
// so no file of it outlives a hearthd that dies meanwhile.
Status RunNft(const std::string& script) {
  int fd = memfd_create("hearth-nft", MFD_CLOEXEC);
  if (fd < 0) {
    return Fail(Code::kUnavailable,
                fmt::format("memfd_create for the nftables script: {}", std::strerror(errno)));
  }
  size_t written = 0;
  while (written < script.size()) {
    ssize_t n = write(fd, script.data() + written, script.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      close(fd);
      return Fail(Code::kInternal,
                  fmt::format("writing the nftables script: {}", std::strerror(err)));
    }
    written += static_cast<size_t>(n);
  }
  image::CommandOptions options;
  options.stdin_file = fmt::format("/proc/self/fd/{}", fd);  // opened afresh: from offset 0
  auto r = image::RunCommand({"nft", "-f", "-"}, options);
  close(fd);
  if (!r) return Fail(r.error());
  return Ok();
}

class LinuxNetwork final : public Network {
 public:
  explicit LinuxNetwork(NetworkOptions options) : options_(std::move(options)) {}

  Status Prepare() override {
    std::lock_guard lock(mu_);
    constexpr std::string_view kForward = "net/ipv4/ip_forward";
    auto current = ReadProcSys(kForward);
    if (!current) return Fail(current.error().Wrap("enabling IP forwarding"));
    if (*current == "1") return Ok();
    if (auto s = WriteProcSys(kForward, "1"); !s) {
      return Fail(s.error().Wrap("enabling IP forwarding (VMs and published ports need it)"));
    }
    spdlog::info(
        "set net.ipv4.ip_forward=1 (was {}) so that VMs reach the network and published "
        "ports reach VMs",
        *current);
    return Ok();
  }

  Status EnsureTap(const TapConfig& tap) override {
    std::lock_guard lock(mu_);
    if (auto s = CheckTapName(tap.name); !s) return s;
    if (auto s = CheckHostLinkConfig(tap.name, tap.address, tap.guest_mac); !s) return s;
    if (InterfaceExists(tap.name)) {
      auto flags = TunFlags(tap.name);
      if (!flags || !IsHearthStyleTap(*flags)) {
        return Fail(Code::kFailedPrecondition,
                    fmt::format("interface {} exists but is not a persistent single-queue tap "
                                "(tun_flags {}); delete it (`ip link del {}`) and retry",
                                tap.name, flags ? fmt::format("{:#x}", *flags) : "none", tap.name));
      }
    } else if (auto s = CreatePersistentTap(tap.name); !s) {
      return s;
    }
    if (auto s = ConfigureHostLink(tap.name, tap.address, tap.guest_mac); !s) {
      return Fail(s.error().Wrap(fmt::format("setting up tap {}", tap.name)));
    }
    if (!options_.owner.empty() && InterfaceAlias(tap.name) != options_.owner) {
      if (auto r = Ip({"link", "set", "dev", tap.name, "alias", options_.owner}); !r) {
        return Fail(r.error().Wrap(fmt::format("marking tap {} as hearthd's", tap.name)));
      }
    }
    return Ok();
  }

  Status RemoveTap(std::string_view name) override {
    std::lock_guard lock(mu_);
    if (auto s = CheckTapName(name); !s) return s;
    if (!InterfaceExists(name)) return Ok();
    auto flags = TunFlags(name);
    if (!flags || !IsTap(*flags)) {
      return Fail(Code::kFailedPrecondition,
                  fmt::format("interface {} is not a tap; hearth deletes only its own taps, delete "
                              "it by hand (`ip link del {}`) if it is stale",
                              name, name));
    }
    auto r = Ip({"link", "del", "dev", std::string(name)});
    if (!r && InterfaceExists(name)) {
      return Fail(r.error().Wrap(fmt::format("removing tap {}", name)));
    }
    return Ok();
  }

  Result<std::vector<std::string>> ListTaps() override {
    std::lock_guard lock(mu_);
    std::vector<std::string> taps;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/sys/class/net", ec)) {
      std::string name = entry.path().filename().string();
      if (!name.starts_with(kTapPrefix)) continue;
      auto flags = TunFlags(name);
      if (!flags || !IsTap(*flags)) continue;
      if (!options_.owner.empty() && InterfaceAlias(name) != options_.owner) continue;
      taps.push_back(name);
    }
    if (ec) {
      return Fail(Code::kUnavailable,
                  fmt::format("cannot list /sys/class/net: {}; is sysfs mounted?", ec.message()));
    }
    std::sort(taps.begin(), taps.end());
    return taps;
  }

  Status ApplyRules(const RuleSet& rules) override {
    if (auto s = ValidateTableName(options_.table); !s) return s;
    if (auto s = ValidateRuleSet(rules); !s) return s;
    std::lock_guard lock(mu_);
    if (auto s = RunNft(RenderRuleset(rules, options_.table)); !s) {
      return Fail(
          s.error().Wrap(fmt::format("applying the nftables rules (table ip {})", options_.table)));
    }
    // After the rules, so that the next packet of a deleted flow is NATed by them.
    if (auto n = RemoveStaleUdpFlows(rules); !n) {
      spdlog::warn(
          "published UDP ports: {}; a client that sent before the last change may miss "
          "the guest until its flow times out (up to 2 minutes)",
          n.error().message);
    } else if (*n > 0) {
      spdlog::info("published UDP ports: removed {} conntrack flow(s) the new rules would not make",
                   *n);
    }
    return Ok();
  }

  Result<int> OpenTap(std::string_view name) override { return net::OpenTap(name); }

  Result<TapCounters> Counters(std::string_view name) override {
    if (auto s = CheckTapName(name); !s) return Fail(s.error());
    // No lock: sysfs reads do not race with the changes made under mu_.
    std::filesystem::path dir = std::filesystem::path("/sys/class/net") / name / "statistics";
    TapCounters counters;
    for (auto [file, slot] : {std::pair{"rx_packets", &counters.rx_packets},
                              std::pair{"tx_packets", &counters.tx_packets}}) {
      std::ifstream in(dir / file);
      if (!(in >> *slot)) {
        if (!InterfaceExists(name)) {
          return Fail(Code::kNotFound, fmt::format("tap {} does not exist", name));
        }
        return Fail(Code::kUnavailable,
                    fmt::format("cannot read {}; is sysfs mounted?", (dir / file).string()));
      }
    }
    return counters;
  }

  Status RemoveRules() override {
    if (auto s = ValidateTableName(options_.table); !s) return s;
    std::lock_guard lock(mu_);
    if (auto s = RunNft(RenderRemoval(options_.table)); !s) {
      return Fail(
          s.error().Wrap(fmt::format("removing the nftables rules (table ip {})", options_.table)));
    }
    return Ok();
  }

 private:
  static Status CheckTapName(std::string_view name) {
    if (auto s = ValidateInterfaceName(name); !s) return s;
    if (!name.starts_with(kTapPrefix)) {
      return Fail(Code::kInvalidArgument,
                  fmt::format("tap name \"{}\" does not start with \"{}\"; use TapName(vm id)",
                              name, kTapPrefix));
    }
    return Ok();
  }

  const NetworkOptions options_;
  std::mutex mu_;
};

}  // namespace

NetworkOptions NetworkOptions::ForDataDir(const std::filesystem::path& data_dir) {
  constexpr size_t kMaxAlias = 255;  // IFALIASZ - 1
  std::error_code ec;
  std::filesystem::path absolute = std::filesystem::absolute(data_dir, ec).lexically_normal();
  std::string dir = (ec ? data_dir : absolute).string();
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  NetworkOptions options;
  if (dir != Paths::kDefaultDataDir) {
    options.table = fmt::format("{}_{:08x}", kTableName, StableHash(dir) & 0xffffffffu);
  }
  bool printable = std::all_of(dir.begin(), dir.end(), [](unsigned char c) { return c >= ' '; });
  options.owner = fmt::format("hearth:{}", dir);
  if (!printable || options.owner.size() > kMaxAlias) {
    options.owner = fmt::format("hearth:{}", options.table);
  }
  return options;
}

std::unique_ptr<Network> NewLinuxNetwork(NetworkOptions options) {
  return std::make_unique<LinuxNetwork>(std::move(options));
}

Status ConfigureHostLink(std::string_view name, const VmAddress& address,
                         std::string_view guest_mac) {
  if (auto s = CheckHostLinkConfig(name, address, guest_mac); !s) return s;
  std::string dev(name);
  // IPv6 first, so that bringing the link up sends no router solicitations or MLD reports.
  if (ProcSysExists("net/ipv6/conf/" + dev)) {
    if (auto s = WriteProcSys("net/ipv6/conf/" + dev + "/disable_ipv6", "1"); !s) return s;
  }
  if (auto s = WriteProcSys("net/ipv4/conf/" + dev + "/route_localnet", "1"); !s) return s;
  if (auto s = EnsureAddress(name, address); !s) return s;
  if (auto r = Ip({"link", "set", "dev", dev, "up"}); !r) return Fail(r.error());
  return EnsureNeighbour(name, address, guest_mac);
}

}  // namespace hearth::net

#include "net/ruleset.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <utility>

#include "net/ipv4.h"
#include "net/tap.h"

namespace hearth::net {
namespace {

Status CheckPort(int port, std::string_view which, const PortMapping& m) {
  if (port >= 1 && port <= 65535) return Ok();
  return Fail(Code::kInvalidArgument,
              fmt::format("published port {}: {} port {} is out of range; use 1 to 65535",
                          FormatPortMapping(m), which, port));
}

bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

Status CheckGuests(const RuleSet& rules, const Ipv4Network& pool) {
  std::map<std::string, const Guest*> by_tap, by_ip;
  for (const auto& g : rules.guests) {
    std::string_view suffix =
        std::string_view(g.tap).substr(std::min(g.tap.size(), kTapPrefix.size()));
    bool tap_ok = g.tap.starts_with(kTapPrefix) && !suffix.empty() && suffix.size() <= 12 &&
                  std::all_of(suffix.begin(), suffix.end(), IsAlnum);
    if (!tap_ok) {
      return Fail(Code::kInvalidArgument,
                  fmt::format("guest {}: tap name \"{}\" is not \"{}\" and 1 to 12 letters or "
                              "digits; use TapName(vm id)",
                              g.ip, g.tap, kTapPrefix));
    }
    auto ip = ParseIpv4(g.ip);
    if (!ip || !pool.Contains(*ip)) {
      return Fail(Code::kInvalidArgument,
                  fmt::format("tap {}: guest \"{}\" is not an address in the pool {}", g.tap, g.ip,
                              rules.pool_cidr));
    }
    if (!IsMacAddress(g.mac)) {
      return Fail(Code::kInvalidArgument,
                  fmt::format("tap {}: guest MAC \"{}\" is not of the form 52:54:ac:1e:00:02; "
                              "use GuestMac(address)",
                              g.tap, g.mac));
    }
    if (!by_tap.try_emplace(g.tap, &g).second || !by_ip.try_emplace(g.ip, &g).second) {
      return Fail(Code::kInvalidArgument,
                  fmt::format("guest {} on tap {}: the tap or the address is listed twice; one "
                              "guest per tap and per address",
                              g.ip, g.tap));
    }
  }
  return Ok();
}

// "8080/tcp", or "127.0.0.1:8080/tcp" for a port on one host address.
std::string HostSocket(const PortMapping& m) {
  return fmt::format("{}{}/{}", m.host_ip.empty() ? "" : m.host_ip + ":", m.host_port,
                     ToString(m.protocol));
}

// One published port on its own: the guest is in the pool, the ports in range, the host address
// (if any) an IPv4 address other than 0.0.0.0.
Status CheckPublish(const Publish& p, const std::string& pool_cidr, const Ipv4Network& pool) {
  auto guest = ParseIpv4(p.guest_ip);
  if (!guest || !pool.Contains(*guest)) {
    return Fail(Code::kInvalidArgument,
                fmt::format("published port {}: guest \"{}\" is not an address in the pool {}",
                            FormatPortMapping(p.mapping), p.guest_ip, pool_cidr));
  }
  if (auto s = CheckPort(p.mapping.host_port, "host", p.mapping); !s) return s;
  if (auto s = CheckPort(p.mapping.guest_port, "guest", p.mapping); !s) return s;
  if (!p.mapping.host_ip.empty()) {
    auto host = ParseIpv4(p.mapping.host_ip);
    if (!host || *host == 0) {
      return Fail(Code::kInvalidArgument,
                  fmt::format("published port {}: host address \"{}\" is not an IPv4 address "
                              "(a dotted quad other than 0.0.0.0); leave it empty for all "
                              "addresses",
                              FormatPortMapping(p.mapping), p.mapping.host_ip));
    }
  }
  return Ok();
}

}  // namespace

Status ValidateRuleSet(const RuleSet& rules) {
  auto pool = ParseIpv4Network(rules.pool_cidr);
  if (!pool) {
    return Fail(Code::kInvalidArgument,
                fmt::format("pool \"{}\" is not an IPv4 network ADDRESS/PREFIX, e.g. 172.30.0.0/16",
                            rules.pool_cidr));
  }
  for (size_t i = 0; i < rules.publish.size(); ++i) {
    const Publish& p = rules.publish[i];
    if (auto s = CheckPublish(p, rules.pool_cidr, *pool); !s) return s;
    for (size_t j = 0; j < i; ++j) {
      const Publish& q = rules.publish[j];
      if (!PublishOverlaps(p.mapping, q.mapping)) continue;
      return Fail(Code::kInvalidArgument,
                  fmt::format("host port {} is published twice (to {}:{} as {} and {}:{} as {}); "
                              "a host port can go to one VM only",
                              HostSocket(p.mapping), q.guest_ip, q.mapping.guest_port,
                              FormatPortMapping(q.mapping), p.guest_ip, p.mapping.guest_port,
                              FormatPortMapping(p.mapping)));
    }
  }
  return CheckGuests(rules, *pool);
}

std::string RenderRuleset(const RuleSet& rules) { return RenderRuleset(rules, kTableName); }

namespace {

// A named set, with its elements when there are any (nft refuses an empty `elements`).
std::string RenderSet(std::string_view name, std::string_view type,
                      const std::vector<std::string>& elements) {
  std::string out = fmt::format("\tset {} {{\n\t\ttype {}\n", name, type);
  if (!elements.empty()) {
    out += "\t\telements = { ";
    for (size_t i = 0; i < elements.size(); ++i) {
      out += (i ? ", " : "") + elements[i];
    }
    out += " }\n";
  }
  out += "\t}\n\n";
  return out;
}

std::vector<std::string> TapElements(const RuleSet& rules) {
  std::vector<std::string> taps;
  for (const auto& g : rules.guests) taps.push_back(fmt::format("\"{}\"", g.tap));
  return taps;
}

std::string RenderNatChains(const RuleSet& rules) {
  const std::string& pool = rules.pool_cidr;
  std::string out = "\tchain publish {\n";
  for (const auto& p : rules.publish) {
    std::string daddr = p.mapping.host_ip.empty() ? "" : "ip daddr " + p.mapping.host_ip + " ";
    out += fmt::format("\t\t{}{} dport {} dnat to {}:{}\n", daddr, ToString(p.mapping.protocol),
                       p.mapping.host_port, p.guest_ip, p.mapping.guest_port);
  }
  out += "\t}\n\n";

  out += "\tchain prerouting {\n";
  out += "\t\ttype nat hook prerouting priority dstnat; policy accept;\n";
  out += "\t\tfib daddr type local jump publish\n";
  out += "\t}\n\n";

  out += "\tchain output {\n";
  out += "\t\ttype nat hook output priority -100; policy accept;\n";
  out += "\t\tfib daddr type local jump publish\n";
  out += "\t}\n\n";

  out += "\tchain postrouting {\n";
  out += "\t\ttype nat hook postrouting priority srcnat; policy accept;\n";
  if (rules.masquerade) {
    out += fmt::format("\t\tip saddr {0} ip daddr != {0} masquerade\n", pool);
  }
  out += fmt::format("\t\tip saddr {0} ip daddr {0} ct status dnat masquerade\n", pool);
  out += fmt::format("\t\tip saddr 127.0.0.0/8 ip daddr {} masquerade\n", pool);
  out += "\t}\n";
  return out;
}

// The isolation of guests in table ip; see RenderRuleset in ruleset.h.
std::string RenderIpFilter(const RuleSet& rules) {
  std::vector<std::string> guests;
  for (const auto& g : rules.guests) {
    guests.push_back(fmt::format("\"{}\" . {} . {}", g.tap, g.ip, g.mac));
  }
  std::string out = RenderSet("guests", "ifname . ipv4_addr . ether_addr", guests);
  out += RenderSet("taps", "ifname", TapElements(rules));
  // Empty: a later per-project shared network lists the address pairs that may connect.
  out += RenderSet("vm_peers", "ipv4_addr . ipv4_addr", {});

  out += "\tchain guest_ingress {\n";
  out += "\t\ttype filter hook prerouting priority raw; policy accept;\n";
  out += "\t\tiifname @taps jump from_guest\n";
  out += "\t}\n\n";

  out += "\tchain from_guest {\n";
  out += "\t\tip daddr 127.0.0.0/8 drop\n";
  out += "\t\tiifname . ip saddr . ether saddr != @guests drop\n";
  out += "\t}\n\n";

  out += "\tchain input {\n";
  out += "\t\ttype filter hook input priority filter; policy accept;\n";
  out += "\t\tiifname @taps jump guest_to_host\n";
  out += "\t}\n\n";

  out += "\tchain guest_to_host {\n";
  out += "\t\tct state established,related accept\n";
  out += "\t\ticmp type echo-request fib daddr . iif type local accept\n";
  out += "\t\tdrop\n";
  out += "\t}\n\n";

  out += "\tchain forward {\n";
  out += "\t\ttype filter hook forward priority filter; policy accept;\n";
  out += "\t\tiifname @taps oifname @taps jump vm_to_vm\n";
  out += "\t}\n\n";

  out += "\tchain vm_to_vm {\n";
  out += "\t\tct state established,related accept\n";
  out += "\t\tct status dnat accept\n";
  out += "\t\tip saddr . ip daddr @vm_peers accept\n";
  out += "\t\tdrop\n";
  out += "\t}\n";
  return out;
}

// ARP anti-spoofing, which table ip does not see.
std::string RenderArpTable(const RuleSet& rules, std::string_view table) {
  std::vector<std::string> guests;
  for (const auto& g : rules.guests) {
    guests.push_back(fmt::format("\"{}\" . {} . {} . {}", g.tap, g.mac, g.ip, g.mac));
  }
  std::string out = fmt::format("table arp {} {{\n", table);
  out += RenderSet("guests", "ifname . ether_addr . ipv4_addr . ether_addr", guests);
  out += RenderSet("taps", "ifname", TapElements(rules));
  out += "\tchain input {\n";
  out += "\t\ttype filter hook input priority filter; policy accept;\n";
  out += "\t\tiifname @taps jump from_guest\n";
  out += "\t}\n\n";
  out += "\tchain from_guest {\n";
  out += "\t\tiifname . ether saddr . arp saddr ip . arp saddr ether != @guests drop\n";
  out += "\t}\n";
  out += "}\n";
  return out;
}

}  // namespace

std::string RenderRuleset(const RuleSet& rules, std::string_view table) {
  std::string out = RenderRemoval(table);
  out += fmt::format("table ip {} {{\n", table);
  out += RenderNatChains(rules);
  out += "\n";
  out += RenderIpFilter(rules);
  out += "}\n";
  out += RenderArpTable(rules, table);
  return out;
}

std::string RenderRemoval(std::string_view table) {
  return fmt::format("table ip {0}\ndelete table ip {0}\ntable arp {0}\ndelete table arp {0}\n",
                     table);
}

Status ValidateTableName(std::string_view table) {
  auto letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  bool ok = !table.empty() && table.size() <= 64 && letter(table[0]);
  for (char c : table) ok = ok && (letter(c) || (c >= '0' && c <= '9') || c == '_');
  if (ok) return Ok();
  return Fail(Code::kInvalidArgument,
              fmt::format("nftables table name \"{}\" must be a letter followed by up to 63 "
                          "letters, digits or underscores, e.g. {}",
                          table, kTableName));
}

}  // namespace hearth::net

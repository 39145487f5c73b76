#include "net/ruleset.h"

#include <fmt/format.h>

#include <map>
#include <utility>

#include "net/ipv4.h"

namespace hearth::net {
namespace {

Status CheckPort(int port, std::string_view which, const PortMapping& m) {
  if (port >= 1 && port <= 65535) return Ok();
  return Fail(Code::kInvalidArgument,
              fmt::format("published port {}: {} port {} is out of range; use 1 to 65535",
                          FormatPortMapping(m), which, port));
}

}  // namespace

Status ValidateRuleSet(const RuleSet& rules) {
  auto pool = ParseIpv4Network(rules.pool_cidr);
  if (!pool) {
    return Fail(Code::kInvalidArgument,
                fmt::format("pool \"{}\" is not an IPv4 network ADDRESS/PREFIX, e.g. 172.30.0.0/16",
                            rules.pool_cidr));
  }
  std::map<std::pair<int, Protocol>, const Publish*> by_host_port;
  for (const auto& p : rules.publish) {
    auto guest = ParseIpv4(p.guest_ip);
    if (!guest || !pool->Contains(*guest)) {
      return Fail(Code::kInvalidArgument,
                  fmt::format("published port {}: guest \"{}\" is not an address in the pool {}",
                              FormatPortMapping(p.mapping), p.guest_ip, rules.pool_cidr));
    }
    if (auto s = CheckPort(p.mapping.host_port, "host", p.mapping); !s) return s;
    if (auto s = CheckPort(p.mapping.guest_port, "guest", p.mapping); !s) return s;
    auto [it, inserted] = by_host_port.try_emplace({p.mapping.host_port, p.mapping.protocol}, &p);
    if (!inserted) {
      return Fail(
          Code::kInvalidArgument,
          fmt::format("host port {}/{} is published twice (to {}:{} and {}:{}); a host "
                      "port can go to one VM only",
                      p.mapping.host_port, ToString(p.mapping.protocol), it->second->guest_ip,
                      it->second->mapping.guest_port, p.guest_ip, p.mapping.guest_port));
    }
  }
  return Ok();
}

std::string RenderRuleset(const RuleSet& rules) { return RenderRuleset(rules, kTableName); }

std::string RenderRuleset(const RuleSet& rules, std::string_view table) {
  const std::string& pool = rules.pool_cidr;
  std::string out = RenderRemoval(table);
  out += fmt::format("table ip {} {{\n", table);

  out += "\tchain publish {\n";
  for (const auto& p : rules.publish) {
    out += fmt::format("\t\t{} dport {} dnat to {}:{}\n", ToString(p.mapping.protocol),
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

  out += "}\n";
  return out;
}

std::string RenderRemoval(std::string_view table) {
  return fmt::format("table ip {0}\ndelete table ip {0}\n", table);
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

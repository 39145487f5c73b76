#include "net/ipv4.h"

#include <fmt/format.h>

#include <charconv>

namespace hearth::net {
namespace {

// A decimal number in [0, max] without sign or leading zeros.
std::optional<int> ParseSmallNumber(std::string_view text, int max) {
  if (text.empty() || text.size() > 3 || (text.size() > 1 && text[0] == '0')) return std::nullopt;
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0 || value > max) {
    return std::nullopt;
  }
  return value;
}

}  // namespace

std::string Ipv4Network::ToString() const { return fmt::format("{}/{}", FormatIpv4(base), prefix); }

std::optional<uint32_t> ParseIpv4(std::string_view text) {
  uint32_t address = 0;
  for (int i = 0; i < 4; ++i) {
    size_t dot = i < 3 ? text.find('.') : text.size();
    if (dot == std::string_view::npos) return std::nullopt;
    auto octet = ParseSmallNumber(text.substr(0, dot), 255);
    if (!octet) return std::nullopt;
    address = (address << 8) | static_cast<uint32_t>(*octet);
    text.remove_prefix(i < 3 ? dot + 1 : dot);
  }
  return address;
}

std::string FormatIpv4(uint32_t a) {
  return fmt::format("{}.{}.{}.{}", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff);
}

std::optional<Ipv4Network> ParseIpv4Network(std::string_view text) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto base = ParseIpv4(text.substr(0, slash));
  auto prefix = ParseSmallNumber(text.substr(slash + 1), 32);
  if (!base || !prefix) return std::nullopt;
  return Ipv4Network{*base, *prefix};
}

}  // namespace hearth::net

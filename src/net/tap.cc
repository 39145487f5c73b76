#include "net/tap.h"

#include <fmt/format.h>

#include <cstdint>

#include "net/ipv4.h"
#include "net/stable_hash.h"

namespace hearth::net {
namespace {

constexpr size_t kTapIdDigits = 12;
constexpr size_t kMaxInterfaceName = 15;

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

}  // namespace

std::string TapName(std::string_view vm_id) {
  constexpr std::string_view kIdPrefix = "vm-";
  if (vm_id.starts_with(kIdPrefix) && vm_id.size() >= kIdPrefix.size() + kTapIdDigits) {
    std::string_view digits = vm_id.substr(kIdPrefix.size(), kTapIdDigits);
    bool hex = true;
    for (char c : digits) hex = hex && IsLowerHex(c);
    if (hex) return fmt::format("{}{}", kTapPrefix, digits);
  }
  return fmt::format("{}{:016x}", kTapPrefix, StableHash(vm_id)).substr(0, kMaxInterfaceName);
}

std::string GuestMac(const VmAddress& a) {
  uint32_t ip = ParseIpv4(a.guest).value_or(0);
  return fmt::format("52:54:{:02x}:{:02x}:{:02x}:{:02x}", ip >> 24, (ip >> 16) & 0xff,
                     (ip >> 8) & 0xff, ip & 0xff);
}

bool IsMacAddress(std::string_view mac) {
  if (mac.size() != 17) return false;
  for (size_t i = 0; i < mac.size(); ++i) {
    char c = mac[i];
    bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (i % 3 == 2 ? c != ':' : !hex) return false;
  }
  return true;
}

Status ValidateInterfaceName(std::string_view name) {
  if (name.empty() || name.size() > kMaxInterfaceName) {
    return Fail(
        Code::kInvalidArgument,
        fmt::format("interface name \"{}\" must be 1 to {} characters", name, kMaxInterfaceName));
  }
  bool bad_char = false;
  for (unsigned char c : name) bad_char = bad_char || c <= ' ' || c == '/' || c == ':' || c == 0x7f;
  if (name == "." || name == ".." || bad_char) {
    return Fail(Code::kInvalidArgument,
                fmt::format("interface name \"{}\" may not be \".\" or \"..\" or contain '/', ':', "
                            "whitespace or control characters",
                            name));
  }
  return Ok();
}

}  // namespace hearth::net

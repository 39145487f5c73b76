#include "common/text.h"

#include <fmt/format.h>

namespace hearth {
namespace {

bool IsControl(char c) {
  auto b = static_cast<unsigned char>(c);
  return b < 0x20 || b == 0x7f;
}

}  // namespace

std::optional<size_t> FindControl(std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    if (IsControl(text[i])) return i;
  }
  return std::nullopt;
}

std::string Printable(std::string_view text, size_t max_bytes) {
  std::string out;
  bool cut = text.size() > max_bytes;
  if (cut) text = text.substr(0, max_bytes);
  for (char c : text) {
    if (IsControl(c)) {
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    } else if (c == '\\') {
      out += "\\\\";
    } else {
      out += c;
    }
  }
  if (cut) out += "...";
  return out;
}

std::string DescribeControl(std::string_view value) {
  std::optional<size_t> at_or = FindControl(value);
  if (!at_or) return fmt::format("'{}' holds no control character", Printable(value));
  size_t at = *at_or;
  auto byte = static_cast<unsigned char>(value[at]);
  const char* name = byte == 0      ? "a NUL byte"
                     : byte == '\n' ? "a newline"
                     : byte == '\r' ? "a carriage return"
                     : byte == '\t' ? "a tab"
                     : byte == 0x1b ? "an escape"
                                    : "a control character";
  return fmt::format("'{}' contains {} (byte 0x{:02x} at offset {}); remove it", Printable(value),
                     name, byte, at);
}

}  // namespace hearth

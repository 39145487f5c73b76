#include "common/text.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>

namespace hearth {
namespace {

// Room kept for the cut marker: "...[" + up to 20 digits + " bytes cut]".
constexpr size_t kMarkerRoom = 35;

// The length of the valid UTF-8 sequence at the start of `s` and its code point, or 0 when the
// first byte does not start one (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF).
size_t DecodeUtf8(std::string_view s, uint32_t& cp) {
  auto byte = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  uint8_t b0 = byte(0);
  size_t len = 0;
  uint32_t min = 0;
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  } else if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (s.size() < len) return 0;
  for (size_t i = 1; i < len; ++i) {
    if ((byte(i) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

bool IsBidiControl(uint32_t cp) {
  return cp == 0x061C || cp == 0x200E || cp == 0x200F || (cp >= 0x202A && cp <= 0x202E) ||
         (cp >= 0x2066 && cp <= 0x2069);
}

// Appends the visible form of the character (or invalid byte) at the start of `rest` to `out`;
// returns how many bytes of `rest` it stands for.
size_t AppendEscaped(std::string_view rest, bool keep_newlines, std::string& out) {
  uint32_t cp = 0;
  size_t len = DecodeUtf8(rest, cp);
  if (len == 0) {
    out += fmt::format("\\x{:02x}", static_cast<uint8_t>(rest[0]));
    return 1;
  }
  if (cp < 0x20 || cp == 0x7F) {
    if (keep_newlines && (cp == '\n' || cp == '\t')) {
      out += static_cast<char>(cp);
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else {
      out += fmt::format("\\x{:02x}", cp);
    }
  } else if ((cp >= 0x80 && cp <= 0x9F) || IsBidiControl(cp)) {
    out += fmt::format("\\u{:04x}", cp);
  } else {
    out.append(rest.data(), len);
  }
  return len;
}

}  // namespace

std::string EscapeText(std::string_view raw, const EscapeOptions& options) {
  const size_t max = std::max<size_t>(options.max_bytes, kMarkerRoom);
  std::string out;
  out.reserve(std::min(raw.size(), max));
  // Where the text would end if it had to be cut here (the marker fits after it).
  size_t cut_out = 0, cut_in = 0;
  size_t in = 0;
  while (in < raw.size()) {
    in += AppendEscaped(raw.substr(in), options.keep_newlines, out);
    if (out.size() > max) {
      out.resize(cut_out);
      out += fmt::format("...[{} bytes cut]", raw.size() - cut_in);
      return out;
    }
    if (out.size() + kMarkerRoom <= max) cut_out = out.size(), cut_in = in;
  }
  return out;
}

std::optional<size_t> FindControl(std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    auto b = static_cast<unsigned char>(text[i]);
    if (b < 0x20 || b == 0x7f) return i;
  }
  return std::nullopt;
}

std::string Printable(std::string_view text, size_t max_bytes) {
  return EscapeText(text, EscapeOptions{.max_bytes = std::max<size_t>(max_bytes, 32)});
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

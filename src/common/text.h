// Text that hearth does not control (a guest's console, its agent's answers, a VMM's output, a
// server's reply read by the CLI) made safe to put into events, state_reason, logs and a
// terminal: no byte of it can move a cursor, recolour, retitle or clear a terminal, or reorder
// the text around it, and it has a known maximum length.
#pragma once

#include <cstddef>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

namespace hearth {

struct EscapeOptions {
  // The result is never longer than this; longer text is cut at a character boundary and ends
  // with "...[N bytes cut]" (N counts the bytes of `raw` not shown). At least 32.
  size_t max_bytes = std::numeric_limits<size_t>::max();
  // '\n' and '\t' stay as they are (multi-line text for a terminal, such as a console log).
  bool keep_newlines = false;
};

// `raw` with every control character written out visibly, and otherwise unchanged:
// - C0 controls and DEL become "\n", "\r", "\t" or "\xHH" (ESC is "\x1b");
// - C1 controls (U+0080..U+009F) and the Unicode bidirectional controls (U+061C, U+200E, U+200F,
//   U+202A..U+202E, U+2066..U+2069) become "\uHHHH";
// - bytes that are not part of valid UTF-8 (overlong forms, surrogates, stray continuation bytes,
//   a sequence cut short) become "\xHH", so the result is always valid UTF-8.
// A backslash in `raw` is kept as it is: the result is for reading, not for decoding back.
// Linear in the length of the result: at most about max_bytes of `raw` are looked at.
std::string EscapeText(std::string_view raw, const EscapeOptions& options = {});

// Values a caller sent that reach argv, paths, nftables, logs and terminals must not carry control
// characters: a NUL cuts a C string (QEMU's `-drive file=<path>\0,format=raw` would lose its
// options), and escape sequences rewrite a terminal.

// The offset of the first control character (bytes 0x00-0x1f and 0x7f) in `text`, if any.
std::optional<size_t> FindControl(std::string_view text);

// `text` escaped (EscapeText) and cut to about `max_bytes`, for messages that quote a value the
// caller sent.
std::string Printable(std::string_view text, size_t max_bytes = 200);

// "'<value>' contains a NUL byte (byte 0x00 at offset 9); remove it", for `value`, which must
// hold a control character (FindControl).
std::string DescribeControl(std::string_view value);

}  // namespace hearth

// Text that reaches argv, paths, nftables, logs and terminals must not carry control characters:
// a NUL cuts a C string (QEMU's `-drive file=<path>\0,format=raw` would lose its options), and
// escape sequences rewrite a terminal. These helpers find them and show a value safely.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace hearth {

// The offset of the first control character (bytes 0x00-0x1f and 0x7f) in `text`, if any.
std::optional<size_t> FindControl(std::string_view text);

// `text` with control characters and backslashes written as \xNN / \\, for messages that quote
// a value the caller sent. Longer values are cut to `max_bytes` and end in "...".
std::string Printable(std::string_view text, size_t max_bytes = 200);

// "contains a control character (byte 0x00 at offset 9); remove it", for `value`, which must
// hold one (FindControl).
std::string DescribeControl(std::string_view value);

}  // namespace hearth

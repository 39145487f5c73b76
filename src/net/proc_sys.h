// Kernel settings under /proc/sys, by key ("net/ipv4/ip_forward").
#pragma once

#include <string>
#include <string_view>

#include "common/result.h"

namespace hearth::net {

// The value without its trailing newline. not_found when the key does not exist.
Result<std::string> ReadProcSys(std::string_view key);
// Writes `value` unless the setting already has it. The error says how to set it by hand.
Status WriteProcSys(std::string_view key, std::string_view value);
// True when /proc/sys/<key> exists (e.g. net/ipv6/conf/<interface> on a host with IPv6).
bool ProcSysExists(std::string_view key);

}  // namespace hearth::net

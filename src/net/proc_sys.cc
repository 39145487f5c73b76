#include "net/proc_sys.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace hearth::net {
namespace {

std::filesystem::path PathOf(std::string_view key) {
  return std::filesystem::path("/proc/sys") / std::string(key);
}

// "net/ipv4/ip_forward" -> "net.ipv4.ip_forward", for the sysctl(8) command in messages.
std::string SysctlName(std::string_view key) {
  std::string name(key);
  for (char& c : name) c = c == '/' ? '.' : c;
  return name;
}

}  // namespace

Result<std::string> ReadProcSys(std::string_view key) {
  std::ifstream in(PathOf(key));
  if (!in) {
    int e = errno;
    return Fail(e == ENOENT ? Code::kNotFound : Code::kUnavailable,
                fmt::format("cannot read {}: {}", PathOf(key).string(), std::strerror(e)));
  }
  std::stringstream text;
  text << in.rdbuf();
  std::string value = text.str();
  while (!value.empty() && (value.back() == '\n' || value.back() == ' ')) value.pop_back();
  return value;
}

Status WriteProcSys(std::string_view key, std::string_view value) {
  if (auto current = ReadProcSys(key); current && *current == value) return Ok();
  std::ofstream out(PathOf(key));
  if (out) out << value << '\n';
  if (out) out.flush();
  if (!out) {
    int e = errno;
    Code code = e == EACCES || e == EPERM || e == EROFS ? Code::kPermissionDenied
                : e == ENOENT                           ? Code::kNotFound
                                                        : Code::kInternal;
    return Fail(code,
                fmt::format("cannot write {} to {}: {}; run hearthd as root, or set it with "
                            "`sysctl -w {}={}`",
                            value, PathOf(key).string(), std::strerror(e), SysctlName(key), value));
  }
  return Ok();
}

bool ProcSysExists(std::string_view key) {
  std::error_code ec;
  return std::filesystem::exists(PathOf(key), ec);
}

}  // namespace hearth::net

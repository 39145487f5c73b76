#include "model/vm.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>

#include <charconv>

namespace hearth {
namespace {

template <class E, size_t N>
Result<E> ParseEnum(std::string_view text, const std::pair<E, std::string_view> (&table)[N],
                    std::string_view what) {
  std::string allowed;
  for (const auto& [value, name] : table) {
    if (name == text) return value;
    allowed += allowed.empty() ? "" : ", ";
    allowed += name;
  }
  return Fail(Code::kInvalidArgument,
              fmt::format("{} '{}' is not one of: {}", what, text, allowed));
}

template <class E, size_t N>
std::string_view EnumName(E value, const std::pair<E, std::string_view> (&table)[N]) {
  for (const auto& [v, name] : table) {
    if (v == value) return name;
  }
  return "unknown";
}

constexpr std::pair<Protocol, std::string_view> kProtocols[] = {{Protocol::kTcp, "tcp"},
                                                                {Protocol::kUdp, "udp"}};
constexpr std::pair<TimerAction, std::string_view> kTimerActions[] = {
    {TimerAction::kSuspend, "suspend"}, {TimerAction::kStop, "stop"}};
constexpr std::pair<WakeMode, std::string_view> kWakeModes[] = {{WakeMode::kOnPacket, "on-packet"},
                                                                {WakeMode::kNever, "never"}};
constexpr std::pair<RestartPolicy, std::string_view> kRestartPolicies[] = {
    {RestartPolicy::kNever, "never"},
    {RestartPolicy::kOnFailure, "on-failure"},
    {RestartPolicy::kAlways, "always"}};
constexpr std::pair<VmState, std::string_view> kStates[] = {
    {VmState::kCreated, "created"},     {VmState::kStarting, "starting"},
    {VmState::kRunning, "running"},     {VmState::kSuspending, "suspending"},
    {VmState::kSuspended, "suspended"}, {VmState::kResuming, "resuming"},
    {VmState::kStopping, "stopping"},   {VmState::kStopped, "stopped"},
    {VmState::kFailed, "failed"},       {VmState::kDeleting, "deleting"}};

Result<int> ParsePort(std::string_view text, std::string_view whole) {
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || text.empty()) {
    return Fail(Code::kInvalidArgument,
                fmt::format("'{}': '{}' is not a port number", whole, text));
  }
  return value;
}

}  // namespace

std::string_view ToString(Protocol p) { return EnumName(p, kProtocols); }
std::string_view ToString(TimerAction a) { return EnumName(a, kTimerActions); }
std::string_view ToString(WakeMode w) { return EnumName(w, kWakeModes); }
std::string_view ToString(RestartPolicy r) { return EnumName(r, kRestartPolicies); }
std::string_view ToString(VmState s) { return EnumName(s, kStates); }
Result<Protocol> ParseProtocol(std::string_view t) { return ParseEnum(t, kProtocols, "protocol"); }
Result<TimerAction> ParseTimerAction(std::string_view t) {
  return ParseEnum(t, kTimerActions, "timer action");
}
Result<WakeMode> ParseWakeMode(std::string_view t) { return ParseEnum(t, kWakeModes, "wake mode"); }
Result<RestartPolicy> ParseRestartPolicy(std::string_view t) {
  return ParseEnum(t, kRestartPolicies, "restart policy");
}
Result<VmState> ParseVmState(std::string_view t) { return ParseEnum(t, kStates, "state"); }

Result<std::string> ParsePublishHostIp(std::string_view text) {
  if (text.find(':') != std::string_view::npos || text.find('[') != std::string_view::npos) {
    return Fail(Code::kInvalidArgument,
                fmt::format("host address '{}' is IPv6, which publish does not support; give an "
                            "IPv4 address of this host (e.g. 127.0.0.1) or none for all addresses",
                            text));
  }
  in_addr address{};
  std::string copy(text);
  if (text.empty() || inet_pton(AF_INET, copy.c_str(), &address) != 1) {
    return Fail(Code::kInvalidArgument,
                fmt::format("host address '{}' is not an IPv4 address; give one of this host's "
                            "addresses, e.g. 127.0.0.1, or none for all addresses",
                            text));
  }
  if (address.s_addr == INADDR_ANY) return std::string();
  char canonical[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &address, canonical, sizeof(canonical));
  return std::string(canonical);
}

bool PublishOverlaps(const PortMapping& a, const PortMapping& b) {
  return a.host_port == b.host_port && a.protocol == b.protocol &&
         (a.host_ip.empty() || b.host_ip.empty() || a.host_ip == b.host_ip);
}

Result<PortMapping> ParsePortMapping(std::string_view text) {
  constexpr std::string_view kForm = "[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp]";
  PortMapping out;
  std::string_view rest = text;
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    auto proto = ParseProtocol(rest.substr(slash + 1));
    if (!proto) {
      return Fail(Code::kInvalidArgument,
                  fmt::format("'{}': {}; use {}", text, proto.error().message, kForm));
    }
    out.protocol = *proto;
    rest = rest.substr(0, slash);
  }
  auto colon = rest.rfind(':');
  if (colon == std::string_view::npos) {
    return Fail(Code::kInvalidArgument,
                fmt::format("'{}' is not {}, e.g. 8080:80 or 127.0.0.1:8080:80/udp", text, kForm));
  }
  auto guest = ParsePort(rest.substr(colon + 1), text);
  rest = rest.substr(0, colon);
  auto host_colon = rest.rfind(':');
  auto host =
      ParsePort(rest.substr(host_colon == std::string_view::npos ? 0 : host_colon + 1), text);
  if (host_colon != std::string_view::npos) {
    auto ip = ParsePublishHostIp(rest.substr(0, host_colon));
    if (!ip) return Fail(ip.error().Wrap(fmt::format("'{}'", text)));
    out.host_ip = *ip;
  }
  if (!host) return Fail(host.error());
  if (!guest) return Fail(guest.error());
  out.host_port = *host;
  out.guest_port = *guest;
  return out;
}

std::string FormatPortMapping(const PortMapping& p) {
  std::string ip = p.host_ip.empty() ? "" : p.host_ip + ":";
  return fmt::format("{}{}:{}/{}", ip, p.host_port, p.guest_port, ToString(p.protocol));
}

Result<WakePort> ParseWakePort(std::string_view text) {
  auto colon = text.find(':');
  if (colon == std::string_view::npos) {
    return Fail(Code::kInvalidArgument,
                fmt::format("'{}' is not PROTOCOL:PORT, e.g. tcp:80 or udp:53", text));
  }
  auto proto = ParseProtocol(text.substr(0, colon));
  if (!proto) return Fail(proto.error().Wrap(fmt::format("'{}'", text)));
  auto port = ParsePort(text.substr(colon + 1), text);
  if (!port) return Fail(port.error());
  return WakePort{*proto, *port};
}

std::string FormatWakePort(const WakePort& p) {
  return fmt::format("{}:{}", ToString(p.protocol), p.port);
}

}  // namespace hearth

#include "net/host_networks.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <ifaddrs.h>
#include <netinet/in.h>

#include <bit>
#include <cerrno>
#include <cstring>

namespace hearth::net {

Result<std::vector<std::pair<std::string, Ipv4Network>>> HostIpv4Networks() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) {
    return Fail(Code::kInternal,
                fmt::format("listing the host's addresses (getifaddrs): {}", strerror(errno)));
  }
  std::vector<std::pair<std::string, Ipv4Network>> out;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !i->ifa_netmask) continue;
    uint32_t address = ntohl(reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr);
    uint32_t mask = ntohl(reinterpret_cast<sockaddr_in*>(i->ifa_netmask)->sin_addr.s_addr);
    out.emplace_back(i->ifa_name, Ipv4Network{address, std::popcount(mask)});
  }
  freeifaddrs(list);
  return out;
}

}  // namespace hearth::net

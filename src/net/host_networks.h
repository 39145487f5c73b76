// The IPv4 networks of this host's interfaces (getifaddrs), for checking that hearth's address
// pool does not overlap them (AddressPool::CheckHostNetworks).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/result.h"
#include "net/ipv4.h"

namespace hearth::net {

// (interface name, address/prefix) for every IPv4 address of every interface, loopback included.
Result<std::vector<std::pair<std::string, Ipv4Network>>> HostIpv4Networks();

}  // namespace hearth::net

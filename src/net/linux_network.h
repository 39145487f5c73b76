// The real Network: taps through /dev/net/tun, addresses and neighbours with ip(8), sysctls under
// /proc/sys and rules with nft(8). Needs root (CAP_NET_ADMIN).
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"
#include "net/tap.h"

namespace hearth::net {

// What on the host belongs to one hearthd. Several may share a host (tests, mostly): each keeps
// its rules in its own nftables table and marks its taps with its owner tag, so that none lists
// or removes another's.
struct NetworkOptions {
  std::string table{kTableName};  // nftables table, family ip
  // Set as the alias (ifalias) of every tap EnsureTap sets up; ListTaps lists only taps carrying
  // it. Empty: taps get no alias and ListTaps lists every tap named with kTapPrefix.
  std::string owner;

  // The default data dir (Paths::kDefaultDataDir) gets table "hearth"; any other gets
  // "hearth_" + 8 hex digits of a hash of its absolute path. The owner is "hearth:" + that
  // absolute path (or + the table name when the path is too long for an alias).
  static NetworkOptions ForDataDir(const std::filesystem::path& data_dir);
};

std::unique_ptr<Network> NewLinuxNetwork(NetworkOptions options = {});

// The part of EnsureTap that does not care what kind of interface `name` is: IPv6 off,
// route_localnet=1, exactly one IPv4 address (address.host/prefix), link up, and exactly one
// permanent neighbour (address.guest -> guest_mac). Exposed so that tests can stand a veth in for
// a tap; not synchronised with any Network.
Status ConfigureHostLink(std::string_view name, const VmAddress& address,
                         std::string_view guest_mac);

}  // namespace hearth::net

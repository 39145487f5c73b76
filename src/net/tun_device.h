// Tap devices through /dev/net/tun and what sysfs says about interfaces.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace hearth::net {

// True when the interface exists (in hearthd's network namespace).
bool InterfaceExists(std::string_view name);
// The IFF_* flags of a tun/tap device (sysfs tun_flags); nullopt for other interfaces and
// absent ones.
std::optional<unsigned> TunFlags(std::string_view name);
// The interface's alias (sysfs ifalias, `ip link set dev X alias A`); empty when it has none or
// does not exist.
std::string InterfaceAlias(std::string_view name);
// True for a persistent, single-queue tap: what EnsureTap makes and what the VMM and the wake
// listener attach to.
bool IsHearthStyleTap(unsigned tun_flags);
// True for any tap (not tun) device.
bool IsTap(unsigned tun_flags);

// Attaches `fd`, open on /dev/net/tun, to tap `name` as hearth uses its taps (TUNSETIFF with
// IFF_TAP|IFF_NO_PI|IFF_VNET_HDR). false, with errno set, when it cannot.
bool AttachTapFd(int fd, std::string_view name);

// Gives the persistent tap `name` to uid:gid (TUNSETOWNER/TUNSETGROUP), so that a process without
// CAP_NET_ADMIN (a jailed Firecracker) can attach to it. The tap must not be attached.
Status GrantTap(std::string_view name, uid_t uid, gid_t gid);

// Creates tap `name` with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR and makes it persistent, so that it
// outlives this call and every VMM that attaches to it. Fails if it cannot (e.g. it exists and is
// attached); the caller checks for an existing device first.
Status CreatePersistentTap(std::string_view name);

}  // namespace hearth::net

// Wake on packet. While a VM is suspended hearthd holds its tap open and reads what arrives. A
// frame that is an IPv4 packet for the guest (its MAC and address, and a listed protocol/port
// when the VM has wake_ports) wakes it: the node is told once, and the frames are kept (bounded
// by count and bytes) until the restored VMM runs, then sent into the tap again. Everything else
// (IPv6 neighbour discovery, multicast, broadcast, other addresses) is dropped and counted. The
// tap fd itself is handed to the VMM, so no frame is lost between the wake and the restore.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "model/vm.h"

namespace hearth::net {

// What wakes a VM.
struct WakeFilter {
  std::array<uint8_t, 6> guest_mac{};
  uint32_t guest_ip = 0;        // host byte order
  std::vector<WakePort> ports;  // empty: any IPv4 packet for the guest
};
// Parses "52:54:ac:1e:00:02" and "172.30.0.2".
Result<WakeFilter> MakeWakeFilter(std::string_view guest_mac, std::string_view guest_ip,
                                  std::vector<WakePort> ports);

enum class FrameVerdict {
  kWake,      // for the guest and allowed to wake it
  kFiltered,  // for the guest, but not a listed wake port
  kNoise,     // not an IPv4 packet for the guest
};
// Classifies an Ethernet frame (no vnet header).
FrameVerdict Classify(std::string_view frame, const WakeFilter& filter);

struct WakeLimits {
  size_t max_frames = 256;
  size_t max_bytes = size_t{4} << 20;
};

struct WakeCounters {
  uint64_t kept = 0;      // frames kept for the guest
  uint64_t filtered = 0;  // for the guest, but not a wake port: dropped while asleep
  uint64_t noise = 0;     // not for the guest: dropped
  uint64_t overflow = 0;  // for the guest, but beyond the limits: dropped
};

// What a watched tap hands to the restore: the open tap (owned by the caller from now on), the
// frames to send into it once the VMM runs, and when the first waking frame was seen.
struct Handoff {
  int fd = -1;
  std::vector<std::string> frames;
  WakeCounters counters;
  std::optional<std::chrono::steady_clock::time_point> woken_at;
};

// Watches the taps of suspended VMs. Thread-safe.
class Waker {
 public:
  using OnWake =
      std::function<void(const std::string& vm, std::chrono::steady_clock::time_point seen)>;
  virtual ~Waker() = default;
  // Called (on the waker's thread, at most once per Watch) when a waking frame arrives.
  virtual void SetOnWake(OnWake on_wake) = 0;
  // Starts watching VM `vm` on open tap `fd` (owned from now on; a previous watch of `vm` is
  // ended and its fd closed). Frames already queued on the tap count.
  virtual Status Watch(const std::string& vm, int fd, WakeFilter filter) = 0;
  // Ends the watch and hands over the tap fd and frames; fd -1 when `vm` was not watched.
  virtual Handoff TakeOver(const std::string& vm) = 0;
};

// Opens an existing persistent tap for reading and for handing to a VMM: IFF_TAP | IFF_NO_PI |
// IFF_VNET_HDR, close-on-exec, non-blocking, with the tap's offloads off (a VMM that exited leaves
// them on, and frames read then would carry partial checksums the guest drops).
Result<int> OpenTap(std::string_view name);

// The nice value of the threads a waking packet waits on: the waker's and a wake job's until it
// hands over to the VMM. They run ahead of best-effort work, so that a busy host does not queue a
// wake behind it (measured: with the host's cores saturated, 1 in 4 wakes waited 2-5 ms for a CPU
// at nice 0). The VMM itself runs at the default priority.
inline constexpr int kWakeNice = -10;

// Sends frames into the tap, towards the guest (AF_PACKET on the tap).
Status SendToGuest(std::string_view tap, const std::vector<std::string>& frames);

}  // namespace hearth::net

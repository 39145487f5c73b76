// Per-VM log files the VMM appends to (the guest's serial console, the VMM's own output). They
// are capped in place while the VMM keeps writing: the oldest part is cut off the head with
// fallocate(COLLAPSE_RANGE) where the filesystem supports it, else punched out as a hole, so the
// disk use stays bounded and the newest lines are kept.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "hv/process.h"

namespace hearth::hv {

inline constexpr int64_t kDefaultLogCap = 1 << 20;  // bytes of console kept per VM

// When `path` holds more than `cap` bytes of data, drops the oldest so that about cap/2 remain.
// Returns how many bytes were cut off the head (the offsets of the rest moved back by as much), 0
// when none were or a hole was punched instead (offsets stay).
Result<int64_t> CapLog(const std::filesystem::path& path, int64_t cap);

// The last `max_bytes` of the file (skipping holes punched by CapLog); empty if it is missing.
std::string ReadTail(const std::filesystem::path& path, int64_t max_bytes);
// The same, and in `end` the offset it ends at (the file's size when read).
std::string ReadTailAt(const std::filesystem::path& path, int64_t max_bytes, int64_t& end);

// The longest a line of LastLines gets (escaped, with the cut marker).
inline constexpr size_t kMaxTailLineBytes = 240;

// The last `lines` non-empty lines of the file written since the last launch marker (StampLaunch:
// the marker itself and an earlier run's lines are not news), joined with " | " (for events,
// state_reason, errors and logs). The bytes are the guest's: each line is escaped (common/text.h:
// no control characters, valid UTF-8) and cut to kMaxTailLineBytes, and only the last 4 KiB of the
// file are read, however long its last line is.
std::string LastLines(const std::filesystem::path& path, int lines);

// Appends one line (with a newline) to the file, creating it.
Status AppendLine(const std::filesystem::path& path, std::string_view line);

// The line a driver writes to the console log before each launch of a VMM; readiness is looked
// for after the last one (the log keeps earlier boots).
inline constexpr std::string_view kLaunchMarker = "hearth: vmm launched";

// Writes "<kLaunchMarker> <vm name> at <time>" to both the console log and the VMM's own log.
Status StampLaunch(const std::filesystem::path& console_log, const std::filesystem::path& vmm_log,
                   std::string_view vm_name);

// What WaitForConsole watches.
struct ConsoleWatch {
  std::filesystem::path console_log;
  std::string_view marker;  // the guest's ready line
  std::string vm_name;
  std::string vmm;  // "qemu", "firecracker": for errors
  ProcessId process;
  std::function<std::string()> diagnose;  // what the logs say, appended to a failure
};

// Waits until the guest prints `marker` on the console after the last launch marker; fails when
// the VMM exits, `deadline` passes or `cancel` is set.
Status WaitForConsole(const ConsoleWatch& watch, std::chrono::steady_clock::time_point deadline,
                      const std::atomic<bool>& cancel);

}  // namespace hearth::hv

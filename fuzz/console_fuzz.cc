// console_fuzz: what hearthd reads from a guest's serial console log, which the guest writes
// freely: ReadTail, LastLines (quoted in events and errors) and WaitForConsole's search for the
// guest's ready line after the last launch marker. An input is the log's bytes. The watched
// process is one that is not alive, so WaitForConsole looks once and returns.
// Findings besides the sanitizers': an exception; LastLines longer than three cut lines, or with a
// control character or bytes that are not UTF-8 in it; a ready line after the last launch marker
// that WaitForConsole does not see, or one it sees that is not there.
#include <atomic>
#include <chrono>
#include <exception>

#include "common/text.h"
#include "fuzz_support.h"
#include "hv/console_log.h"
#include "image/guest_init.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hearth;
  std::string_view text = fuzz::AsText(data, size);
  fuzz::MemFile file(text);
  try {
    std::string tail = hv::ReadTail(file.path(), 4096);
    if (tail != text.substr(text.size() - std::min<size_t>(text.size(), 4096))) {
      fuzz::Crash("ReadTail is not the file's tail", tail);
    }
    std::string lines = hv::LastLines(file.path(), 3);
    // Three lines, each escaped and cut to kMaxTailLineBytes, joined by " | ".
    if (lines.size() > 3 * (hv::kMaxTailLineBytes + 3)) fuzz::Crash("LastLines too long", lines);
    if (FindControl(lines)) fuzz::Crash("LastLines holds a control character", lines);
    if (FindInvalidUtf8(lines)) fuzz::Crash("LastLines is not UTF-8", lines);

    std::atomic<bool> cancel{false};
    hv::ConsoleWatch watch{file.path(), image::kGuestReadyMarker, "fuzz",
                           "qemu",      hv::ProcessId{0, 0},      nullptr};
    Status s = hv::WaitForConsole(watch, std::chrono::steady_clock::now(), cancel);
    size_t launch = text.rfind(hv::kLaunchMarker);
    bool ready = text.find(image::kGuestReadyMarker,
                           launch == std::string_view::npos ? 0 : launch) != std::string_view::npos;
    if (bool(s) != ready) {
      fuzz::Crash(ready ? "a ready line after the last launch was missed"
                        : "a ready line was seen where there is none",
                  s ? "ok" : s.error().message);
    }
  } catch (const std::exception& e) {
    fuzz::Crash("reading the console log threw", e.what());
  }
  return 0;
}

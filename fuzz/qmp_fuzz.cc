// qmp_fuzz: what hearthd reads from QEMU's QMP socket, without a socket: each line of the input
// is one QMP message (hv/qemu/qmp_message.h) as QmpClient reads it; an answer goes through
// QmpCommandAnswer and then through the readers of the answers the driver uses
// (query-cpus-fast, query-blockstats), an event through the event accessors and the MIGRATION
// status. Findings besides the sanitizers': an exception from any of them (it would escape the
// driver's Result-returning calls), negative disk counters, and a thread list longer than the
// answer.
#include <exception>

#include "fuzz_support.h"
#include "hv/qemu/qmp_message.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hearth;
  using namespace hearth::hv::qemu;
  try {
    fuzz::ForEachLine(fuzz::AsText(data, size), [](std::string_view line) {
      auto message = ParseQmpLine(line, "qmp fuzz");
      if (!message) return;
      if (IsQmpEvent(*message)) {
        (void)QmpEventName(*message);
        (void)MigrationStatus(QmpEventData(*message));
        return;
      }
      auto answer = QmpCommandAnswer(*message, "query-cpus-fast");
      if (!answer) return;
      auto threads = VcpuThreadsFromQuery(*answer);
      if (threads.size() > (answer->is_array() ? answer->size() : 0)) {
        fuzz::Crash("more vCPU threads than entries", answer->dump());
      }
      hv::DiskCounters d = DiskCountersFromQuery(*answer);
      if (d.read_bytes < 0 || d.write_bytes < 0 || d.read_ops < 0 || d.write_ops < 0) {
        fuzz::Crash("negative disk counters", answer->dump());
      }
    });
  } catch (const std::exception& e) {
    fuzz::Crash("reading a QMP message threw", e.what());
  }
  return 0;
}

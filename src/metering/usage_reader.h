// UsageReader: the seam between metering and the host. It reads what one VM uses right now, as
// counters that only grow while the thing they count lives: the VMM process's CPU time (from
// /proc), the VM's tap (from /sys/class/net) and the guest's disks (from the hypervisor). The
// sampler turns consecutive readings into deltas (accountant.h). Unit tests use a fake.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/paths.h"
#include "common/result.h"
#include "hv/driver.h"
#include "hv/process.h"
#include "model/vm.h"

namespace hearth::metering {

// A VMM process since it started.
struct ProcessStats {
  int64_t cpu_ms = 0;                // user + system, every thread
  std::vector<int64_t> vcpu_cpu_ms;  // user + system of each vCPU thread; empty if unknown
  int64_t rss_bytes = 0;
  bool operator==(const ProcessStats&) const = default;
};

// A tap since it was created, from the host's side: rx is what the guest sent.
struct TapStats {
  int64_t rx_bytes = 0, tx_bytes = 0, rx_packets = 0, tx_packets = 0;
  bool operator==(const TapStats&) const = default;
};

// What could be read about one VM; a part that could not be read is unset.
struct VmReading {
  std::optional<hv::ProcessId> process;  // the VMM that `stats` and `disks` are about
  std::optional<ProcessStats> stats;
  std::optional<hv::DiskCounters> disks;
  std::optional<TapStats> tap;
};

class UsageReader {
 public:
  virtual ~UsageReader() = default;
  // Reads VM `vm` (a committed record): its VMM when it has one, its tap when it is running,
  // suspended or in transition. Thread-compatible: one sampler calls it.
  virtual VmReading Read(const VmRecord& vm) = 0;
};

// Fields of /proc/<pid>/stat (or .../task/<tid>/stat) that metering uses.
struct ProcStat {
  int64_t utime_ticks = 0;
  int64_t stime_ticks = 0;
  uint64_t start_ticks = 0;  // field 22
  int64_t rss_pages = 0;     // field 24
};
// invalid_argument when `text` is not a stat line (the command may hold spaces and parentheses).
Result<ProcStat> ParseProcStat(std::string_view text);

// Reads /proc and /sys/class/net, and asks `driver` (may be null) for vCPU threads (once per VMM
// process) and disk counters (only for VMs with a disk).
class LinuxUsageReader final : public UsageReader {
 public:
  LinuxUsageReader(Paths paths, hv::HypervisorDriver* driver);
  VmReading Read(const VmRecord& vm) override;

 private:
  std::optional<ProcessStats> ReadProcess(const VmRecord& vm, const hv::ProcessId& process);
  hv::MachineSpec SpecOf(const VmRecord& vm) const;
  Paths paths_;
  hv::HypervisorDriver* driver_;
  int64_t ticks_per_second_;
  int64_t page_size_;
  // vCPU thread ids by VMM pid, for the process with that start time.
  struct Threads {
    uint64_t start = 0;
    std::vector<int64_t> tids;
  };
  std::map<int64_t, Threads> threads_;
};

}  // namespace hearth::metering

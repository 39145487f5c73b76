// The QEMU driver's answers for metering, over QMP. A short connect timeout: a VMM that does not
// answer at once is skipped for this interval rather than holding up the sampler.
#include <fmt/format.h>

#include "hv/qemu/qemu_driver.h"
#include "hv/qemu/qmp_client.h"
#include "hv/qemu/qmp_message.h"

namespace hearth::hv::qemu {
namespace {

using namespace std::chrono_literals;

}  // namespace

Result<std::vector<int64_t>> QemuDriver::VcpuThreads(const MachineSpec& spec,
                                                     const ProcessId& process) {
  auto qmp = Qmp(spec, "metering", 200ms);
  if (!qmp) return Fail(qmp.error());
  auto cpus = RunCall(**qmp, QueryCpusFast());
  if (!cpus) return Fail(cpus.error().Wrap(fmt::format("vm '{}': query-cpus-fast", spec.name)));
  return VcpuThreadsFromQuery(*cpus);
}

Result<DiskCounters> QemuDriver::Disks(const MachineSpec& spec, const ProcessId& process) {
  auto qmp = Qmp(spec, "metering", 200ms);
  if (!qmp) return Fail(qmp.error());
  auto stats = RunCall(**qmp, QueryBlockstats());
  if (!stats) return Fail(stats.error().Wrap(fmt::format("vm '{}': query-blockstats", spec.name)));
  return DiskCountersFromQuery(*stats);
}

}  // namespace hearth::hv::qemu

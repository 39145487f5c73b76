// The QEMU driver's answers for metering, over QMP. A short connect timeout: a VMM that does not
// answer at once is skipped for this interval rather than holding up the sampler.
#include <fmt/format.h>

#include "hv/qemu/qemu_driver.h"
#include "hv/qemu/qmp_client.h"
#include "hv/qemu/qmp_message.h"

namespace hearth::hv::qemu {
namespace {

using namespace std::chrono_literals;

Result<QmpClient> MeteringQmp(const MachineSpec& spec) {
  auto qmp = QmpClient::Connect(spec.qmp_socket.string(), 200ms);
  if (!qmp) return Fail(qmp.error().Wrap(fmt::format("vm '{}': metering", spec.name)));
  return qmp;
}

}  // namespace

Result<std::vector<int64_t>> QemuDriver::VcpuThreads(const MachineSpec& spec,
                                                     const ProcessId& process) {
  auto qmp = MeteringQmp(spec);
  if (!qmp) return Fail(qmp.error());
  auto cpus = qmp->Execute("query-cpus-fast", nlohmann::json::object(), 1s);
  if (!cpus) return Fail(cpus.error().Wrap(fmt::format("vm '{}': query-cpus-fast", spec.name)));
  return VcpuThreadsFromQuery(*cpus);
}

Result<DiskCounters> QemuDriver::Disks(const MachineSpec& spec, const ProcessId& process) {
  auto qmp = MeteringQmp(spec);
  if (!qmp) return Fail(qmp.error());
  auto stats = qmp->Execute("query-blockstats", nlohmann::json::object(), 1s);
  if (!stats) return Fail(stats.error().Wrap(fmt::format("vm '{}': query-blockstats", spec.name)));
  return DiskCountersFromQuery(*stats);
}

}  // namespace hearth::hv::qemu

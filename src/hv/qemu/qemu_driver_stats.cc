// The QEMU driver's answers for metering, over QMP. A short connect timeout: a VMM that does not
// answer at once is skipped for this interval rather than holding up the sampler.
#include <fmt/format.h>

#include <algorithm>

#include "hv/qemu/qemu_driver.h"
#include "hv/qemu/qmp_client.h"

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
  std::vector<std::pair<int64_t, int64_t>> by_index;
  for (const auto& cpu : *cpus) {
    if (cpu.contains("cpu-index") && cpu.contains("thread-id")) {
      by_index.emplace_back(cpu["cpu-index"].get<int64_t>(), cpu["thread-id"].get<int64_t>());
    }
  }
  std::sort(by_index.begin(), by_index.end());
  std::vector<int64_t> threads;
  for (const auto& [_, tid] : by_index) threads.push_back(tid);
  return threads;
}

Result<DiskCounters> QemuDriver::Disks(const MachineSpec& spec, const ProcessId& process) {
  auto qmp = MeteringQmp(spec);
  if (!qmp) return Fail(qmp.error());
  auto stats = qmp->Execute("query-blockstats", nlohmann::json::object(), 1s);
  if (!stats) return Fail(stats.error().Wrap(fmt::format("vm '{}': query-blockstats", spec.name)));
  DiskCounters out;
  for (const auto& dev : *stats) {
    if (!dev.contains("stats")) continue;
    const auto& s = dev["stats"];
    out.read_bytes += s.value("rd_bytes", int64_t{0});
    out.write_bytes += s.value("wr_bytes", int64_t{0});
    out.read_ops += s.value("rd_operations", int64_t{0});
    out.write_ops += s.value("wr_operations", int64_t{0});
  }
  return out;
}

}  // namespace hearth::hv::qemu

// The Firecracker driver's non-lifecycle answers: readiness, adoption, shutdown, version,
// description and metering.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <thread>

#include "hv/console_log.h"
#include "hv/firecracker/firecracker_driver.h"
#include "image/guest_init.h"

namespace hearth::hv::firecracker {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// True when the process's argv has `--id <vm_id>` or `--id=<vm_id>` (the jailer passes the
// latter on to Firecracker).
bool StartedWithId(int64_t pid, const std::string& vm_id) {
  std::string cmdline = ProcessCmdline(pid);
  std::vector<std::string> args;
  for (size_t start = 0, end; start < cmdline.size(); start = end + 1) {
    end = cmdline.find('\0', start);
    if (end == std::string::npos) end = cmdline.size();
    args.push_back(cmdline.substr(start, end - start));
  }
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--id=" + vm_id) return true;
    if (args[i] == "--id" && i + 1 < args.size() && args[i + 1] == vm_id) return true;
  }
  return false;
}

}  // namespace

Status FirecrackerDriver::WaitReady(const MachineSpec& spec, const ProcessId& process,
                                    std::chrono::steady_clock::time_point deadline,
                                    const CancelFlag& cancel) {
  ConsoleWatch watch{spec.console_log, image::kGuestReadyMarker,
                     spec.name,        "firecracker",
                     process,          [&] { return Diagnose(spec, RootFor(spec)); }};
  return WaitForConsole(watch, deadline, cancel);
}

Status FirecrackerDriver::Adopt(const MachineSpec& spec, const ProcessId& process) {
  if (!IsAlive(process)) {
    return Fail(Code::kNotFound,
                fmt::format("vm '{}': process {} is gone", spec.name, process.pid));
  }
  if (!StartedWithId(process.pid, spec.vm_id)) {
    return Fail(Code::kNotFound, fmt::format("vm '{}': process {} is not its firecracker (no "
                                             "--id {})",
                                             spec.name, process.pid, spec.vm_id));
  }
  auto transport = Transport(RootFor(spec));
  auto info = Execute(*transport, DescribeInstance(), spec.name);
  if (!info) return Fail(info.error());
  if (InstanceId(*info) != spec.vm_id) {
    return Fail(Code::kNotFound, fmt::format("vm '{}': the API socket answers for instance '{}'",
                                             spec.name, InstanceId(*info)));
  }
  // Keep its metrics drained again (their totals restart from zero).
  if (auto s = EnsureMetrics(spec); !s)
    return Fail(s.error().Wrap(fmt::format("vm '{}'", spec.name)));
  return Ok();
}

Status FirecrackerDriver::RequestShutdown(const MachineSpec& spec, const ProcessId&) {
  auto transport = Transport(RootFor(spec));
  if (auto r = Execute(*transport, SendCtrlAltDel(), spec.name); !r) return Fail(r.error());
  return Ok();
}

Result<std::string> FirecrackerDriver::Version() {
  auto version = version_.Get(options_.binary.string());
  if (!version) return Fail(version.error().Wrap("asking firecracker's version"));
  return version;
}

Result<std::string> FirecrackerDriver::Describe(const MachineSpec& spec, const ProcessId&) {
  auto transport = Transport(RootFor(spec));
  auto info = Execute(*transport, DescribeInstance(), spec.name);
  if (!info) return Fail(info.error());
  nlohmann::json out = {{"instance", *info}};
  if (auto totals = Metrics(spec)) out["metrics"] = totals->ToJson();
  return out.dump();
}

Result<std::vector<int64_t>> FirecrackerDriver::VcpuThreads(const MachineSpec& spec,
                                                            const ProcessId& process) {
  std::vector<std::pair<int, int64_t>> found;
  std::error_code ec;
  for (const auto& task : fs::directory_iterator(fmt::format("/proc/{}/task", process.pid), ec)) {
    std::string comm = ReadAll(task.path() / "comm");
    while (!comm.empty() && comm.back() == '\n') comm.pop_back();
    constexpr std::string_view kPrefix = "fc_vcpu ";
    if (comm.rfind(kPrefix, 0) != 0) continue;
    try {
      found.emplace_back(std::stoi(comm.substr(kPrefix.size())),
                         std::stoll(task.path().filename().string()));
    } catch (const std::exception&) {
    }
  }
  if (ec) {
    return Fail(Code::kNotFound, fmt::format("vm '{}': listing the threads of pid {}: {}",
                                             spec.name, process.pid, ec.message()));
  }
  std::sort(found.begin(), found.end());
  std::vector<int64_t> tids;
  for (const auto& [_, tid] : found) tids.push_back(tid);
  return tids;
}

Result<DiskCounters> FirecrackerDriver::Disks(const MachineSpec& spec, const ProcessId&) {
  // Firecracker writes metrics every 60 s on its own: ask for a line now (best effort; a paused
  // or busy VMM is read as it is).
  auto transport = Transport(RootFor(spec));
  ApiCall flush = FlushMetrics();
  flush.timeout = 500ms;
  (void)Execute(*transport, flush, spec.name);
  auto totals = Metrics(spec);
  if (!totals) return Fail(totals.error());
  return DiskCounters{totals->block_read_bytes, totals->block_write_bytes, totals->block_read_ops,
                      totals->block_write_ops};
}

}  // namespace hearth::hv::firecracker

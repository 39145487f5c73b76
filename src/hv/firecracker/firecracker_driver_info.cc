// The Firecracker driver's non-lifecycle answers: readiness, adoption, shutdown, version,
// description and metering.
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <thread>

#include "hv/console_log.h"
#include "hv/firecracker/firecracker_driver.h"
#include "image/command.h"
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
  std::string cmdline = ReadAll(fmt::format("/proc/{}/cmdline", pid));
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
  if (info->value("id", "") != spec.vm_id) {
    return Fail(Code::kNotFound, fmt::format("vm '{}': the API socket answers for instance '{}'",
                                             spec.name, info->value("id", "")));
  }
  // Keep its metrics drained again (their totals restart from zero).
  if (!metrics_.attached(spec.vm_id)) {
    if (auto s = metrics_.Attach(spec.vm_id, RootFor(spec).Host(kMetricsName)); !s) {
      return Fail(s.error().Wrap(fmt::format("vm '{}'", spec.name)));
    }
  }
  return Ok();
}

Status FirecrackerDriver::RequestShutdown(const MachineSpec& spec, const ProcessId&) {
  auto transport = Transport(RootFor(spec));
  if (auto r = Execute(*transport, SendCtrlAltDel(), spec.name); !r) return Fail(r.error());
  return Ok();
}

Result<std::string> FirecrackerDriver::Version() {
  std::lock_guard lock(version_mu_);
  if (version_.empty()) {
    auto out = image::RunCommand({options_.binary.string(), "--version"});
    if (!out) return Fail(out.error().Wrap("asking firecracker's version"));
    std::string first = out->out.substr(0, out->out.find('\n'));
    while (!first.empty() && (first.back() == '\r' || first.back() == ' ')) first.pop_back();
    if (first.empty()) {
      return Fail(Code::kUnavailable,
                  fmt::format("{} --version printed nothing", options_.binary.string()));
    }
    version_ = first;
  }
  return version_;
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

Status GrantTap(const std::string& name, uid_t uid, gid_t gid) {
  int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    return Fail(Code::kInternal, fmt::format("opening /dev/net/tun: {}", strerror(errno)));
  }
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  Status result = Ok();
  if (ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETOWNER, uid) < 0 ||
      ioctl(fd, TUNSETGROUP, gid) < 0) {
    result = Fail(Code::kInternal, fmt::format("giving tap {} to the jail's {}:{}: {}", name, uid,
                                               gid, strerror(errno)));
  }
  ::close(fd);
  return result;
}

}  // namespace hearth::hv::firecracker

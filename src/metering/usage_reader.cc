#include "metering/usage_reader.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <charconv>

#include "net/tap.h"

namespace hearth::metering {
namespace {

// Reads a small /proc or /sys file whole (one read: such files are produced in one go).
std::optional<std::string> ReadSmall(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[1024];
  ssize_t n = read(fd, buf, sizeof(buf));
  close(fd);
  if (n <= 0) return std::nullopt;
  return std::string(buf, static_cast<size_t>(n));
}

std::optional<int64_t> ReadNumber(const std::string& path) {
  auto text = ReadSmall(path);
  if (!text) return std::nullopt;
  int64_t v = 0;
  auto [_, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
  if (ec != std::errc{}) return std::nullopt;
  return v;
}

}  // namespace

Result<ProcStat> ParseProcStat(std::string_view text) {
  // "pid (comm) state ppid ...": the command ends at the last ')'.
  size_t close = text.rfind(')');
  if (close == std::string_view::npos) {
    return Fail(Code::kInvalidArgument, "stat: no ')' after the command");
  }
  // Fields from 3 (state) on, split by single spaces.
  std::vector<std::string_view> fields;
  size_t pos = close + 2;
  while (pos < text.size()) {
    size_t end = text.find(' ', pos);
    if (end == std::string_view::npos) end = text.size();
    fields.push_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  if (fields.size() < 22) {
    return Fail(Code::kInvalidArgument, fmt::format("stat: {} fields, want 24", fields.size() + 2));
  }
  auto field = [&](int number, auto& into) {
    std::string_view f = fields[static_cast<size_t>(number - 3)];
    auto [_, ec] = std::from_chars(f.data(), f.data() + f.size(), into);
    return ec == std::errc{};
  };
  ProcStat s;
  if (!field(14, s.utime_ticks) || !field(15, s.stime_ticks) || !field(22, s.start_ticks) ||
      !field(24, s.rss_pages)) {
    return Fail(Code::kInvalidArgument, "stat: a field is not a number");
  }
  return s;
}

// What the driver needs to talk to the VM's VMM: its identity and runtime paths.
hv::MachineSpec LinuxUsageReader::SpecOf(const VmRecord& vm) const {
  return hv::RuntimeSpec(paths_, vm.id, vm.name);
}

LinuxUsageReader::LinuxUsageReader(Paths paths, hv::HypervisorDriver* driver)
    : paths_(std::move(paths)),
      driver_(driver),
      ticks_per_second_(sysconf(_SC_CLK_TCK)),
      page_size_(sysconf(_SC_PAGESIZE)) {}

std::optional<ProcessStats> LinuxUsageReader::ReadProcess(const VmRecord& vm,
                                                          const hv::ProcessId& process) {
  auto text = ReadSmall(fmt::format("/proc/{}/stat", process.pid));
  if (!text) return std::nullopt;
  auto stat = ParseProcStat(*text);
  // Another process under a recycled pid is not the VMM.
  if (!stat || stat->start_ticks != process.start_time) return std::nullopt;
  auto to_ms = [&](int64_t ticks) { return ticks * 1000 / ticks_per_second_; };
  ProcessStats out;
  out.cpu_ms = to_ms(stat->utime_ticks + stat->stime_ticks);
  out.rss_bytes = stat->rss_pages * page_size_;
  if (!driver_) return out;
  Threads& threads = threads_[process.pid];
  if (threads.start != process.start_time) {
    // Asked once per VMM process: vCPU threads live as long as it does.
    threads = Threads{process.start_time, {}};
    if (auto tids = driver_->VcpuThreads(SpecOf(vm), process); tids) {
      threads.tids = *tids;
    } else {
      spdlog::debug("metering: {}", tids.error().message);
      threads.start = 0;  // ask again next time
    }
  }
  for (int64_t tid : threads.tids) {
    auto t = ReadSmall(fmt::format("/proc/{}/task/{}/stat", process.pid, tid));
    auto ts = t ? ParseProcStat(*t) : Result<ProcStat>(Fail(Code::kNotFound, ""));
    out.vcpu_cpu_ms.push_back(ts ? to_ms(ts->utime_ticks + ts->stime_ticks) : 0);
  }
  return out;
}

VmReading LinuxUsageReader::Read(const VmRecord& vm) {
  VmReading r;
  if (vm.pid) {
    hv::ProcessId process{*vm.pid, vm.pid_start};
    r.stats = ReadProcess(vm, process);
    if (r.stats) {
      r.process = process;
      if (driver_ && !vm.spec.rootfs.empty()) {
        if (auto d = driver_->Disks(SpecOf(vm), process); d) {
          r.disks = *d;
        } else {
          spdlog::debug("metering: {}", d.error().message);
        }
      }
    }
  }
  // A created, stopped or failed VM has no VMM on its tap; nothing it counts is the VM's.
  bool tap_live = vm.state != VmState::kCreated && vm.state != VmState::kStopped &&
                  vm.state != VmState::kFailed;
  if (!vm.ip.empty() && tap_live) {
    std::string dir = fmt::format("/sys/class/net/{}/statistics/", net::TapName(vm.id));
    auto rx_bytes = ReadNumber(dir + "rx_bytes"), tx_bytes = ReadNumber(dir + "tx_bytes");
    auto rx_packets = ReadNumber(dir + "rx_packets"), tx_packets = ReadNumber(dir + "tx_packets");
    if (rx_bytes && tx_bytes && rx_packets && tx_packets) {
      r.tap = TapStats{*rx_bytes, *tx_bytes, *rx_packets, *tx_packets};
    }
  }
  // Forget the threads of VMMs that are gone (bounded by the VMs running at once).
  if (threads_.size() > 4096) threads_.clear();
  return r;
}

}  // namespace hearth::metering

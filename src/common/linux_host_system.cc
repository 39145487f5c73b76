#include "common/linux_host_system.h"

#include <fmt/format.h>

#include <fstream>
#include <iterator>

namespace hearth {

std::string LinuxHostSystem::BootId() { return ReadHostBootId(); }
std::string LinuxHostSystem::CpuModel() { return HostCpuModel(); }

std::vector<ProcessId> LinuxHostSystem::FindProcesses(std::string_view needle) {
  return hearth::FindProcesses(needle);
}
bool LinuxHostSystem::IsAlive(const ProcessId& id) { return hearth::IsAlive(id); }
Result<uint64_t> LinuxHostSystem::ProcessStartTime(int64_t pid) {
  return hearth::ProcessStartTime(pid);
}
bool LinuxHostSystem::WaitForExit(const ProcessId& id, std::chrono::milliseconds timeout) {
  return hearth::WaitForExit(id, timeout);
}
Status LinuxHostSystem::SignalProcess(const ProcessId& id, int signal) {
  return hearth::SignalProcess(id, signal);
}

Result<CommandOutput> LinuxHostSystem::RunCommand(const std::vector<std::string>& argv,
                                                  const CommandOptions& options) {
  return hearth::RunCommand(argv, options);
}

HostSystem::SteadyTime LinuxHostSystem::SteadyNow() { return std::chrono::steady_clock::now(); }

bool LinuxHostSystem::WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                                SteadyTime deadline, const std::function<bool()>& pred) {
  return cv.wait_until(lock, deadline, pred);
}

HostSystem& LinuxHost() {
  static LinuxHostSystem host;
  return host;
}

std::string ReadHostBootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

std::string ParseCpuModel(std::string_view cpuinfo) {
  std::string vendor, family, model, stepping, name;
  size_t start = 0;
  while (start < cpuinfo.size()) {
    size_t end = cpuinfo.find('\n', start);
    if (end == std::string_view::npos) end = cpuinfo.size();
    std::string_view line = cpuinfo.substr(start, end - start);
    start = end + 1;
    if (line.empty() && !vendor.empty()) break;  // the end of the first processor
    auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view key = line.substr(0, colon);
    while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.remove_suffix(1);
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (key == "vendor_id") vendor = value;
    if (key == "cpu family") family = value;
    if (key == "model") model = value;
    if (key == "stepping") stepping = value;
    if (key == "model name") name = value;
  }
  if (vendor.empty() && family.empty() && model.empty() && name.empty()) return "";
  return fmt::format("{} family {} model {} stepping {} ({})", vendor, family, model, stepping,
                     name);
}

std::string HostCpuModel() {
  static const std::string model = [] {
    std::ifstream in("/proc/cpuinfo");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return ParseCpuModel(text);
  }();
  return model;
}

}  // namespace hearth

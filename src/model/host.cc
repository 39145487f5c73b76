#include "model/host.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace hearth {

Result<HostInfo> ReadLinuxHostInfo() {
  HostInfo info;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    info.cpus = CPU_COUNT(&set);
  } else {
    info.cpus = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  }
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit) {
    if (key == "MemTotal:") {
      info.memory = MiB{kib / 1024};
      break;
    }
  }
  // Hosts with constant_tsc/tsc_known_freq report the TSC rate as "cpu MHz"; a guest under TCG
  // only needs a plausible value to skip TSC calibration, which hangs without a PIT on microvm.
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("cpu MHz", 0) != 0) continue;
    auto colon = line.find(':');
    if (colon != std::string::npos) {
      info.tsc_khz = std::llround(std::strtod(line.c_str() + colon + 1, nullptr) * 1000);
    }
    break;
  }
  if (info.memory.value <= 0 || info.cpus <= 0) {
    return Fail(Code::kInternal, "cannot read host CPUs and memory from /proc/meminfo");
  }
  return info;
}

FileFacts LinuxFileProbe::Probe(const std::string& path) const {
  FileFacts facts;
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    facts.error = std::strerror(errno);
    return facts;
  }
  facts.device = st.st_dev;
  facts.inode = st.st_ino;
  if (char* resolved = realpath(path.c_str(), nullptr)) {
    facts.canonical = resolved;
    free(resolved);
  }
  if (S_ISREG(st.st_mode)) {
    facts.kind = FileKind::kRegular;
  } else if (S_ISBLK(st.st_mode)) {
    facts.kind = FileKind::kBlockDevice;
  } else if (S_ISDIR(st.st_mode)) {
    facts.kind = FileKind::kDirectory;
    facts.readable = access(path.c_str(), R_OK | X_OK) == 0;
    return facts;
  } else {
    facts.kind = FileKind::kOther;
    return facts;
  }
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    facts.error = std::strerror(errno);
    return facts;
  }
  char buf[1024];
  ssize_t n = pread(fd, buf, sizeof(buf), 0);
  if (n < 0) {
    facts.error = std::strerror(errno);
  } else {
    facts.readable = true;
    facts.head.assign(buf, static_cast<size_t>(n));
  }
  close(fd);
  return facts;
}

}  // namespace hearth

// What the validator needs to know about the host, behind interfaces so that unit tests run
// without touching the real machine.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/linux_host_system.h"
#include "common/result.h"
#include "model/vm.h"

namespace hearth {

struct HostInfo {
  int cpus = 0;
  MiB memory;  // physical RAM
  // The TSC frequency in kHz (guests under TCG need it on their command line), or 0 if unknown.
  int64_t tsc_khz = 0;
};

// Reads CPU count (sched_getaffinity) and MemTotal (/proc/meminfo) of this machine.
Result<HostInfo> ReadLinuxHostInfo();

// ReadHostBootId, ParseCpuModel and HostCpuModel: common/linux_host_system.h (included).

enum class FileKind { kMissing, kRegular, kBlockDevice, kDirectory, kOther };

struct FileFacts {
  FileKind kind = FileKind::kMissing;
  bool readable = false;  // opened and read by this process
  uint64_t device = 0;    // st_dev and st_ino identify the file across different paths
  uint64_t inode = 0;
  std::string head;   // the first bytes (up to 1 KiB), to recognise kernels
  std::string error;  // strerror of the failed stat/open, if any
  // The absolute path with every symlink and "." / ".." resolved (realpath); empty if unknown
  // (then callers use the lexically normal path).
  std::string canonical;
};

class FileProbe {
 public:
  virtual ~FileProbe() = default;
  virtual FileFacts Probe(const std::string& path) const = 0;
};

class LinuxFileProbe final : public FileProbe {
 public:
  FileFacts Probe(const std::string& path) const override;
};

// Host processes holding ports: listening TCP sockets and bound UDP sockets. A published port is
// DNATed on every host address (or on the one it names), so it would take such a port from its
// holder. Also which addresses are the host's own, the only ones a port can be published on.
class PortHolders {
 public:
  virtual ~PortHolders() = default;
  // Who holds `port`/`protocol` where a publish on `host_ip` ("" for all addresses) would take
  // it, e.g. "sshd (pid 412)" or "a socket of no visible process"; nullopt when nothing does. A
  // socket on a wildcard address counts for every `host_ip`, one on a specific address for ""
  // and for that address.
  virtual std::optional<std::string> Holder(const std::string& host_ip, int port,
                                            Protocol protocol) const = 0;
  // Whether `ip` (an IPv4 dotted quad) is an address of one of the host's interfaces, or in
  // 127.0.0.0/8.
  virtual bool IsHostAddress(const std::string& ip) const = 0;
};

}  // namespace hearth

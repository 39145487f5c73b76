// The QEMU command line of one VM, built as plain data with no I/O, so that every flag is
// unit-tested without starting QEMU. The driver executes what this returns.
//
// The machine is QEMU's `microvm` (ACPI on: Debian's kernel finds the virtio-mmio devices through
// ACPI) booting an ELF vmlinux through PVH. Guest RAM lives in a shared memory-backend-file in the
// VM's directory, so a snapshot needs to save only the device state (migration capability
// x-ignore-shared, set over QMP on both sides).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "model/vm.h"

namespace hearth::hv::qemu {

enum class Accel { kKvm, kTcg };

struct QemuConfig {
  std::string binary = "qemu-system-x86_64";
  Accel accel = Accel::kTcg;
  int vcpus = 1;
  MiB memory;
  std::string kernel;  // ELF vmlinux
  std::string initrd;  // optional
  std::string rootfs;  // optional: the first virtio-blk disk
  bool rootfs_readonly = false;
  std::string cmdline;      // the whole kernel command line (see BuildKernelCmdline)
  std::string memory_file;  // guest RAM backing file
  std::string qmp_socket;   // QMP unix socket, created by QEMU unless qmp_fd is given
  // A socket hearthd already bound to qmp_socket and listens on, which QEMU takes over: clients
  // connect at once and are greeted as soon as QEMU's main loop runs.
  std::optional<int> qmp_fd;
  std::string console_output;  // where the serial console goes (a file or FIFO)
  // The guest agent's virtio-serial port (org.hearth.agent) as a pair of FIFOs, PATH.in (to the
  // guest) and PATH.out (from it), so the port always has a host end and the guest's read blocks
  // instead of seeing end-of-file; empty: no agent channel.
  std::string agent_pipe;
  // The VM's tap: an fd hearthd opened and passes on (no gap when hearthd held it while the VM
  // was suspended), or otherwise its name.
  std::optional<int> tap_fd;
  std::string tap_name;
  std::string mac;  // the guest's MAC, e.g. 52:54:00:xx:xx:xx
  // Start paused, waiting for `migrate-incoming` over QMP (restoring a snapshot). The rest of the
  // command line must be identical to the one the snapshot was taken with.
  bool incoming = false;
  // QEMU's seccomp filter: no obsolete system calls, no set*uid/gid, no fork or exec (every
  // migration goes to a descriptor hearthd hands over, never to `exec:`), no scheduler or
  // resource changes.
  bool sandbox = true;
  // Under TCG, the translation cache in MiB (fixed so that the cgroup memory limit can count it);
  // 0: QEMU's default.
  int64_t tcg_cache_mib = 0;
};

// The -sandbox argument of a sandboxed QEMU.
inline constexpr std::string_view kSandbox =
    "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

// QEMU's option syntax separates key=value pairs with commas; a comma inside a value is doubled.
std::string EscapeOptionValue(std::string_view value);

// The argv (argv[0] = binary). invalid_argument names a missing or contradictory field.
Result<std::vector<std::string>> BuildQemuArgv(const QemuConfig& config);

struct GuestNetwork {
  std::string address;  // guest address with prefix, e.g. 172.30.0.2/30
  std::string gateway;  // the host end of the tap, e.g. 172.30.0.1
};

// The kernel command line: the image's base line, the TSC frequency (without it microvm hangs
// calibrating the TSC under TCG), what the default image's /init reads (hearth.name, hearth.ip,
// hearth.gw), then the user's own `extra` last so that it can override.
std::string BuildKernelCmdline(std::string_view base, int64_t tsc_khz, std::string_view vm_name,
                               const std::optional<GuestNetwork>& network, std::string_view extra);

}  // namespace hearth::hv::qemu

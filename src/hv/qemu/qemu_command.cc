#include "hv/qemu/qemu_command.h"

#include <fmt/format.h>

namespace hearth::hv::qemu {

std::string EscapeOptionValue(std::string_view value) {
  std::string out;
  for (char c : value) {
    out += c;
    if (c == ',') out += ',';
  }
  return out;
}

namespace {

tl::unexpected<Error> Missing(std::string_view field) {
  return Fail(Code::kInvalidArgument, fmt::format("qemu: {} is required", field),
              std::string(field));
}

}  // namespace

Result<std::vector<std::string>> BuildQemuArgv(const QemuConfig& c) {
  if (c.kernel.empty()) return Missing("kernel");
  if (c.memory_file.empty()) return Missing("memory_file");
  if (c.qmp_socket.empty()) return Missing("qmp_socket");
  if (c.console_output.empty()) return Missing("console_output");
  if (c.vcpus < 1) return Fail(Code::kInvalidArgument, "qemu: vcpus must be at least 1", "vcpus");
  if (c.memory.value <= 0) {
    return Fail(Code::kInvalidArgument, "qemu: memory must be positive", "memory");
  }
  if (c.tap_fd && !c.tap_name.empty()) {
    return Fail(Code::kInvalidArgument, "qemu: give the tap as an fd or a name, not both", "tap");
  }
  if ((c.tap_fd || !c.tap_name.empty()) && c.mac.empty()) return Missing("mac");

  std::vector<std::string> argv = {
      c.binary,
      "-nodefaults",
      "-no-user-config",
      "-nographic",
      // hearthd supervises the process: QEMU must not reboot a guest that asked to power off.
      "-no-reboot",
      "-accel",
      c.accel == Accel::kKvm || c.tcg_cache_mib <= 0
          ? std::string(c.accel == Accel::kKvm ? "kvm" : "tcg")
          : fmt::format("tcg,tb-size={}", c.tcg_cache_mib),
      "-cpu",
      c.accel == Accel::kKvm ? "host" : "max",
      "-smp",
      std::to_string(c.vcpus),
      "-m",
      fmt::format("{}M", c.memory.value),
      "-object",
      fmt::format("memory-backend-file,id=mem,size={}M,mem-path={},share=on", c.memory.value,
                  EscapeOptionValue(c.memory_file)),
      "-M",
      "microvm,acpi=on,memory-backend=mem",
      "-kernel",
      c.kernel,
  };
  if (!c.initrd.empty()) argv.insert(argv.end(), {"-initrd", c.initrd});
  if (!c.cmdline.empty()) argv.insert(argv.end(), {"-append", c.cmdline});
  argv.insert(argv.end(), {"-chardev",
                           fmt::format("file,id=console,path={},append=on",
                                       EscapeOptionValue(c.console_output)),
                           "-serial", "chardev:console"});
  if (c.qmp_fd) {
    argv.insert(argv.end(),
                {"-chardev", fmt::format("socket,id=qmp,fd={},server=on,wait=off", *c.qmp_fd),
                 "-mon", "chardev=qmp,mode=control"});
  } else {
    argv.insert(argv.end(), {"-qmp", fmt::format("unix:{},server=on,wait=off",
                                                 EscapeOptionValue(c.qmp_socket))});
  }
  if (!c.agent_pipe.empty()) {
    argv.insert(argv.end(), {"-device", "virtio-serial-device", "-chardev",
                             fmt::format("pipe,id=agent,path={}", EscapeOptionValue(c.agent_pipe)),
                             "-device", "virtserialport,chardev=agent,name=org.hearth.agent"});
  }
  if (!c.rootfs.empty()) {
    argv.insert(argv.end(),
                {"-drive",
                 fmt::format("id=root,file={},format=raw,if=none,cache=none,aio=threads{}",
                             EscapeOptionValue(c.rootfs), c.rootfs_readonly ? ",readonly=on" : ""),
                 "-device", "virtio-blk-device,drive=root"});
  }
  if (c.tap_fd) {
    argv.insert(argv.end(), {"-netdev", fmt::format("tap,id=net0,fd={}", *c.tap_fd)});
  } else if (!c.tap_name.empty()) {
    argv.insert(argv.end(), {"-netdev", fmt::format("tap,id=net0,ifname={},script=no,downscript=no",
                                                    EscapeOptionValue(c.tap_name))});
  }
  if (c.tap_fd || !c.tap_name.empty()) {
    argv.insert(argv.end(),
                {"-device", fmt::format("virtio-net-device,netdev=net0,mac={}", c.mac)});
  }
  if (c.incoming) argv.insert(argv.end(), {"-incoming", "defer"});
  if (c.sandbox) argv.insert(argv.end(), {"-sandbox", std::string(kSandbox)});
  return argv;
}

std::string BuildKernelCmdline(std::string_view base, int64_t tsc_khz, std::string_view vm_name,
                               const std::optional<GuestNetwork>& network, std::string_view extra) {
  std::string out(base);
  auto add = [&](std::string_view part) {
    if (part.empty()) return;
    if (!out.empty()) out += ' ';
    out += part;
  };
  if (tsc_khz > 0) add(fmt::format("tsc_early_khz={}", tsc_khz));
  add(fmt::format("hearth.name={}", vm_name));
  if (network) {
    add(fmt::format("hearth.ip={}", network->address));
    add(fmt::format("hearth.gw={}", network->gateway));
  }
  add(extra);
  return out;
}

}  // namespace hearth::hv::qemu

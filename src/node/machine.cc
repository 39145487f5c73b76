#include "node/machine.h"

#include <fmt/format.h>

#include "hv/qemu/qemu_command.h"
#include "image/image_manifest.h"
#include "net/tap.h"

namespace hearth::node {

std::string_view VmmProgram(std::string_view backend) {
  if (backend.starts_with("qemu")) return "qemu";
  if (backend.empty()) return "VMM";
  return backend;
}

Result<hv::MachineSpec> MachineFor(const VmRecord& vm, const MachineContext& ctx) {
  hv::MachineSpec m;
  m.vm_id = vm.id;
  m.name = vm.name;
  m.vcpus = vm.spec.vcpus;
  m.memory = vm.spec.memory;
  m.kernel = vm.spec.kernel;
  m.initrd = vm.spec.initrd;
  m.rootfs = vm.spec.rootfs;
  m.rootfs_readonly = vm.spec.rootfs_readonly;
  hv::UseLayout(m, *ctx.paths, vm.id);

  std::string base(kDefaultCmdline);
  if (!vm.spec.image.empty()) {
    auto dir = ctx.paths->image_dir(vm.spec.image);
    auto manifest = image::ReadManifest(dir);
    if (!manifest) {
      return Fail(Code::kFailedPrecondition,
                  fmt::format("image '{}' of vm '{}' cannot be used: {}; rebuild it with "
                              "`hearth image build {}`",
                              vm.spec.image, vm.name, manifest.error().message, vm.spec.image));
    }
    base = manifest->cmdline;
    auto has = [&](std::string_view file) { return manifest->files.count(std::string(file)) > 0; };
    if (m.kernel.empty() && has(files::kKernel)) m.kernel = (dir / files::kKernel).string();
    if (m.initrd.empty() && has(files::kInitrd)) m.initrd = (dir / files::kInitrd).string();
    if (m.rootfs.empty() && has(files::kRootfs)) m.rootfs = (dir / files::kRootfs).string();
  }

  std::optional<hv::qemu::GuestNetwork> network;
  if (ctx.pool && !vm.ip.empty()) {
    auto address = ctx.pool->FromGuest(vm.ip);
    if (!address) {
      return Fail(Code::kFailedPrecondition,
                  fmt::format("vm '{}' has address {} outside the network pool {}: {}", vm.name,
                              vm.ip, ctx.pool->cidr(), address.error().message));
    }
    m.tap = net::TapName(vm.id);
    m.mac = net::GuestMac(*address);
    network = hv::qemu::GuestNetwork{address->guest_cidr(), address->host};
  }
  m.cmdline = hv::qemu::BuildKernelCmdline(base, ctx.tsc_khz, vm.name, network, vm.spec.cmdline);
  return m;
}

}  // namespace hearth::node

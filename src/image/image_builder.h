// Builds guest images from Debian packages. Today one image exists, "default": Debian's cloud
// kernel as an ELF vmlinux and a busybox initramfs that configures eth0 from the kernel command
// line and serves HTTP on port 80 (see guest_init.h for what the guest does).
//
// Layout of a built image (<data-dir>/images/<name>/, see common/paths.h):
//   vmlinux        ELF kernel (PVH entry: QEMU microvm and Firecracker boot it directly)
//   initrd.img     gzip'ed newc cpio: /init, busybox, virtio modules
//   manifest.json  written last; see image_manifest.h
//
// The build happens in <data-dir>/images/.build-<name>-XXXXXX and the result is renamed into
// place (exchanged atomically with an existing image under `force`), so a crash leaves either the
// old image or the new one, never half of one; leftover .build-* directories are garbage.
// Needs apt-get, dpkg-deb, gzip and the kernel's decompressor (lz4) on the host; runs as root
// only because apt-get downloads into root-owned caches are simplest that way.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "image/image_manifest.h"

namespace hearth::image {

struct BuildOptions {
  bool force = false;  // replace an existing image
  std::string kernel_metapackage = "linux-image-cloud-amd64";
  std::string busybox_package = "busybox-static";
};

class ImageBuilder {
 public:
  using Progress = std::function<void(std::string_view)>;
  // `progress` receives one line per long step; by default they go to stderr.
  explicit ImageBuilder(Progress progress = {});

  // Builds image `name` into `target` (a directory that must not exist unless options.force).
  // Errors: kInvalidArgument for an unknown name, kAlreadyExists, kUnavailable when a tool or a
  // package is missing, kInternal when a step fails (the message names the command and its
  // stderr tail).
  Result<ImageManifest> Build(std::string_view name, const std::filesystem::path& target,
                              const BuildOptions& options = {});

 private:
  void Say(std::string_view line) const;
  Progress progress_;
};

}  // namespace hearth::image

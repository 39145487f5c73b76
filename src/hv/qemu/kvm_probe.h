// Whether KVM really runs a guest on this host. /dev/kvm existing is not enough (nested KVM may
// accept the ioctls and then hang a standard guest), so the probe boots the default image under
// KVM with a deadline and trusts KVM only if the guest reports ready. The verdict is cached per
// host boot (Paths::kvm_probe_cache(), keyed by the kernel's boot id) and shared by every hearthd
// on the host. Everything else falls back to TCG with the reason.
#pragma once

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "hv/qemu/qemu_driver.h"

namespace hearth::hv::qemu {

enum class AccelMode { kAuto, kKvm, kTcg };
Result<AccelMode> ParseAccelMode(std::string_view text);

struct KvmProbeOptions {
  AccelMode mode = AccelMode::kAuto;
  std::string binary = "qemu-system-x86_64";
  std::filesystem::path image_dir;  // the default image (vmlinux, initrd.img, manifest.json)
  std::filesystem::path cache;      // the verdict cache file
  int64_t tsc_khz = 0;
  std::chrono::milliseconds deadline = std::chrono::seconds(10);
};

class KvmProbe {
 public:
  explicit KvmProbe(KvmProbeOptions options);
  ~KvmProbe();

  // Starts probing in the background (when the mode is auto and no cached verdict applies).
  void Start();
  // The verdict; blocks until the probe is done.
  AccelChoice Get();
  // The verdict if known, without blocking.
  std::optional<AccelChoice> Peek();

 private:
  AccelChoice Decide();
  // Sets `probed` when a guest was actually launched (only that verdict is cached).
  AccelChoice BootUnderKvm(bool& probed);

  KvmProbeOptions options_;
  std::mutex mu_;
  std::condition_variable done_;
  std::optional<AccelChoice> choice_;
  bool started_ = false;
  std::thread thread_;
};

}  // namespace hearth::hv::qemu

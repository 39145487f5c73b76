// The Firecracker double's minimal guest: vCPU threads that only sleep, the console lines a
// booting guest prints, the power-off on SendCtrlAltDel, and the metrics timer.
#include <fcntl.h>
#include <fmt/format.h>
#include <pthread.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "firecracker_double/vmm.h"
#include "image/guest_init.h"

namespace hearth::fcdouble {
namespace {

// Writes console text where Firecracker's serial goes: serial_out_path if set, else stdout.
void Console(const std::string& serial_path, const std::string& text) {
  if (!serial_path.empty()) {
    int fd = ::open(serial_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
      ssize_t unused = ::write(fd, text.data(), text.size());
      (void)unused;
      ::close(fd);
      return;
    }
  }
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

}  // namespace

void Vmm::StartVcpus() {
  const int count = machine_config_.value("vcpu_count", 1);
  for (int i = 0; i < count; ++i) {
    std::thread t([] {
      for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
    });
    // Firecracker names its vCPU threads "fc_vcpu <index>".
    pthread_setname_np(t.native_handle(), fmt::format("fc_vcpu {}", i).c_str());
    t.detach();
  }
}

std::string Vmm::SerialPath() const {
  if (serial_ && serial_->contains("serial_out_path") &&
      (*serial_)["serial_out_path"].is_string()) {
    return options_.paths.Resolve((*serial_)["serial_out_path"]);
  }
  return "";
}

void Vmm::BootGuest() {
  const std::string serial = SerialPath();
  const int delay = options_.boot_delay_ms;
  const bool boot_timer = options_.boot_timer;
  std::thread([this, serial, delay, boot_timer] {
    std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    Console(serial, "[    0.000000] Linux version 6.1.0 (firecracker double) #1 SMP\n");
    Console(serial, fmt::format("{} (firecracker double)\n", image::kGuestReadyMarker));
    if (boot_timer) {
      std::lock_guard lock(mu_);
      Log(fmt::format("Guest-boot-time = {:>6} us {} ms", delay * 1000, delay));
    }
  }).detach();
}

void Vmm::PowerOff() {
  const std::string serial = SerialPath();
  std::thread([this, serial] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::lock_guard lock(mu_);
    Console(serial, "reboot: Restarting system\n");
    FlushMetricsLocked();
    Log("Vmm is stopping.");
    std::fflush(stdout);
    ::_exit(0);
  }).detach();
}

void Vmm::StartMetricsTimer() {
  if (metrics_timer_) return;
  metrics_timer_ = true;
  const int interval = options_.metrics_interval_ms > 0 ? options_.metrics_interval_ms : 60000;
  std::thread([this, interval] {
    for (;;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(interval));
      std::lock_guard lock(mu_);
      FlushMetricsLocked();
    }
  }).detach();
}

}  // namespace hearth::fcdouble

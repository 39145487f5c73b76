#include "net/wake_listener.h"

#include <fmt/format.h>
#include <linux/if_tun.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "common/ready_threads.h"

namespace hearth::net {

namespace {

// A frame read with a virtio-net header (`header`, little-endian) may carry a partial checksum
// (VIRTIO_NET_HDR_F_NEEDS_CSUM): the field at csum_start + csum_offset holds the pseudo-header
// sum, and the rest is left to the device. Finishes it as the device would; false for a GSO frame,
// which would need segmenting.
bool FinishChecksum(const char* header, char* frame, size_t size) {
  auto u8 = [&](size_t i) { return static_cast<uint8_t>(header[i]); };
  uint8_t flags = u8(0), gso_type = u8(1);
  if (gso_type != 0) return false;
  if (!(flags & 1)) return true;
  size_t start = u8(6) | (size_t{u8(7)} << 8);
  size_t offset = u8(8) | (size_t{u8(9)} << 8);
  if (start + offset + 2 > size) return true;  // malformed: leave it to the guest
  uint32_t sum = 0;
  for (size_t i = start; i + 1 < size; i += 2) {
    sum += (static_cast<uint32_t>(static_cast<uint8_t>(frame[i])) << 8) |
           static_cast<uint8_t>(frame[i + 1]);
  }
  if ((size - start) % 2) sum += static_cast<uint32_t>(static_cast<uint8_t>(frame[size - 1])) << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  uint16_t csum = static_cast<uint16_t>(~sum);
  frame[start + offset] = static_cast<char>(csum >> 8);
  frame[start + offset + 1] = static_cast<char>(csum & 0xff);
  return true;
}

}  // namespace

WakeListener::WakeListener(WakeLimits limits) : limits_(limits) {
  epoll_ = epoll_create1(EPOLL_CLOEXEC);
  stop_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = stop_;
  epoll_ctl(epoll_, EPOLL_CTL_ADD, stop_, &ev);
  thread_ = std::thread([this] { Loop(); });
}

WakeListener::~WakeListener() {
  uint64_t one = 1;
  (void)!write(stop_, &one, sizeof(one));
  thread_.join();
  for (auto& [_, w] : watched_) ::close(w.fd);
  ::close(stop_);
  ::close(epoll_);
}

void WakeListener::SetOnWake(OnWake on_wake) {
  std::lock_guard lock(callback_mu_);  // waits for a callback under way
  on_wake_ = std::move(on_wake);
}

Status WakeListener::Watch(const std::string& vm, int fd, WakeFilter filter) {
  Handoff previous = TakeOver(vm);
  if (previous.fd >= 0) ::close(previous.fd);
  int header = 0;
  if (ioctl(fd, TUNGETVNETHDRSZ, &header) != 0) header = 0;
  // The VMM that used this tap left its offloads on: without this, frames would arrive with
  // partial checksums (those already queued are finished in Drain).
  ioctl(fd, TUNSETOFFLOAD, 0);
  std::lock_guard lock(mu_);
  Watched& w = watched_[vm];
  w.fd = fd;
  w.vnet_header = static_cast<size_t>(header);
  w.filter = std::move(filter);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    int e = errno;
    watched_.erase(vm);
    ::close(fd);
    return Fail(Code::kInternal, fmt::format("watching the tap of vm '{}': {}", vm, strerror(e)));
  }
  return Ok();
}

Handoff WakeListener::TakeOver(const std::string& vm) {
  std::lock_guard lock(mu_);
  auto it = watched_.find(vm);
  if (it == watched_.end()) return {};
  epoll_ctl(epoll_, EPOLL_CTL_DEL, it->second.fd, nullptr);
  // Frames that arrived since the last read are kept too.
  Drain(it->second);
  Handoff h = std::move(it->second.kept);
  h.fd = it->second.fd;
  watched_.erase(it);
  return h;
}

bool WakeListener::Drain(Watched& w) {
  bool first = false;
  std::vector<char> buf(65536 + 64);
  for (;;) {
    ssize_t n = read(w.fd, buf.data(), buf.size());
    if (n <= 0) break;
    if (static_cast<size_t>(n) <= w.vnet_header) continue;
    char* data = buf.data() + w.vnet_header;
    size_t size = static_cast<size_t>(n) - w.vnet_header;
    if (w.vnet_header >= 10 && !FinishChecksum(buf.data(), data, size)) {
      ++w.kept.counters.overflow;  // a GSO frame queued before the offloads went off
      continue;
    }
    std::string_view frame(data, size);
    FrameVerdict v = Classify(frame, w.filter);
    bool awake = w.kept.woken_at.has_value();
    if (v == FrameVerdict::kNoise) {
      ++w.kept.counters.noise;
      continue;
    }
    if (v == FrameVerdict::kFiltered && !awake) {
      ++w.kept.counters.filtered;
      continue;
    }
    // For the guest: kept for it (once awake, whatever its port).
    if (w.kept.frames.size() >= limits_.max_frames || w.bytes + frame.size() > limits_.max_bytes) {
      ++w.kept.counters.overflow;
    } else {
      w.kept.frames.emplace_back(frame);
      w.bytes += frame.size();
      ++w.kept.counters.kept;
    }
    if (!awake) {
      w.kept.woken_at = std::chrono::steady_clock::now();
      first = true;
    }
  }
  return first;
}

void WakeListener::Loop() {
  // Ahead of best-effort work on a busy host (see kWakeNice).
  if (!SetThreadNice(kWakeNice)) {
    spdlog::warn(
        "wake listener: cannot raise its priority ({}); wakes queue behind other work on "
        "a busy host",
        strerror(errno));
  }
  std::vector<epoll_event> events(64);
  for (;;) {
    int n = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      spdlog::error("wake listener: epoll_wait: {}", strerror(errno));
      return;
    }
    std::vector<std::pair<std::string, std::chrono::steady_clock::time_point>> woken;
    {
      std::lock_guard lock(mu_);
      for (int i = 0; i < n; ++i) {
        if (events[i].data.fd == stop_) return;
        for (auto& [vm, w] : watched_) {
          if (w.fd == events[i].data.fd && Drain(w)) woken.emplace_back(vm, *w.kept.woken_at);
        }
      }
    }
    std::lock_guard callback(callback_mu_);
    for (const auto& [vm, at] : woken) {
      if (on_wake_) on_wake_(vm, at);
    }
  }
}

}  // namespace hearth::net

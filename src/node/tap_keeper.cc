#include "node/tap_keeper.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

namespace hearth::node {

TapKeeper::~TapKeeper() {
  for (const auto& [_, fd] : fds_) ::close(fd);
}

int TapKeeper::Hold(const std::string& vm, const std::string& tap, net::Handoff* handoff) {
  if (!waker_ || !network_) return -1;
  if (auto it = fds_.find(vm); it != fds_.end()) return it->second;
  net::Handoff taken = waker_->TakeOver(vm);
  if (taken.fd >= 0) {
    fds_[vm] = taken.fd;
    if (handoff) {
      taken.fd = -1;
      *handoff = std::move(taken);
    }
    return fds_[vm];
  }
  auto fd = network_->OpenTap(tap);
  if (!fd) {
    spdlog::warn("vm '{}': {}", vm, fd.error().message);
    return -1;
  }
  fds_[vm] = *fd;
  return *fd;
}

Status TapKeeper::LendToWaker(const std::string& vm, const std::string& tap,
                              net::WakeFilter filter) {
  int fd = Hold(vm, tap, nullptr);
  if (fd < 0) return Fail(Code::kUnavailable, "its tap cannot be held");
  fds_.erase(vm);  // the waker's now, closed by it
  return waker_->Watch(vm, fd, std::move(filter));
}

void TapKeeper::Release(const std::string& vm) {
  if (waker_) {
    net::Handoff h = waker_->TakeOver(vm);
    if (h.fd >= 0) ::close(h.fd);
  }
  if (auto it = fds_.find(vm); it != fds_.end()) {
    ::close(it->second);
    fds_.erase(it);
  }
}

}  // namespace hearth::node

#include "hv/qemu/agent_reader.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace hearth::hv::qemu {

void AgentReader::Discard(size_t budget) {
  size_t spent = 0;
  while (spent < budget && Read(nullptr) > 0) spent += last_read_;
  line_.clear();
  first_.clear();
  overlong_ = false;
  fragment_ = spent >= budget;
}

int AgentReader::Read(const std::function<void(std::string_view)>& on_line) {
  char buf[4096];
  size_t room = std::min(sizeof(buf), kAgentReadBudget - std::min(kAgentReadBudget, read_));
  ssize_t n = room == 0 ? 0 : ::read(fd_, buf, room);
  last_read_ = n > 0 ? static_cast<size_t>(n) : 0;
  read_ += last_read_;
  for (ssize_t i = 0; i < n; ++i) {
    if (buf[i] == '\n') {
      if (!overlong_ && !fragment_ && on_line) on_line(line_);
      if (first_.empty() && !fragment_ && !line_.empty()) {
        first_ = overlong_ ? line_ + "..." : line_;
      }
      line_.clear();
      overlong_ = fragment_ = false;
    } else if (line_.size() < kAgentLineBytes) {
      line_ += buf[i];
    } else {
      overlong_ = true;
    }
  }
  return n > 0 ? 1 : (n == 0 || errno == EAGAIN || errno == EINTR ? 0 : -1);
}

}  // namespace hearth::hv::qemu

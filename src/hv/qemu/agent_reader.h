// The guest agent's channel as hearthd reads it (the host end of the virtio-serial port
// org.hearth.agent, a FIFO): lines, with a bound on everything, since the guest writes what it
// likes. An agent answers a request with one short line; a guest that floods the channel is read
// no further than kAgentReadBudget bytes, and a line longer than kAgentLineBytes is skipped whole.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace hearth::hv::qemu {

// Bounds on what one reader takes from a guest: in all, and per line.
inline constexpr size_t kAgentReadBudget = 64 << 10;
inline constexpr size_t kAgentLineBytes = 64;

class AgentReader {
 public:
  // Reads `fd` (non-blocking, owned by the caller).
  explicit AgentReader(int fd) : fd_(fd) {}

  // Reads what the channel holds now, without waiting, until it is empty or `budget` more bytes
  // were read; lines so far are forgotten (stale answers of an earlier request). When the budget
  // ends it, the line under way is a fragment and is skipped too.
  void Discard(size_t budget);
  // One read of what is there; calls `on_line` (may be empty) for each complete line that is
  // neither overlong nor a fragment. 0: nothing to read (or no writer yet), -1: an error.
  int Read(const std::function<void(std::string_view)>& on_line);
  bool spent() const { return read_ >= kAgentReadBudget; }
  size_t bytes_read() const { return read_; }
  // The first line read after Discard (cut to kAgentLineBytes, then "..."), for an error
  // message; "" when none came.
  const std::string& first_line() const { return first_; }

 private:
  int fd_;
  size_t read_ = 0, last_read_ = 0;
  std::string line_, first_;
  bool overlong_ = false;  // the line under way is longer than kAgentLineBytes
  bool fragment_ = false;  // the line under way began before what was read
};

}  // namespace hearth::hv::qemu

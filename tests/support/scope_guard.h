// Runs a clean-up action when the scope ends, however it ends (tests that change the host).
#pragma once

#include <functional>
#include <utility>

namespace hearth::testing {

class Guard {
 public:
  explicit Guard(std::function<void()> undo) : undo_(std::move(undo)) {}
  ~Guard() { undo_(); }
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;

 private:
  std::function<void()> undo_;
};

}  // namespace hearth::testing

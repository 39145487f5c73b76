// A hypervisor binary's version, as its drivers record it in snapshots: the first line of
// `BINARY --version`, asked once and kept for the life of the driver.
#pragma once

#include <mutex>
#include <string>

#include "common/result.h"

namespace hearth::hv {

class VersionCache {
 public:
  // The first line, without trailing blanks; unavailable when it cannot be run or prints
  // nothing.
  Result<std::string> Get(const std::string& binary);

 private:
  std::mutex mu_;
  std::string version_;
};

}  // namespace hearth::hv

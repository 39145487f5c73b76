#include "hv/version_cache.h"

#include <fmt/format.h>

#include "image/command.h"

namespace hearth::hv {

Result<std::string> VersionCache::Get(const std::string& binary) {
  std::lock_guard lock(mu_);
  if (version_.empty()) {
    auto out = image::RunCommand({binary, "--version"});
    if (!out) return Fail(out.error());
    std::string first = out->out.substr(0, out->out.find('\n'));
    while (!first.empty() && (first.back() == '\r' || first.back() == ' ')) first.pop_back();
    if (first.empty()) {
      return Fail(Code::kUnavailable, fmt::format("{} --version printed nothing", binary));
    }
    version_ = first;
  }
  return version_;
}

}  // namespace hearth::hv

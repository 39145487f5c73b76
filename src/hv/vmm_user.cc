#include "hv/vmm_user.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace hearth::hv {

namespace fs = std::filesystem;

Result<VmmUser> ChooseVmmUser(const VmmUserRange& range, const std::vector<gid_t>& taken,
                              std::optional<gid_t> current) {
  auto user = [&](gid_t id) { return VmmUser{id, id, range.base}; };
  if (current && range.Contains(*current) &&
      std::count(taken.begin(), taken.end(), *current) == 0) {
    return user(*current);
  }
  std::vector<gid_t> used;
  for (gid_t g : taken) {
    if (range.Contains(g)) used.push_back(g);
  }
  std::sort(used.begin(), used.end());
  gid_t next = range.base + 1;
  for (gid_t g : used) {
    if (g > next) break;
    if (g == next) ++next;
  }
  if (!range.Contains(next)) {
    return Fail(Code::kResourceExhausted,
                fmt::format("all {} VMM users {}..{} are taken: delete VMs or run another hearthd "
                            "with another --vmm-id-base",
                            range.count, range.base + 1, range.base + range.count));
  }
  return user(next);
}

Result<VmmUser> AssignVmmUser(const VmmUserRange& range, const fs::path& vms_dir,
                              const fs::path& vm_dir) {
  std::vector<gid_t> taken;
  std::optional<gid_t> current;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(vms_dir, ec)) {
    struct stat st {};
    if (::stat(entry.path().c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    if (entry.path().filename() == vm_dir.filename()) {
      current = st.st_gid;
    } else {
      taken.push_back(st.st_gid);
    }
  }
  auto user = ChooseVmmUser(range, taken, current);
  if (!user) return user;
  if (::chown(vm_dir.c_str(), 0, user->gid) != 0 || ::chmod(vm_dir.c_str(), 0710) != 0) {
    return Fail(Code::kInternal, fmt::format("giving {} to gid {}: {}", vm_dir.string(), user->gid,
                                             strerror(errno)));
  }
  return user;
}

}  // namespace hearth::hv

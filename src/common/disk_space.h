// Free space on a filesystem, and the error hearth answers with when one is full:
// resource_exhausted, HTTP 507 (where other resource_exhausted errors, limits, are 429), naming the
// path, how much is free and what to do. A disk-full error is recognised by its code and the
// phrase DiskFullError puts in its message, which context added on the way up keeps.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "common/result.h"

namespace hearth {

struct DiskSpace {
  int64_t free_bytes = 0;  // what hearthd (root) may still write: statvfs f_bfree
  int64_t total_bytes = 0;
};

// The space of the filesystem holding `path` (statvfs). unavailable if it cannot be read.
Result<DiskSpace> ReadDiskSpace(const std::filesystem::path& path);

// True for the errno values of a full filesystem: ENOSPC and EDQUOT.
bool IsDiskFullErrno(int err);

// "1.5 MiB", "512 B": sizes in messages.
std::string FormatBytes(int64_t bytes);

// resource_exhausted, HTTP 507: "<what>: no space left on device for <path> (<free> free of
// <total>); delete VMs (hearth vm rm) or free space on that filesystem".
Error DiskFullError(std::string_view what, const std::filesystem::path& path);
// True for an error made by DiskFullError (and wrapped since).
bool IsDiskFull(const Error& error);
// The HTTP status `error` is answered with: 507 for a full disk, else its code's (HttpStatus).
int HttpStatusOf(const Error& error);

}  // namespace hearth

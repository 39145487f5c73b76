// Durable file operations: what a crash at any moment must not tear. Each call either completes
// (and is on disk when it returns) or leaves the previous content in place.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "common/result.h"

namespace hearth {

// The SHA-256 of a file's content, lower-case hex.
Result<std::string> Sha256File(const std::filesystem::path& path);

// fsync()s a file or directory.
Status FsyncPath(const std::filesystem::path& path);

// Writes `content` to `path` through a temporary file in the same directory: written, fsynced,
// renamed over `path`, directory fsynced. Readers see the old or the new content, never a part.
Status WriteFileDurably(const std::filesystem::path& path, std::string_view content);
// The same without the fsyncs: atomic for readers and across a crash of this process, not of the
// host (call FsyncPath on the file and its directory later for that).
Status WriteFileAtomically(const std::filesystem::path& path, std::string_view content);

// Puts directory `from` in the place of `to` in one step (`to` need not exist); what was at `to`
// is left at `from`. Both must be on one filesystem. With `sync`, the parent directory is fsynced.
Status SwapIntoPlace(const std::filesystem::path& from, const std::filesystem::path& to,
                     bool sync = true);

}  // namespace hearth

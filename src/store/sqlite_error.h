// Errors of the embedded SQLite database, shared by the stores on it (state, metering).
#pragma once

#include <filesystem>
#include <string>

#include "common/result.h"

struct sqlite3;

namespace hearth::store {

// True when the last call on `db` failed because the filesystem is full: SQLITE_FULL, or an I/O
// error (SQLITE_IOERR, SQLITE_CANTOPEN) whose errno is ENOSPC or EDQUOT. SQLite reports a
// shared-memory index it cannot size on a full disk as "disk I/O error".
bool IsSqliteDiskFull(sqlite3* db);

// The error for the last failed call on `db` at `path`: a disk-full resource_exhausted (HTTP 507,
// common/disk_space.h) when IsSqliteDiskFull, else `otherwise`. The message is "`what`: <sqlite's
// message>" with, for a full disk, the path and the free space.
Error SqliteError(sqlite3* db, const std::filesystem::path& path, const std::string& what,
                  Code otherwise);

}  // namespace hearth::store

#include "store/sqlite_error.h"

#include <fmt/format.h>
#include <sqlite3.h>

#include "common/disk_space.h"

namespace hearth::store {

bool IsSqliteDiskFull(sqlite3* db) {
  if (!db) return false;
  int rc = sqlite3_errcode(db) & 0xff;
  if (rc == SQLITE_FULL) return true;
  // The errno is only the current error's when the current error is an OS one.
  return (rc == SQLITE_IOERR || rc == SQLITE_CANTOPEN) && IsDiskFullErrno(sqlite3_system_errno(db));
}

Error SqliteError(sqlite3* db, const std::filesystem::path& path, const std::string& what,
                  Code otherwise) {
  std::string sqlite_message = db ? sqlite3_errmsg(db) : "out of memory";
  if (IsSqliteDiskFull(db)) {
    return DiskFullError(fmt::format("{}: {}", what, sqlite_message), path);
  }
  return Error{otherwise, fmt::format("{}: {}", what, sqlite_message)};
}

}  // namespace hearth::store

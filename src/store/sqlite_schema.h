// The schema of hearth's embedded SQLite database (state.db): the migrations that bring a database
// of any earlier version to the current one. One database holds the node's state (vms, events,
// settings; store/sqlite_state_store.h) and its metering (usage_*; metering/sqlite_usage_store.h).
#pragma once

#include <span>

namespace hearth::store {

// Migration i brings the schema to version i + 1 (PRAGMA user_version). Append only: a released
// migration is never edited.
std::span<const char* const> SqliteMigrations();

// The first schema version that has the metering tables.
inline constexpr int kUsageSchemaVersion = 2;

}  // namespace hearth::store

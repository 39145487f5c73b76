#include "store/sqlite_schema.h"

namespace hearth::store {
namespace {

constexpr const char* kMigrations[] = {
    // 1: the node's state.
    R"sql(
    CREATE TABLE vms (
      id           TEXT PRIMARY KEY,
      name         TEXT NOT NULL UNIQUE,
      spec         TEXT NOT NULL,              -- JSON, see SpecToJson
      state        TEXT NOT NULL,
      state_reason TEXT NOT NULL DEFAULT '',
      version      INTEGER NOT NULL,
      created_ms   INTEGER NOT NULL,           -- Unix time in milliseconds
      updated_ms   INTEGER NOT NULL,
      runtime      TEXT NOT NULL DEFAULT '{}'  -- JSON: pid, ip, backend, snapshot
    );
    CREATE TABLE events (
      seq     INTEGER PRIMARY KEY AUTOINCREMENT,
      vm_id   TEXT NOT NULL,
      vm_name TEXT NOT NULL,
      time_ms INTEGER NOT NULL,
      type    TEXT NOT NULL,
      message TEXT NOT NULL
    );
    CREATE INDEX events_by_vm ON events (vm_id, seq);
    CREATE TABLE settings (
      key   TEXT PRIMARY KEY,
      value TEXT NOT NULL
    );
    )sql",
    // 2: metering. Events carry the facts of the record written with them (the event stream is
    // what metering reads); samples and metering events with their retention.
    R"sql(
    ALTER TABLE events ADD COLUMN state TEXT NOT NULL DEFAULT '';  -- '', 'deleted' or a VM state
    ALTER TABLE events ADD COLUMN vcpus INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE events ADD COLUMN memory_mib INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE events ADD COLUMN snapshot_bytes INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE events ADD COLUMN measures TEXT NOT NULL DEFAULT '';  -- JSON object or ''
    -- One row per VM and sample interval (start_ms, end_ms]; kept raw for a day, then rolled up.
    CREATE TABLE usage_samples (
      seq             INTEGER PRIMARY KEY AUTOINCREMENT,
      vm_id           TEXT NOT NULL,
      vm_name         TEXT NOT NULL,
      start_ms        INTEGER NOT NULL,
      end_ms          INTEGER NOT NULL,
      state           TEXT NOT NULL,  -- at end_ms
      running_ms      INTEGER NOT NULL,
      suspended_ms    INTEGER NOT NULL,
      stopped_ms      INTEGER NOT NULL,
      transition_ms   INTEGER NOT NULL,
      vcpus           INTEGER NOT NULL,
      memory_mib      INTEGER NOT NULL,
      rss_bytes       INTEGER NOT NULL,
      snapshot_bytes  INTEGER NOT NULL,
      cpu_ms          INTEGER NOT NULL,
      vcpu_ms         INTEGER NOT NULL,
      ram_mib_ms      INTEGER NOT NULL,  -- guest MiB x ms running
      snapshot_kib_ms INTEGER NOT NULL,  -- saved-state KiB x ms suspended
      net_rx_bytes    INTEGER NOT NULL,  -- received by the guest
      net_tx_bytes    INTEGER NOT NULL,  -- sent by the guest
      net_rx_packets  INTEGER NOT NULL,
      net_tx_packets  INTEGER NOT NULL,
      disk_read_bytes  INTEGER NOT NULL,
      disk_write_bytes INTEGER NOT NULL,
      disk_read_ops    INTEGER NOT NULL,
      disk_write_ops   INTEGER NOT NULL,
      UNIQUE (vm_id, end_ms)
    );
    CREATE INDEX usage_samples_by_end ON usage_samples (end_ms);
    -- Samples older than a day, summed per VM and hour (hour_ms: the hour their end fell in).
    CREATE TABLE usage_hourly (
      vm_id           TEXT NOT NULL,
      hour_ms         INTEGER NOT NULL,
      vm_name         TEXT NOT NULL,
      samples         INTEGER NOT NULL,
      running_ms      INTEGER NOT NULL,
      suspended_ms    INTEGER NOT NULL,
      stopped_ms      INTEGER NOT NULL,
      transition_ms   INTEGER NOT NULL,
      max_rss_bytes   INTEGER NOT NULL,
      cpu_ms          INTEGER NOT NULL,
      vcpu_ms         INTEGER NOT NULL,
      ram_mib_ms      INTEGER NOT NULL,
      snapshot_kib_ms INTEGER NOT NULL,
      net_rx_bytes    INTEGER NOT NULL,
      net_tx_bytes    INTEGER NOT NULL,
      net_rx_packets  INTEGER NOT NULL,
      net_tx_packets  INTEGER NOT NULL,
      disk_read_bytes  INTEGER NOT NULL,
      disk_write_bytes INTEGER NOT NULL,
      disk_read_ops    INTEGER NOT NULL,
      disk_write_ops   INTEGER NOT NULL,
      PRIMARY KEY (vm_id, hour_ms)
    );
    CREATE INDEX usage_hourly_by_hour ON usage_hourly (hour_ms);
    -- Metering's view of the events (seq: the event's), with what was derived from the stream.
    CREATE TABLE usage_events (
      seq            INTEGER PRIMARY KEY,
      vm_id          TEXT NOT NULL,
      vm_name        TEXT NOT NULL,
      time_ms        INTEGER NOT NULL,
      type           TEXT NOT NULL,
      state          TEXT NOT NULL,
      duration_ms    INTEGER NOT NULL,  -- since the transition began; 0 if none
      latency_ms     REAL NOT NULL,     -- wakes and resumes: measured latency, else duration
      memory_mib     INTEGER NOT NULL,
      snapshot_bytes INTEGER NOT NULL,
      reason         TEXT NOT NULL,
      measures       TEXT NOT NULL      -- JSON object
    );
    CREATE INDEX usage_events_by_time ON usage_events (time_ms);
    -- Each VM's open sample: what metering needs to go on after a restart (JSON).
    CREATE TABLE usage_trackers (
      vm_id   TEXT PRIMARY KEY,
      tracker TEXT NOT NULL
    );
    -- Where metering is: key 'events', the last event seq accounted for.
    CREATE TABLE usage_cursor (
      key   TEXT PRIMARY KEY,
      value INTEGER NOT NULL
    );
    )sql",
    // 3: the spec's generation, apart from the record's version: it changes only when the spec
    // does (an edit), so that a client's If-Match survives the VM starting and stopping.
    R"sql(
    ALTER TABLE vms ADD COLUMN generation INTEGER NOT NULL DEFAULT 1;
    )sql",
};

}  // namespace

std::span<const char* const> SqliteMigrations() { return kMigrations; }

}  // namespace hearth::store

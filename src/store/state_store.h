// StateStore: the node's durable state. Every mutation is one transaction that is durable when
// the call returns (a crash of hearthd or of the host right after loses nothing acknowledged).
// Implementations: SqliteStateStore (embedded, default); PostgreSQL comes later under the same
// contract tests (tests/unit/state_store_contract_test.cc). Thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "model/vm.h"

namespace hearth::store {

// An event as the store keeps it, with the facts of the VM record it was written with: what
// metering needs to account for the time after it (see metering/accountant.h).
struct RecordedEvent {
  Event event;
  // The VM's state after the event; nullopt for an event that changed no record (AppendEvent)
  // and for a deletion.
  std::optional<VmState> state;
  bool deleted = false;  // written by DeleteVm: the VM is gone
  int vcpus = 0;         // the record's, as written with the event (0 without a record)
  MiB memory;
  int64_t snapshot_bytes = 0;  // the record's saved state, 0 when it has none
  bool operator==(const RecordedEvent&) const = default;
};

class StateStore {
 public:
  virtual ~StateStore() = default;

  virtual Result<std::vector<VmRecord>> ListVms() = 0;
  virtual Result<std::optional<VmRecord>> GetVm(std::string_view name) = 0;

  // Inserts `vm` and `event` atomically. already_exists when the name or id is taken.
  virtual Status CreateVm(const VmRecord& vm, const Event& event) = 0;
  // Replaces the VM with vm.name if its stored version is `expected_version`, and appends
  // `event` in the same transaction. The caller sets vm.version (normally expected + 1).
  // not_found if absent; failed_precondition if the stored version differs (a stale edit).
  virtual Status UpdateVm(const VmRecord& vm, int64_t expected_version, const Event& event) = 0;
  // Deletes the VM if its version is `expected_version`; its events are kept.
  virtual Status DeleteVm(std::string_view name, int64_t expected_version, const Event& event) = 0;

  // Appends an event about a VM whose record does not change with it (a timer that fired, or
  // could not act).
  virtual Status AppendEvent(const Event& event) = 0;

  // The VM's events (by VM id), oldest first, at most `limit` of the newest.
  virtual Result<std::vector<Event>> ListEvents(std::string_view vm_id, int limit) = 0;

  // The event stream of every VM: the events with a seq above `after`, oldest first, at most
  // `limit`. Seqs increase in commit order, so a reader that remembers the last seq it saw
  // misses nothing and sees nothing twice.
  virtual Result<std::vector<RecordedEvent>> ListEventsAfter(int64_t after, int limit) = 0;
  // The highest seq given to an event so far; 0 before the first.
  virtual Result<int64_t> LastEventSeq() = 0;

  // Small named values that must survive restarts (e.g. the admin token's hash).
  virtual Result<std::optional<std::string>> GetSetting(std::string_view key) = 0;
  virtual Status PutSetting(std::string_view key, std::string_view value) = 0;
};

}  // namespace hearth::store

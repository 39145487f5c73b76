// Stateful fakes of the I/O boundaries, for unit tests.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <string>

#include "common/clock.h"
#include "model/host.h"
#include "store/state_store.h"

namespace hearth::testing {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(Timestamp now = Timestamp{std::chrono::hours(24 * 365 * 56)}) : now_(now) {}
  Timestamp Now() const override { return now_.load(); }
  void Advance(Duration d) { now_.store(now_.load() + d); }
  void Set(Timestamp t) { now_.store(t); }

 private:
  std::atomic<Timestamp> now_;  // read by node threads (timers) while a test moves it
};

// Files that exist only in the test. Paths not added are missing.
class FakeFileProbe final : public FileProbe {
 public:
  FileFacts Probe(const std::string& path) const override;

  // An ELF vmlinux.
  void AddKernel(const std::string& path);
  // A bzImage ("HdrS" at 0x202).
  void AddBzImage(const std::string& path);
  void AddFile(const std::string& path, std::string head = "data", bool readable = true);
  void AddBlockDevice(const std::string& path);
  void AddDirectory(const std::string& path);
  // Makes `alias` the same file (device and inode) as `target`, like a hard link.
  void AddLink(const std::string& alias, const std::string& target);
  // Makes `link` a symbolic link to `target`: the same file, whose canonical path is `target`.
  void AddSymlink(const std::string& link, const std::string& target);

 private:
  void Add(const std::string& path, FileFacts facts);
  std::map<std::string, FileFacts> files_;
  uint64_t next_inode_ = 100;
};

// An in-memory StateStore with the same contract as the real ones
// (tests/unit/state_store_contract_test.cc runs against it too).
class FakeStateStore final : public store::StateStore {
 public:
  Result<std::vector<VmRecord>> ListVms() override;
  Result<std::optional<VmRecord>> GetVm(std::string_view name) override;
  Status CreateVm(const VmRecord& vm, const Event& event) override;
  Status UpdateVm(const VmRecord& vm, int64_t expected_version, const Event& event) override;
  Status DeleteVm(std::string_view name, int64_t expected_version, const Event& event) override;
  Status AppendEvent(const Event& event) override;
  Result<std::vector<Event>> ListEvents(std::string_view vm_id, int limit) override;
  Result<std::vector<store::RecordedEvent>> ListEventsAfter(int64_t after, int limit) override;
  Result<int64_t> LastEventSeq() override;
  Result<std::optional<std::string>> GetSetting(std::string_view key) override;
  Status PutSetting(std::string_view key, std::string_view value) override;

  // Makes every following mutation fail with `error` (e.g. a full disk) until cleared.
  void FailWrites(std::optional<Error> error) { fail_writes_ = std::move(error); }
  int writes() const { return writes_; }

 private:
  Status CheckWrite();
  void Record(const Event& event, const VmRecord* vm, bool deleted);
  std::mutex mu_;
  std::map<std::string, VmRecord, std::less<>> vms_;
  std::vector<store::RecordedEvent> events_;
  std::map<std::string, std::string, std::less<>> settings_;
  std::optional<Error> fail_writes_;
  int writes_ = 0;
  int64_t next_seq_ = 1;
};

// A host with 8 CPUs and 16 GiB.
inline HostInfo TestHost() { return HostInfo{8, MiB{16384}}; }

}  // namespace hearth::testing

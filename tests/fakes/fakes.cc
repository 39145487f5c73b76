#include "fakes/fakes.h"

#include <fmt/format.h>

namespace hearth::testing {

FileFacts FakeFileProbe::Probe(const std::string& path) const {
  auto it = files_.find(path);
  if (it == files_.end()) {
    FileFacts missing;
    missing.error = "No such file or directory";
    return missing;
  }
  return it->second;
}

void FakeFileProbe::Add(const std::string& path, FileFacts facts) {
  facts.device = 1;
  facts.inode = next_inode_++;
  files_[path] = std::move(facts);
}

void FakeFileProbe::AddKernel(const std::string& path) {
  AddFile(path, std::string("\x7f"
                            "ELF\x02\x01\x01",
                            7));
}

void FakeFileProbe::AddBzImage(const std::string& path) {
  std::string head(0x210, '\0');
  head.replace(0x202, 4, "HdrS");
  AddFile(path, head);
}

void FakeFileProbe::AddFile(const std::string& path, std::string head, bool readable) {
  FileFacts f;
  f.kind = FileKind::kRegular;
  f.readable = readable;
  f.head = std::move(head);
  if (!readable) f.error = "Permission denied";
  Add(path, std::move(f));
}

void FakeFileProbe::AddBlockDevice(const std::string& path) {
  FileFacts f;
  f.kind = FileKind::kBlockDevice;
  f.readable = true;
  Add(path, std::move(f));
}

void FakeFileProbe::AddDirectory(const std::string& path) {
  FileFacts f;
  f.kind = FileKind::kDirectory;
  f.readable = true;
  Add(path, std::move(f));
}

void FakeFileProbe::AddLink(const std::string& alias, const std::string& target) {
  files_[alias] = files_.at(target);
}

void FakeFileProbe::AddSymlink(const std::string& link, const std::string& target) {
  FileFacts facts = files_.at(target);
  facts.canonical = target;
  files_[link] = facts;
}

Status FakeStateStore::CheckWrite() {
  if (fail_writes_) return Fail(*fail_writes_);
  ++writes_;
  return Ok();
}

Result<std::vector<VmRecord>> FakeStateStore::ListVms() {
  std::lock_guard lock(mu_);
  std::vector<VmRecord> out;
  for (const auto& [_, vm] : vms_) out.push_back(vm);
  return out;
}

Result<std::optional<VmRecord>> FakeStateStore::GetVm(std::string_view name) {
  std::lock_guard lock(mu_);
  auto it = vms_.find(name);
  if (it == vms_.end()) return std::optional<VmRecord>();
  return std::optional<VmRecord>(it->second);
}

Status FakeStateStore::CreateVm(const VmRecord& vm, const Event& event) {
  std::lock_guard lock(mu_);
  if (auto s = CheckWrite(); !s) return s;
  if (vms_.count(vm.name)) {
    return Fail(Code::kAlreadyExists, fmt::format("vm '{}' already exists", vm.name), "name");
  }
  for (const auto& [_, other] : vms_) {
    if (other.id == vm.id) {
      return Fail(Code::kAlreadyExists, fmt::format("vm id '{}' already exists", vm.id));
    }
  }
  vms_[vm.name] = vm;
  Record(event, &vm, false);
  return Ok();
}

Status FakeStateStore::UpdateVm(const VmRecord& vm, int64_t expected_version, const Event& event) {
  std::lock_guard lock(mu_);
  if (auto s = CheckWrite(); !s) return s;
  auto it = vms_.find(vm.name);
  if (it == vms_.end())
    return Fail(Code::kNotFound, fmt::format("vm '{}' does not exist", vm.name));
  if (it->second.version != expected_version) {
    return Fail(Code::kFailedPrecondition,
                fmt::format("vm '{}' is at version {}, not {}", vm.name, it->second.version,
                            expected_version),
                "version");
  }
  it->second = vm;
  Record(event, &vm, false);
  return Ok();
}

Status FakeStateStore::DeleteVm(std::string_view name, int64_t expected_version,
                                const Event& event) {
  std::lock_guard lock(mu_);
  if (auto s = CheckWrite(); !s) return s;
  auto it = vms_.find(name);
  if (it == vms_.end()) return Fail(Code::kNotFound, fmt::format("vm '{}' does not exist", name));
  if (it->second.version != expected_version) {
    return Fail(
        Code::kFailedPrecondition,
        fmt::format("vm '{}' is at version {}, not {}", name, it->second.version, expected_version),
        "version");
  }
  vms_.erase(it);
  Record(event, nullptr, true);
  return Ok();
}

Status FakeStateStore::AppendEvent(const Event& event) {
  std::lock_guard lock(mu_);
  if (auto s = CheckWrite(); !s) return s;
  Record(event, nullptr, false);
  return Ok();
}

void FakeStateStore::Record(const Event& event, const VmRecord* vm, bool deleted) {
  store::RecordedEvent r;
  r.event = event;
  r.event.seq = next_seq_++;
  r.deleted = deleted;
  if (vm) {
    r.state = vm->state;
    r.vcpus = vm->spec.vcpus;
    r.memory = vm->spec.memory;
    r.snapshot_bytes = vm->snapshot ? vm->snapshot->bytes : 0;
  }
  events_.push_back(std::move(r));
}

Result<std::vector<Event>> FakeStateStore::ListEvents(std::string_view vm_id, int limit) {
  std::lock_guard lock(mu_);
  std::vector<Event> out;
  for (const auto& e : events_) {
    if (e.event.vm_id == vm_id) out.push_back(e.event);
  }
  if (static_cast<int>(out.size()) > limit) out.erase(out.begin(), out.end() - limit);
  return out;
}

Result<std::vector<store::RecordedEvent>> FakeStateStore::ListEventsAfter(int64_t after,
                                                                          int limit) {
  std::lock_guard lock(mu_);
  std::vector<store::RecordedEvent> out;
  for (const auto& e : events_) {
    if (e.event.seq > after && static_cast<int>(out.size()) < limit) out.push_back(e);
  }
  return out;
}

Result<int64_t> FakeStateStore::LastEventSeq() {
  std::lock_guard lock(mu_);
  return next_seq_ - 1;
}

Result<std::optional<std::string>> FakeStateStore::GetSetting(std::string_view key) {
  std::lock_guard lock(mu_);
  auto it = settings_.find(key);
  if (it == settings_.end()) return std::optional<std::string>();
  return std::optional<std::string>(it->second);
}

Status FakeStateStore::PutSetting(std::string_view key, std::string_view value) {
  std::lock_guard lock(mu_);
  if (auto s = CheckWrite(); !s) return s;
  settings_[std::string(key)] = std::string(value);
  return Ok();
}

}  // namespace hearth::testing

#include "node/node.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <random>

#include "hv/console_index.h"
#include "hv/console_log.h"

namespace hearth::node {
namespace {

std::string NewVmId() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard lock(mu);
  return fmt::format("vm-{:016x}", rng());
}

std::string DescribeChange(const VmSpec& before, const VmSpec& after,
                           const std::vector<std::string>& fields) {
  nlohmann::json a = SpecToJson(before), b = SpecToJson(after);
  std::string out;
  for (const auto& f : fields) {
    if (!out.empty()) out += ", ";
    out += fmt::format("{} {} -> {}", f, a[f].dump(), b[f].dump());
  }
  return out;
}

}  // namespace

Status CheckAdmission(const std::vector<const VmRecord*>& vms, const VmRecord& candidate,
                      MiB host_memory, double ratio) {
  int64_t held = 0;
  for (const VmRecord* vm : vms) {
    if (vm->id != candidate.id && HoldsMemory(vm->state)) held += vm->spec.memory.value;
  }
  auto limit = static_cast<int64_t>(ratio * static_cast<double>(host_memory.value));
  int64_t need = candidate.spec.memory.value;
  if (held + need > limit) {
    return Fail(Code::kResourceExhausted,
                fmt::format("vm '{}' needs {} MiB but running VMs already hold {} MiB of the "
                            "{} MiB admission limit ({} x {} MiB host RAM); stop or suspend "
                            "another VM, or raise --memory-ratio",
                            candidate.name, need, held, limit, ratio, host_memory.value),
                "memory_mib");
  }
  return Ok();
}

Node::Node(store::StateStore& store, HostInfo host, const FileProbe& files, const Clock& clock,
           Paths paths, NodeOptions options, Machinery machinery)
    : store_(store),
      host_(host),
      files_(files),
      clock_(clock),
      paths_(std::move(paths)),
      options_(options),
      machinery_(std::move(machinery)),
      system_(machinery_.system ? *machinery_.system : LinuxHost()) {
  if (machinery_.driver) {
    supervisor_ = std::make_unique<hv::Supervisor>(
        system_,
        [this](const hv::ProcessId& p, const hv::ExitStatus& s) {
          machinery_.driver->Exited(p);
          OnVmmExit(p, s);
        },
        [this] {
          IndexConsoles();
          if (++ticks_ % 5 == 0) CapLogs();
        },
        std::chrono::seconds(1));
  }
}

Node::~Node() {
  Shutdown();
  supervisor_.reset();
}

Status Node::Load() {
  std::lock_guard lock(mu_);
  auto vms = store_.ListVms();
  if (!vms) return Fail(vms.error().Wrap("loading vms"));
  vms_.clear();
  for (auto& vm : *vms) {
    std::string name = vm.name;
    vms_.emplace(std::move(name), std::move(vm));
  }
  spdlog::info("loaded {} vms from the store", vms_.size());
  return Ok();
}

const VmRecord* Node::Find(std::string_view name) const {
  auto it = vms_.find(name);
  return it == vms_.end() ? nullptr : &it->second;
}

Result<const VmRecord*> Node::FindOrFail(std::string_view name) const {
  if (const VmRecord* vm = Find(name)) return vm;
  return Fail(Code::kNotFound, fmt::format("vm '{}' does not exist; see `hearth vm ls`", name));
}

ValidationContext Node::MakeContext(std::string_view exclude) const {
  ValidationContext ctx;
  ctx.host = host_;
  ctx.files = &files_;
  ctx.paths = &paths_;
  ctx.now = clock_.Now();
  ctx.allowed_paths = options_.allowed_paths;
  ctx.ports = machinery_.ports;
  ctx.others.reserve(vms_.size() + writing_.size());
  for (const auto& [name, vm] : vms_) {
    if (name != exclude) ctx.others.push_back(&vm);
  }
  // A write under way counts too, so that two concurrent requests cannot both take a port.
  for (const auto& [name, vm] : writing_) {
    if (name != exclude) ctx.others.push_back(&vm);
  }
  return ctx;
}

Event Node::MakeEvent(const VmRecord& vm, std::string type, std::string message) const {
  return Event{0, vm.id, vm.name, clock_.Now(), std::move(type), std::move(message)};
}

Status Node::Admit(const VmRecord& vm) const {
  std::vector<const VmRecord*> all;
  all.reserve(vms_.size());
  for (const auto& [_, other] : vms_) all.push_back(&other);
  return CheckAdmission(all, vm, host_.memory, options_.memory_ratio);
}

Status Node::NeedDriver(const VmRecord& vm, std::string_view action) const {
  return Fail(Code::kFailedPrecondition,
              fmt::format("cannot {} vm '{}': no hypervisor driver is available on this node",
                          action, vm.name));
}

Status Node::Write(std::unique_lock<std::mutex>& lock, const VmRecord& next,
                   const std::function<Status()>& write) {
  writing_.emplace(next.name, next);
  lock.unlock();
  Status s = write();
  lock.lock();
  EndWrite(next.name);
  return s;
}

void Node::EndWrite(const std::string& name) {
  writing_.erase(writing_.find(name));
  idle_.notify_all();
  Touch();
  timers_dirty_ = true;  // the timers may have changed with the record
  timers_wake_.notify_all();
}

void Node::Touch() {
  ++changes_;
  watchers_.notify_all();
}

uint64_t Node::Changes() const {
  std::lock_guard lock(mu_);
  return changes_;
}

bool Node::WaitForChange(uint64_t seen, std::chrono::steady_clock::time_point deadline) const {
  std::unique_lock lock(mu_);
  return watchers_.wait_until(lock, deadline, [&] { return changes_ != seen; });
}

bool Node::Busy(std::string_view name) const {
  std::lock_guard lock(mu_);
  return OwnedByJob(name);
}

bool Node::TimersRunning() const {
  std::lock_guard lock(timer_thread_mu_);
  return timer_thread_.joinable();
}

void Node::WaitForWrites(std::unique_lock<std::mutex>& lock, std::string_view name) {
  idle_.wait(lock, [&] { return writing_.find(name) == writing_.end(); });
}

Result<VmRecord> Node::Create(const CreateRequest& request) {
  std::unique_lock lock(mu_);
  if (auto s = ValidateName(request.name); !s) return Fail(s.error());
  WaitForWrites(lock, request.name);
  if (Find(request.name)) {
    return Fail(Code::kAlreadyExists,
                fmt::format("name: vm '{}' already exists; pick another name", request.name),
                "name");
  }
  if (auto s = ValidateSpec(request.spec, MakeContext(request.name)); !s) return Fail(s.error());
  VmRecord vm;
  vm.name = request.name;
  vm.id = NewVmId();
  vm.spec = request.spec;
  vm.state = VmState::kCreated;
  vm.version = 1;
  vm.created_at = vm.updated_at = clock_.Now();
  Event event = MakeEvent(vm, "created", "");
  if (auto s = Write(lock, vm, [&] { return store_.CreateVm(vm, event); }); !s) {
    return Fail(s.error().Wrap(fmt::format("creating vm '{}'", vm.name)));
  }
  spdlog::info("vm '{}' created ({})", vm.name, vm.id);
  vms_.emplace(vm.name, vm);
  return vm;
}

Result<VmRecord> Node::Get(std::string_view name) const {
  std::lock_guard lock(mu_);
  auto vm = FindOrFail(name);
  if (!vm) return Fail(vm.error());
  return **vm;
}

Result<VmRecord> Node::WaitSettled(std::string_view name, std::chrono::milliseconds limit) {
  std::unique_lock lock(mu_);
  system_.WaitUntil(changed_, lock, system_.SteadyNow() + limit, [&] {
    const VmRecord* vm = Find(name);
    return waiters_released_ || shutting_down_ || !vm || !IsTransitional(vm->state);
  });
  auto vm = FindOrFail(name);
  if (!vm) return Fail(vm.error());
  return **vm;
}

void Node::ReleaseWaiters() {
  std::lock_guard lock(mu_);
  waiters_released_ = true;
  changed_.notify_all();
}

std::vector<VmRecord> Node::List() const {
  std::lock_guard lock(mu_);
  std::vector<VmRecord> out;
  out.reserve(vms_.size());
  for (const auto& [_, vm] : vms_) out.push_back(vm);
  return out;
}

Result<VmRecord> Node::Edit(std::string_view name, const EditRequest& request) {
  std::unique_lock lock(mu_);
  WaitForWrites(lock, name);
  auto found = FindOrFail(name);
  if (!found) return Fail(found.error());
  const VmRecord& current = **found;
  VmSpec next = request.replace ? VmSpec{} : current.spec;
  if (auto s = ApplySpecJson(request.fields, next); !s) return Fail(s.error());
  std::vector<std::string> changed = ChangedFields(current.spec, next);
  // An edit that changes nothing loses nobody's update, whatever generation it was based on.
  if (changed.empty()) return current;
  if (request.generation && *request.generation != current.generation) {
    return Fail(Code::kFailedPrecondition,
                fmt::format("generation: the edit is based on generation {} but vm '{}' is at "
                            "generation {} (its spec was edited since); read it again and retry",
                            *request.generation, current.name, current.generation),
                "generation");
  }
  if (auto s = CheckEditAllowed(current, next, request.discard_state); !s) return Fail(s.error());
  if (auto s = ValidateSpec(next, MakeContext(name), &current.spec); !s) return Fail(s.error());

  VmRecord updated = current;
  updated.spec = next;
  updated.version = current.version + 1;
  updated.generation = current.generation + 1;
  updated.updated_at = clock_.Now();
  std::string message = DescribeChange(current.spec, next, changed);
  VmEvent event_kind = request.discard_state && Allows(current.state, VmEvent::kDiscardState)
                           ? VmEvent::kDiscardState
                           : VmEvent::kEdit;
  auto step = Next(current, event_kind);
  if (!step) return Fail(step.error());
  updated.state = step->state;
  if (event_kind == VmEvent::kDiscardState) {
    updated.snapshot.reset();
    message += "; saved state discarded";
  }
  Event event = MakeEvent(updated, "edited", message);
  int64_t base = current.version;
  if (auto s = Write(lock, updated, [&] { return store_.UpdateVm(updated, base, event); }); !s) {
    return Fail(s.error().Wrap(fmt::format("editing vm '{}'", updated.name)));
  }
  spdlog::info("vm '{}' edited: {}", updated.name, message);
  VmRecord& slot = vms_.find(name)->second;
  bool publish_changed = slot.spec.publish != updated.spec.publish;
  bool discarded = slot.snapshot && !updated.snapshot;
  bool wake_changed = slot.spec.effective_wake() != updated.spec.effective_wake() ||
                      slot.spec.wake_ports != updated.spec.wake_ports;
  slot = std::move(updated);
  if (discarded) DiscardSavedState(slot);
  if (discarded || (wake_changed && slot.state == VmState::kSuspended)) {
    WatchIfAsleep(lock, std::string(name));
  }
  if (publish_changed) {
    if (auto s = SyncRules(); !s) spdlog::error("vm '{}': {}", name, s.error().message);
  }
  return slot;
}

Status Node::Delete(std::string_view name, bool force) {
  std::unique_lock lock(mu_);
  WaitForWrites(lock, name);
  auto found = FindOrFail(name);
  if (!found) return Fail(found.error());
  VmRecord vm = **found;  // a copy: the map may change while the lock is released
  VmEvent event = force ? VmEvent::kForceDelete : VmEvent::kDelete;
  auto step = Next(vm, event);
  if (!step) return Fail(step.error());
  if (!step->removes) {  // its VMM runs
    if (!machinery_.driver) return NeedDriver(vm, "delete");
    // Mark it first, so that a crash of hearthd from here on finishes the delete on restart.
    auto marked = Commit(lock, vm, event, "deleting", "stopping the VMM (delete --force)");
    if (!marked) return Fail(marked.error().Wrap(fmt::format("deleting vm '{}'", vm.name)));
    vm = *marked;
    ClaimJob(vm.name);
    EndProcess(lock, vm, /*graceful=*/false);
  }
  return Remove(lock, vm);
}

Status Node::Remove(std::unique_lock<std::mutex>& lock, const VmRecord& vm) {
  std::string vm_name = vm.name;
  if (machinery_.driver) CleanUp(vm);
  Event event = MakeEvent(vm, "deleted", "");
  if (auto s = Write(lock, vm, [&] { return store_.DeleteVm(vm.name, vm.version, event); }); !s) {
    EndJob(vm_name);
    return Fail(s.error().Wrap(fmt::format("deleting vm '{}'", vm_name)));
  }
  spdlog::info("vm '{}' deleted", vm_name);
  vms_.erase(vms_.find(vm_name));
  live_.erase(vm_name);
  if (machinery_.driver) {
    if (auto s = SyncRules(); !s) spdlog::error("{}", s.error().message);
  }
  changed_.notify_all();
  return Ok();
}

Result<VmRecord> Node::Start(std::string_view name, bool fresh) {
  std::unique_lock lock(mu_);
  WaitForWrites(lock, name);
  auto found = FindOrFail(name);
  if (!found) return Fail(found.error());
  const VmRecord& vm = **found;
  VmEvent event = fresh ? VmEvent::kStartFresh : VmEvent::kStart;
  if (Idempotent(vm.state, event) != NoChange::kNo) return vm;
  auto step = Next(vm, event);
  if (!step) return Fail(step.error());
  if (vm.state == VmState::kSuspended && !machinery_.driver) {
    return Fail(NeedDriver(vm, "resume").error());
  }
  if (step->state == VmState::kResuming) {
    if (auto s = Admit(vm); !s) return Fail(s.error());
    return ResumeRecorded(lock, vm, event);
  }
  if (auto s = Admit(vm); !s) return Fail(s.error());
  if (!machinery_.driver) return Fail(NeedDriver(vm, "start").error());
  VmRecord next = vm;
  next.state_reason.clear();
  // A fresh start of a suspended VM discards its saved state and cold-boots.
  bool discard = vm.state == VmState::kSuspended;
  next.snapshot.reset();
  if (machinery_.network && next.ip.empty()) {
    auto ip = AllocateAddress();
    if (!ip) return Fail(ip.error());
    next.ip = *ip;
  }
  auto started =
      Commit(lock, next, event, "starting", discard ? "saved state discarded (--fresh)" : "");
  if (!started) return Fail(started.error().Wrap(fmt::format("starting vm '{}'", vm.name)));
  if (discard) DiscardSavedState(*started);
  Live& live = live_[started->name];
  live.cancel = std::make_shared<hv::CancelFlag>(false);
  ClaimJob(started->name);
  live.restarts.clear();
  std::string vm_name = started->name;
  Spawn([this, vm_name] { RunStart(vm_name, std::chrono::milliseconds(0)); });
  return started;
}

Result<VmRecord> Node::Stop(std::string_view name, bool kill) {
  std::unique_lock lock(mu_);
  WaitForWrites(lock, name);
  auto found = FindOrFail(name);
  if (!found) return Fail(found.error());
  const VmRecord& vm = **found;
  VmEvent event = kill ? VmEvent::kKill : VmEvent::kStop;
  if (Idempotent(vm.state, event) != NoChange::kNo) return vm;
  auto step = Next(vm, event);
  if (!step) return Fail(step.error());
  if (!machinery_.driver) return Fail(NeedDriver(vm, "stop").error());
  if (step->state == VmState::kStarting) {
    // Cancels the start (or a pending automatic restart); the start job settles it as stopped.
    if (auto it = live_.find(vm.name); it != live_.end()) it->second.cancel->store(true);
    changed_.notify_all();
    return vm;
  }
  if (step->state == VmState::kStopped) {
    // No process to end: the saved state is all there is, and stop keeps none.
    VmRecord next = vm;
    next.snapshot.reset();
    auto stopped = Commit(lock, next, event, "stopped", "saved state discarded");
    if (!stopped) return Fail(stopped.error().Wrap(fmt::format("stopping vm '{}'", vm.name)));
    DiscardSavedState(*stopped);
    ReleaseTap(stopped->name);
    spdlog::info("vm '{}' is stopped: saved state discarded", stopped->name);
    return stopped;
  }
  auto stopping = Commit(lock, vm, event, "stopping", kill ? "kill" : "guest shutdown");
  if (!stopping) return Fail(stopping.error().Wrap(fmt::format("stopping vm '{}'", vm.name)));
  ClaimJob(stopping->name);
  std::string vm_name = stopping->name;
  Spawn([this, vm_name, kill] { RunStop(vm_name, kill); });
  return stopping;
}

Result<VmRecord> Node::Suspend(std::string_view name) {
  std::unique_lock lock(mu_);
  WaitForWrites(lock, name);
  auto found = FindOrFail(name);
  if (!found) return Fail(found.error());
  const VmRecord& vm = **found;
  if (Idempotent(vm.state, VmEvent::kSuspend) != NoChange::kNo) return vm;
  if (auto step = Next(vm, VmEvent::kSuspend); !step) return Fail(step.error());
  if (!machinery_.driver) return Fail(NeedDriver(vm, "suspend").error());
  auto suspending = Commit(lock, vm, VmEvent::kSuspend, "suspending", "");
  if (!suspending) {
    return Fail(suspending.error().Wrap(fmt::format("suspending vm '{}'", vm.name)));
  }
  ClaimJob(suspending->name);
  std::string vm_name = suspending->name;
  Spawn([this, vm_name] { RunSuspend(vm_name); });
  return suspending;
}

Result<VmRecord> Node::Resume(std::string_view name) {
  std::unique_lock lock(mu_);
  WaitForWrites(lock, name);
  auto found = FindOrFail(name);
  if (!found) return Fail(found.error());
  const VmRecord& vm = **found;
  if (Idempotent(vm.state, VmEvent::kResume) != NoChange::kNo) return vm;
  if (auto step = Next(vm, VmEvent::kResume); !step) return Fail(step.error());
  if (auto s = Admit(vm); !s) return Fail(s.error());
  if (!machinery_.driver) return Fail(NeedDriver(vm, "resume").error());
  return ResumeRecorded(lock, vm, VmEvent::kResume);
}

Result<VmRecord> Node::ResumeRecorded(std::unique_lock<std::mutex>& lock, const VmRecord& vm,
                                      VmEvent event) {
  std::string name = vm.name;
  auto pending = BeginResume(lock, vm, event, /*check_now=*/true, "");
  if (!pending) return Fail(pending.error());
  // The restore is under way already; the answer waits for the record of it.
  idle_.wait(lock, [&] { return (*pending)->done; });
  if ((*pending)->error)
    return Fail((*pending)->error->Wrap(fmt::format("resuming vm '{}'", name)));
  return (*pending)->next;
}

Result<std::shared_ptr<Node::PendingCommit>> Node::BeginResume(std::unique_lock<std::mutex>& lock,
                                                               const VmRecord& vm, VmEvent event,
                                                               bool check_now,
                                                               std::string message) {
  // Refuse a snapshot that cannot be restored before anything changes. The job checks it (again,
  // for another backend) once the backend is decided.
  std::string checked;
  if (std::string backend = machinery_.driver->Peek().backend; check_now && !backend.empty()) {
    auto machine = Machine(vm);
    if (!machine) return Fail(machine.error());
    if (auto m = CheckSnapshot(vm, *machine, backend); !m) return Fail(m.error());
    checked = backend;
  }
  // The job restores at once and writes `resuming` (and checks the snapshot) while the VMM loads.
  // Until that write ends, other requests on the VM wait for it.
  VmRecord next = vm;
  next.state_reason.clear();
  auto begun = BeginCommit(lock, std::move(next), event, "resuming", std::move(message));
  if (!begun) return Fail(begun.error());
  auto pending = std::make_shared<PendingCommit>(std::move(*begun));
  ClaimJob(vm.name);
  std::string vm_name = vm.name;
  Spawn([this, vm_name, pending, checked] { RunResume(vm_name, pending, checked); },
        &wake_threads_);
  return pending;
}

Result<std::vector<Event>> Node::Events(std::string_view name, int limit) const {
  std::string id;
  {
    std::lock_guard lock(mu_);
    auto found = FindOrFail(name);
    if (!found) return Fail(found.error());
    id = (*found)->id;
  }
  return store_.ListEvents(id, limit);
}

Result<std::string> Node::Logs(std::string_view name, int max_bytes) const {
  std::filesystem::path path;
  {
    std::lock_guard lock(mu_);
    auto found = FindOrFail(name);
    if (!found) return Fail(found.error());
    path = paths_.console_log((*found)->id);
  }
  return hv::ReadTail(path, max_bytes);
}

Result<std::string> Node::Logs(std::string_view name, const LogQuery& query) const {
  std::string id;
  {
    std::lock_guard lock(mu_);
    auto found = FindOrFail(name);
    if (!found) return Fail(found.error());
    id = (*found)->id;
  }
  std::lock_guard console(console_mu_);
  int64_t end = 0;
  std::string tail = hv::ReadTailAt(paths_.console_log(id), query.max_bytes, end);
  int64_t start = end - static_cast<int64_t>(tail.size());
  std::string_view text = tail;
  if (query.tail_lines > 0) {
    int64_t skipped = 0;
    text = hv::LastLinesOf(text, query.tail_lines, skipped);
    start += skipped;
  }
  if (!query.timestamps) return std::string(text);
  // What is answered has been seen now, at the latest: so it is stamped the same way on every
  // later read (`vm logs -f`).
  NoteConsoleEnd(id, end);
  return hv::StampLines(text, start, hv::ReadConsoleTimes(paths_.console_times(id)), clock_.Now());
}

NodeInfo Node::Info() const {
  std::lock_guard lock(mu_);
  NodeInfo info;
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  info.hostname = host;
  info.host = host_;
  info.memory_ratio = options_.memory_ratio;
  info.memory_admission =
      MiB{static_cast<int64_t>(options_.memory_ratio * static_cast<double>(host_.memory.value))};
  info.backend_note = "no hypervisor driver is available on this node";
  if (machinery_.driver) {
    hv::BackendInfo backend = machinery_.driver->Peek();
    if (!backend.backend.empty()) info.backends.push_back(backend.backend);
    info.backend_note = backend.note;
  }
  for (const auto& [_, vm] : vms_) {
    if (HoldsMemory(vm.state)) info.memory_running.value += vm.spec.memory.value;
    info.vms_by_state[std::string(ToString(vm.state))]++;
  }
  info.vms_total = static_cast<int>(vms_.size());
  return info;
}

}  // namespace hearth::node

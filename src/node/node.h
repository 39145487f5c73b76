// Node: the VM registry of one host and the only place VM records change. Every operation is
// validated completely before the store is written, and the store is written before the caller
// is answered. Changes to one VM are serialised; writes to different VMs reach the store
// concurrently (and share its commits). Reads are served from the in-memory copy of the committed
// records. Thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/linux_host_system.h"
#include "common/paths.h"
#include "common/ready_threads.h"
#include "hv/driver.h"
#include "hv/supervisor.h"
#include "model/host.h"
#include "model/lifecycle.h"
#include "model/timers.h"
#include "model/validator.h"
#include "model/vm.h"
#include "model/vm_json.h"
#include "net/address_pool.h"
#include "net/tap.h"
#include "net/wake.h"
#include "node/tap_keeper.h"
#include "node/timer_book.h"
#include "snapshot/manifest.h"
#include "store/state_store.h"

namespace hearth::node {

// The store setting holding the host boot id hearthd last started in.
inline constexpr std::string_view kHostBootSetting = "host_boot_id";

struct NodeOptions {
  // Admission control: running VMs' guest memory may total at most ratio x host RAM.
  double memory_ratio = 1.0;
  // How long a guest may take from launch to its ready marker before the start fails.
  std::chrono::milliseconds boot_timeout = std::chrono::minutes(2);
  // How long `stop` waits for the guest to power off before it kills the VMM.
  std::chrono::milliseconds stop_timeout = std::chrono::seconds(10);
  // Restart policy: the first automatic restart waits restart_backoff, each further one twice
  // as long (at most restart_backoff_max). More than crash_loop_limit restarts within
  // crash_loop_window make the VM `failed`.
  std::chrono::milliseconds restart_backoff = std::chrono::seconds(1);
  std::chrono::milliseconds restart_backoff_max = std::chrono::seconds(30);
  int crash_loop_limit = 5;
  std::chrono::milliseconds crash_loop_window = std::chrono::minutes(10);
  // Egress NAT (masquerade) for the VM address pool.
  bool masquerade = true;
  // Where kernel, initrd and rootfs may be (hearthd --allowed-paths, canonical); unset: anywhere
  // but hearth's own files (ValidationContext::allowed_paths).
  std::optional<std::vector<std::filesystem::path>> allowed_paths;
  // Console and VMM logs are capped at this many bytes per VM.
  int64_t log_cap = int64_t{1} << 20;
  // A snapshot's RAM is written to disk (and dropped from the page cache) this long after the
  // suspend, unless the VM was resumed by then.
  std::chrono::milliseconds snapshot_sync_delay = std::chrono::seconds(2);
};

// What runs VMs. Without a driver, lifecycle requests fail with failed_precondition.
struct Machinery {
  hv::HypervisorDriver* driver = nullptr;
  net::Network* network = nullptr;       // null: VMs get no network
  std::optional<net::AddressPool> pool;  // required with a network
  net::Waker* waker = nullptr;           // null: no wake on packet
  const PortHolders* ports = nullptr;    // null: published ports are not checked against host
  // Boot id, CPU model, processes, the steady clock; null: this machine's (LinuxHost()).
  HostSystem* system = nullptr;
};

struct NodeInfo {
  std::string hostname;
  HostInfo host;
  MiB memory_running;    // guest memory of VMs that hold host RAM
  MiB memory_admission;  // memory_ratio x host RAM
  double memory_ratio = 1.0;
  std::vector<std::string> backends;  // hypervisor backends found on this host
  std::string backend_note;           // why a backend is missing or was not chosen
  std::map<std::string, int> vms_by_state;
  int vms_total = 0;
};

class Node {
 public:
  Node(store::StateStore& store, HostInfo host, const FileProbe& files, const Clock& clock,
       Paths paths, NodeOptions options, Machinery machinery = {});
  // Stops the node's own work (lifecycle jobs, supervision); VMs keep running.
  ~Node();

  // Loads the records from the store. Call once before serving.
  Status Load();
  // After Load, with a driver: re-adopts the VMMs that outlived the previous hearthd, settles VMs
  // whose process vanished (restart policy) or whose transition was cut short, removes leftovers
  // (VMM processes, taps and VM directories without a VM) and rewrites the firewall rules.
  Status Recover();
  // Ends the lifecycle jobs under way without touching the VMs (for shutdown). Idempotent.
  void Shutdown();

  Result<VmRecord> Create(const CreateRequest& request);
  Result<VmRecord> Get(std::string_view name) const;
  std::vector<VmRecord> List() const;
  // Applies a partial edit. A stale `request.generation` is failed_precondition.
  Result<VmRecord> Edit(std::string_view name, const EditRequest& request);
  // Deletes a VM. Without `force` only a VM that has no process and no saved state is deleted.
  Status Delete(std::string_view name, bool force);

  Result<VmRecord> Start(std::string_view name, bool fresh);
  Result<VmRecord> Stop(std::string_view name, bool kill);
  Result<VmRecord> Suspend(std::string_view name);
  Result<VmRecord> Resume(std::string_view name);
  // The VM once it is in a stable state (not starting, stopping, suspending, resuming or
  // deleting), or as it is after `limit`, or when the node shuts down. not_found once deleted.
  Result<VmRecord> WaitSettled(std::string_view name, std::chrono::milliseconds limit);
  // A count that grows whenever a write to a record ends or a job of the node ends. WaitForChange
  // blocks until it is past `seen` (true) or `deadline` passed (false): for watchers, such as
  // tests, that wait for a condition on the records without polling.
  uint64_t Changes() const;
  bool WaitForChange(uint64_t seen, std::chrono::steady_clock::time_point deadline) const;
  // Whether a lifecycle job of the node owns VM `name` (it is in a transition, or settling one).
  bool Busy(std::string_view name) const;
  // Whether the timer thread runs (from Recover until Shutdown).
  bool TimersRunning() const;

  // Every WaitSettled, now and later, answers at once (before the HTTP server stops: it waits
  // for the requests it serves).
  void ReleaseWaiters();

  // Timers (model/timers.h for when they fall due). After Recover, a thread of the node reads
  // the taps of running VMs with an idle timeout every 250 ms and fires each timer within a
  // second of its time, including one that fell due while no hearthd ran. A firing is a "timer"
  // event followed by the same suspend or (graceful) stop the API does; if that is refused, a
  // second "timer" event says why. A timer that fired tries again 30 s later while the same run
  // goes on (a refused action, or a suspend that failed and let the guest run on).
  // Idle time is counted from when the VM became running, from the edit that gave a running VM
  // its idle timeout, or from when this node started its timers, whichever is latest (packets
  // were not watched before; those of a previous hearthd's time are not known).
  //
  // Reads the taps and fires the timers due at the clock's now (the timer thread's work, exposed
  // for tests with a fake clock). Returns how many fired.
  int FireDueTimers();
  // The timer that fires next for `vm` (a record this node returned), if any.
  std::optional<DueTimer> NextTimer(const VmRecord& vm) const;

  // The waker's callback: a packet arrived for suspended VM `name` (seen at `seen`); resumes it.
  void OnWake(const std::string& name, std::chrono::steady_clock::time_point seen);

  Result<std::vector<Event>> Events(std::string_view name, int limit) const;
  // The last `max_bytes` of the VM's console log; empty if it never ran.
  Result<std::string> Logs(std::string_view name, int max_bytes) const;
  struct LogQuery {
    int max_bytes = 64 * 1024;  // at most this much of the end of the log
    int tail_lines = 0;         // then only the last this many lines; 0: all
    bool timestamps = false;    // each line prefixed with when it arrived (hv/console_index.h)
  };
  Result<std::string> Logs(std::string_view name, const LogQuery& query) const;
  // Notes how far each running VM's console log has grown (the supervisor's tick, every second;
  // exposed for tests).
  void IndexConsoles();
  NodeInfo Info() const;

 private:
  // Publishes `next` as under way, releases `lock` while `write` reaches the store, then takes
  // it back. Callers apply `next` to vms_ only if the write succeeded.
  Status Write(std::unique_lock<std::mutex>& lock, const VmRecord& next,
               const std::function<Status()>& write);
  // Ends the write to VM `name` under way (lock held) and wakes who waits for it.
  void EndWrite(const std::string& name);
  // Waits (releasing `lock`) until no write to VM `name` is under way.
  void WaitForWrites(std::unique_lock<std::mutex>& lock, std::string_view name);
  const VmRecord* Find(std::string_view name) const;
  Result<const VmRecord*> FindOrFail(std::string_view name) const;
  ValidationContext MakeContext(std::string_view exclude) const;
  // resource_exhausted if starting `vm` would exceed the admission limit.
  Status Admit(const VmRecord& vm) const;
  Event MakeEvent(const VmRecord& vm, std::string type, std::string message) const;
  // The common part of start/resume/stop/suspend until a hypervisor driver exists.
  Status NeedDriver(const VmRecord& vm, std::string_view action) const;

  // --- lifecycle (node_lifecycle.cc, node_recovery.cc) ---
  // What the node knows of a VM beyond its record, by VM name.
  struct Live {
    std::shared_ptr<hv::CancelFlag> cancel = std::make_shared<hv::CancelFlag>(false);
    bool job = false;                                            // a lifecycle job owns the VM
    std::deque<std::chrono::steady_clock::time_point> restarts;  // automatic ones, recent
  };
  using Measures = std::map<std::string, double>;
  // Writes `next` (version + 1, with an event carrying `measures`); lock held, no write under way
  // for the VM.
  // The state is the one `event` leads to from the committed record (model/lifecycle.h); an
  // illegal event is failed_precondition and nothing is written.
  Result<VmRecord> Commit(std::unique_lock<std::mutex>& lock, VmRecord next, VmEvent event,
                          std::string type, std::string message, Measures measures = {});
  // Commit in two halves, so that the store write can overlap other work of a job: Begin (lock
  // held, no write under way) makes everyone else wait for the VM's record (WaitForWrites);
  // Finish (lock held; released during the write) writes it and ends the wait.
  struct PendingCommit {
    VmRecord next;
    Event event;
    int64_t base = 0;            // the version it replaces
    bool done = false;           // written or failed (mu_; idle_ is signalled)
    std::optional<Error> error;  // why the write failed
  };
  Result<PendingCommit> BeginCommit(std::unique_lock<std::mutex>& lock, VmRecord next,
                                    VmEvent event, std::string type, std::string message,
                                    Measures measures = {});
  Result<VmRecord> FinishCommit(std::unique_lock<std::mutex>& lock, PendingCommit& pending);
  // Runs `job` on its own thread, or on one of `ready` (which starts at once); the node waits for
  // jobs on shutdown.
  void Spawn(std::function<void()> job, ReadyThreads* ready = nullptr);
  Result<hv::MachineSpec> Machine(const VmRecord& vm) const;
  // Launches the VMM of VM `name` (in state starting) after `delay`, waits for the guest and
  // settles the VM as running, stopped (cancelled) or failed. Runs as a job.
  void RunStart(const std::string& name, std::chrono::milliseconds delay);
  // Waits for the guest of VM `name` whose VMM runs, then settles the VM. Runs as a job.
  void AwaitGuest(const std::string& name, const hv::MachineSpec& machine,
                  const hv::ProcessId& process, std::chrono::steady_clock::time_point launched);
  void RunStop(const std::string& name, bool kill);
  // Ends the VM's process (if any) and waits for it, releasing the lock meanwhile. Returns how.
  std::string EndProcess(std::unique_lock<std::mutex>& lock, const VmRecord& vm, bool graceful);
  // Supervisor callback: a VMM exited.
  void OnVmmExit(const hv::ProcessId& process, const hv::ExitStatus& status);
  // The VMM of VM `name` ended without a request (the job owns the VM): record it and apply the
  // restart policy; a restart continues in this job.
  void HandleExit(std::unique_lock<std::mutex>& lock, const std::string& name,
                  const std::string& why, bool clean);
  // A lifecycle job owns VM `name` from ClaimJob until EndJob (lock held for both; EndJob wakes who
  // waits for jobs). Requests, timers and the waker leave an owned VM alone.
  void ClaimJob(const std::string& name);
  void EndJob(const std::string& name);
  bool OwnedByJob(std::string_view name) const;  // lock held
  // The VM a job works on if it is still in `expected` (waiting for writes); else ends the job
  // and returns null.
  const VmRecord* OwnedVm(std::unique_lock<std::mutex>& lock, const std::string& name,
                          VmState expected);
  // Settles a job's VM in the state `event` leads to (pid cleared unless running) and ends the
  // job. An event the lifecycle does not allow in the VM's state is logged and not written.
  void Settle(std::unique_lock<std::mutex>& lock, const std::string& name, VmEvent event,
              std::string type, std::string message, std::string reason = {},
              const std::function<void(VmRecord&)>& change = nullptr, Measures measures = {});
  // Saves a running VM's state and ends its VMM (job); resumes a suspended one (job).
  void RunSuspend(const std::string& name);
  // Resumes VM `name` (node_resume.cc): suspended, with the move to `resuming` begun in `pending`
  // but not written; the job writes it beside the restore. `checked_backend`: the backend its
  // snapshot was already checked for (BeginResume), so the job need not check it again.
  void RunResume(const std::string& name, std::shared_ptr<PendingCommit> pending,
                 std::string checked_backend);
  // Settles VM `vm` after a resume that failed with `why`: suspended, its snapshot kept, if the
  // guest never ran (not `consumed`); else failed, the snapshot discarded.
  void SettleFailedResume(std::unique_lock<std::mutex>& lock, const VmRecord& vm, std::string why,
                          bool consumed);
  // Resume and start of a suspended VM (lock held, VM admitted): BeginResume, and the record of
  // the move to `resuming` once written.
  Result<VmRecord> ResumeRecorded(std::unique_lock<std::mutex>& lock, const VmRecord& vm,
                                  VmEvent event);
  // Starts resuming a suspended VM (lock held, VM admitted): begins the move to `resuming` and
  // starts the job, which restores at once and writes the move meanwhile (see RunResume). With
  // `check_now`, the snapshot is checked here first, so that a bad one changes nothing.
  Result<std::shared_ptr<PendingCommit>> BeginResume(std::unique_lock<std::mutex>& lock,
                                                     const VmRecord& vm, VmEvent event,
                                                     bool check_now, std::string message);
  // Deletes a VM's saved state (files only).
  void DiscardSavedState(const VmRecord& vm);
  // The VM's snapshot if it is whole and was taken from the machine it would be restored into
  // (failed_precondition saying why not, and how to proceed).
  Result<snapshot::Manifest> CheckSnapshot(const VmRecord& vm, const hv::MachineSpec& machine,
                                           const std::string& backend);
  // Makes a suspended VM's snapshot durable and drops its RAM from the page cache (a job).
  void SyncSnapshotLater(const std::string& vm_id, Timestamp taken_at);
  // Recover() for a VM with a recorded VMM: adopts it if it still runs, else settles the VM as
  // its VMM vanished (RecoverVanished). Jobs to start once recovery is done go to `jobs`.
  void RecoverProcess(std::unique_lock<std::mutex>& lock, const VmRecord& vm,
                      std::set<int64_t>& adopted, std::vector<std::function<void()>>& jobs);
  void RecoverVanished(std::unique_lock<std::mutex>& lock, const VmRecord& vm,
                       const std::string& error, std::vector<std::function<void()>>& jobs);
  // Recover() for a VM without a recorded VMM: finishes a start, stop or delete cut short.
  void RecoverWithoutProcess(std::unique_lock<std::mutex>& lock, const VmRecord& vm,
                             std::vector<std::function<void()>>& jobs);
  // Ends VMMs (`running`, not `adopted`), removes VM directories and taps that no VM owns, and
  // rewrites the firewall rules (lock held).
  Status RemoveLeftovers(const std::vector<hv::ProcessId>& running,
                         const std::set<int64_t>& adopted);
  // Recover() for a VM caught in suspending or resuming: settles it running (adopting its VMM
  // into `adopted`), suspended or failed, whichever its snapshot and VMM allow.
  void RecoverSnapshotTransition(std::unique_lock<std::mutex>& lock, const VmRecord& vm,
                                 std::set<int64_t>& adopted);
  // --- wake on packet (node_wake.cc) ---
  // The VM's tap fd for its next VMM: the one held, the waker's (dropping what it kept), or a new
  // one; -1 without a waker or network. Frames the waker kept go to `handoff` if given.
  int HoldTap(std::unique_lock<std::mutex>& lock, const VmRecord& vm, net::Handoff* handoff);
  // Gives the VM's tap to the VMM about to start as `machine`: the held fd when the driver takes
  // one (HoldTap), else a release_tap that lets go of it right before the VMM opens it by name.
  void HandTap(std::unique_lock<std::mutex>& lock, const VmRecord& vm, hv::MachineSpec& machine,
               net::Handoff* handoff);
  // Closes what the node holds of the VM's tap (it has no VMM and will not wake).
  void ReleaseTap(const std::string& name);
  // A suspended VM with wake on packet: its tap goes to the waker; any other: released.
  void WatchIfAsleep(std::unique_lock<std::mutex>& lock, const std::string& name);
  // Fault injection at a named step (common/fault.h); `vmm` is the process a ":vmm" fault kills.
  void Fault(std::string_view point, const hv::ProcessId* vmm);
  // Creates or fixes the VM's tap (no lock needed).
  Status PrepareNetwork(const VmRecord& vm);
  // Rewrites hearth's firewall rules from the VMs (lock held).
  Status SyncRules();
  // Removes the VM's tap and directory (its process has ended).
  void CleanUp(const VmRecord& vm);
  void CapLogs();
  // Records that the console log of VM `id` was seen up to `end` (console_mu_ held).
  void NoteConsoleEnd(const std::string& id, int64_t end) const;
  Result<std::string> AllocateAddress() const;
  // Deletes a VM whose process has ended: cleanup, store, memory.
  Status Remove(std::unique_lock<std::mutex>& lock, const VmRecord& vm);

  // --- timers (node_timers.cc) ---
  // Reads the taps TimerBook asks for, runs a pass of it and fires what is due.
  TimerBook::Pass RunTimers();
  void Fire(const TimerBook::Firing& firing);
  // Starts the timer thread (end of Recover, lock held); stops and joins it (Shutdown, lock not
  // held). A node whose timers were stopped does not start them again.
  void StartTimers();
  void StopTimers();
  void TimerLoop();
  // mu_ guards these, except the thread object (timer_thread_mu_); Shutdown joins the thread.
  TimerBook timer_book_;
  std::condition_variable timers_wake_;  // a record changed, or stop
  bool timers_dirty_ = false;
  bool timers_stop_ = false;
  std::mutex timer_pass_mu_;  // one RunTimers at a time
  mutable std::mutex timer_thread_mu_;
  std::thread timer_thread_;

  // The console indexes: how far each VM's log is indexed, and the VMs the tick watched last
  // (so that a VM whose VMM just ended gets its last bytes noted). Taken without mu_ held.
  mutable std::mutex console_mu_;
  mutable std::map<std::string, int64_t> console_seen_;
  std::set<std::string> console_watched_;
  int ticks_ = 0;  // the supervisor's ticks: logs are capped every 5th

  mutable std::mutex mu_;
  store::StateStore& store_;
  HostInfo host_;
  const FileProbe& files_;
  const Clock& clock_;
  Paths paths_;
  NodeOptions options_;
  std::map<std::string, VmRecord, std::less<>> vms_;  // committed
  // The next version of each VM whose write is under way (at most one per VM).
  std::map<std::string, VmRecord, std::less<>> writing_;
  std::condition_variable idle_;  // signalled when a write ends
  // Changes(): counted and signalled (mu_ held) when a write or a job ends.
  void Touch();
  uint64_t changes_ = 0;
  mutable std::condition_variable watchers_;

  Machinery machinery_;
  HostSystem& system_;
  TapKeeper tap_keeper_{machinery_.network, machinery_.waker};  // mu_
  std::map<std::string, Live, std::less<>> live_;               // by VM name
  std::condition_variable changed_;  // a cancel flag was set, or a job ended
  int jobs_ = 0;
  std::once_flag network_prepared_;  // host set-up (ip_forward) before the first tap
  // What this hearthd has put on the host, so that an unchanged rule set or a tap it set up
  // already costs no fork of nft or ip on the start path. Rules: mu_; taps: taps_mu_.
  std::optional<net::RuleSet> applied_rules_;
  std::mutex taps_mu_;
  std::set<std::string> taps_ready_;
  bool shutting_down_ = false;
  bool waiters_released_ = false;
  bool host_rebooted_ = false;    // since the previous hearthd on this data dir (Recover)
  std::mutex snapshot_files_mu_;  // between discarding a snapshot and marking it synced
  // Where wake jobs run: a waking packet must not wait for a thread to be created.
  ReadyThreads wake_threads_{2, net::kWakeNice};
  std::unique_ptr<hv::Supervisor> supervisor_;  // last: its thread calls back into the node
};

// Starting `candidate` needs its guest memory on top of what `vms` hold now.
Status CheckAdmission(const std::vector<const VmRecord*>& vms, const VmRecord& candidate,
                      MiB host_memory, double ratio);

}  // namespace hearth::node

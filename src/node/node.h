// Node: the VM registry of one host and the only place VM records change. Every operation is
// validated completely before the store is written, and the store is written before the caller
// is answered. Changes to one VM are serialised; writes to different VMs reach the store
// concurrently (and share its commits). Reads are served from the in-memory copy of the committed
// records. Thread-safe.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/paths.h"
#include "model/host.h"
#include "model/validator.h"
#include "model/vm.h"
#include "model/vm_json.h"
#include "store/state_store.h"

namespace hearth::node {

struct NodeOptions {
  // Admission control: running VMs' guest memory may total at most ratio x host RAM.
  double memory_ratio = 1.0;
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
       Paths paths, NodeOptions options);

  // Loads the records from the store. Call once before serving.
  Status Load();

  Result<VmRecord> Create(const CreateRequest& request);
  Result<VmRecord> Get(std::string_view name) const;
  std::vector<VmRecord> List() const;
  // Applies a partial edit. A stale `request.version` is failed_precondition.
  Result<VmRecord> Edit(std::string_view name, const EditRequest& request);
  // Deletes a VM. Without `force` only a VM that has no process and no saved state is deleted.
  Status Delete(std::string_view name, bool force);

  Result<VmRecord> Start(std::string_view name, bool fresh);
  Result<VmRecord> Stop(std::string_view name, bool kill);
  Result<VmRecord> Suspend(std::string_view name);
  Result<VmRecord> Resume(std::string_view name);

  Result<std::vector<Event>> Events(std::string_view name, int limit) const;
  // The last `max_bytes` of the VM's console log; empty if it never ran.
  Result<std::string> Logs(std::string_view name, int max_bytes) const;
  NodeInfo Info() const;

 private:
  // Publishes `next` as under way, releases `lock` while `write` reaches the store, then takes
  // it back. Callers apply `next` to vms_ only if the write succeeded.
  Status Write(std::unique_lock<std::mutex>& lock, const VmRecord& next,
               const std::function<Status()>& write);
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
};

// Starting `candidate` needs its guest memory on top of what `vms` hold now.
Status CheckAdmission(const std::vector<const VmRecord*>& vms, const VmRecord& candidate,
                      MiB host_memory, double ratio);

}  // namespace hearth::node

// A cgroup per VMM process: a memory limit and a CPU weight, so that one escaped or runaway VMM
// cannot take the host's memory or starve the other VMs.
//
// Where the VMs' cgroups live depends on what the host mounts:
//   cgroup v2 with the memory and cpu controllers:
//     <v2 mount>/hearth.slice/vm-<id>/       memory.max, cpu.weight
//   cgroup v1 (hybrid hosts, whose v2 mount has no controllers), under hearthd's own cgroup of
//   each controller, so that a limit on hearthd's unit also covers its VMMs:
//     <memory mount><hearthd's memory cgroup>/hearth.slice/vm-<id>/   memory.limit_in_bytes
//     <cpu mount><hearthd's cpu cgroup>/hearth.slice/vm-<id>/         cpu.shares
// The VMM joins its cgroups in the child between fork and exec (hv::Spawn), so it never runs
// outside them. The cgroups are removed once the VMM has exited.
//
// Everything that decides is plain data built from the text of /proc files and unit-tested; the
// few functions at the end do the I/O.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace hearth::hv {

inline constexpr std::string_view kCgroupSlice = "hearth.slice";

struct CgroupHierarchy {
  enum class Kind { kNone, kV2, kV1 };
  Kind kind = Kind::kNone;
  std::filesystem::path v2_mount;       // kV2: the unified mount, e.g. /sys/fs/cgroup
  std::filesystem::path parent;         // kV2: <v2_mount>/hearth.slice
  std::filesystem::path memory_parent;  // kV1: .../hearth.slice in the memory hierarchy
  std::filesystem::path cpu_parent;     // kV1: .../hearth.slice in the cpu hierarchy
  std::string why_none;                 // kNone: what is missing, for the operator
};

// Picks the hierarchy from /proc/self/mountinfo, /proc/self/cgroup and `read_file` (used for the
// v2 mount's cgroup.controllers). v2 wins when it offers both memory and cpu; else v1 when both
// controllers are mounted; else kNone with the reason.
CgroupHierarchy FindCgroupHierarchy(
    std::string_view mountinfo, std::string_view self_cgroup,
    const std::function<std::string(const std::filesystem::path&)>& read_file);
// The same for this process, reading the real files.
CgroupHierarchy FindOwnCgroupHierarchy();

struct CgroupWrite {
  std::filesystem::path file;
  std::string value;
  bool operator==(const CgroupWrite&) const = default;
};

// What to create and write for one VMM, in order.
struct CgroupPlan {
  std::vector<std::filesystem::path> parents;  // created when missing (kept when the VM goes)
  std::vector<CgroupWrite> parent_writes;      // v2: controllers enabled for the children
  std::vector<std::filesystem::path> dirs;     // the VMM's own cgroups
  std::vector<CgroupWrite> writes;             // its limits
  std::vector<std::filesystem::path> procs;    // cgroup.procs files the VMM joins before exec
  bool empty() const { return dirs.empty(); }
};

// The plan for VM `vm_id` with at most `memory_max_bytes` of memory (guest RAM, the page cache of
// its RAM file included, plus the VMM's own) and a CPU weight of `vcpus` times the default (v2
// cpu.weight 100, v1 cpu.shares 1024). Empty for kNone.
CgroupPlan PlanVmCgroup(const CgroupHierarchy& hierarchy, std::string_view vm_id,
                        int64_t memory_max_bytes, int vcpus);

// Creates the parents and the VM's cgroups (a leftover empty one of the VM's previous process is
// replaced) and writes the limits. failed_precondition names the file and what to do.
Status CreateCgroups(const CgroupPlan& plan);
// Opens the plan's cgroup.procs files for writing, for SpawnOptions::cgroup_procs; the caller
// closes them.
Result<std::vector<int>> OpenCgroupProcs(const CgroupPlan& plan);
// Moves process `pid` into the cgroups whose cgroup.procs files `procs` are open (OpenCgroupProcs)
// and closes them. For a process joined after it started (QemuDriver::Restore): a join costs a
// cgroup v1 host several milliseconds, which then overlap QEMU's own start.
Status JoinCgroups(const std::vector<int>& procs, pid_t pid);
// Removes the VM's cgroups; true when none is left (a cgroup that still has processes stays).
bool RemoveCgroups(const CgroupPlan& plan);

}  // namespace hearth::hv

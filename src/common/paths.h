// The on-disk layout of a hearth node. Every path hearth writes is built here and nowhere else.
//
//   <data-dir>/                      default /var/lib/hearth, mode 0700
//   ├── hearthd.sock                 API unix socket, mode 0600, root only, no token needed
//   ├── hearthd.lock                 flock()ed by the running hearthd: one daemon per data dir
//   ├── admin.token                  the admin bearer token for TCP clients, mode 0600
//   ├── state.db, state.db-wal/-shm  the embedded SQLite store (WAL mode); token hashes live here,
//   │                                and metering's samples and events (usage_* tables)
//   ├── metering/
//   │   └── clickhouse-spool/        rows on their way to ClickHouse (--clickhouse): batches
//   │       ├── <table>-<first>-<last>.jsonl   JSONEachRow, whole (written, fsynced, renamed)
//   │       ├── marks                the highest seq spooled per table
//   │       └── rejected/            batches ClickHouse refused as unparsable
//   ├── vms/<vm-id>/                 one directory per VM: console log, sockets, snapshots
//   │   ├── console.log              the guest's serial console (size capped)
//   │   ├── console.times            when console.log's bytes arrived: "END UNIX_MS" lines,
//   │   │                            appended by hearthd as it sees the log grow
//   (hv/console_index.h) │   ├── vmm.log                  the VMM's own stdout/stderr (size capped)
//   │   ├── memory                   guest RAM (QEMU memory-backend-file, shared, allocated in
//   │   │                            full at launch); while the VM is suspended, the RAM of its
//   │   │                            snapshot
//   │   ├── snapshot/                the complete snapshot of a suspended VM: manifest.json (what
//   │   │                            it was taken from, file sums; written last) and the VMM's
//   │   │                            files (QEMU: `state`, the device state)
//   │   ├── snapshot.new/            a snapshot being written; swapped with snapshot/ when whole,
//   │   │                            then removed (so it never holds the only good copy)
//   │   ├── qmp.sock                 QEMU's QMP socket
//   │   └── agent.in, agent.out      FIFOs of the guest agent's virtio-serial channel
//   └── images/<name>/               guest images: kernel, initrd/rootfs and a manifest
//
// Host-wide (shared by every hearthd on the host, cleared at reboot):
//   /run/hearth/kvm-probe.json       whether KVM really boots a guest, per host boot id
//
// A Firecracker VM under the jailer (--jailer): <chroot-base>/firecracker/<vm-id>/root/ holds
// what that VMM may see, under the names in `files` below: the socket, log and metrics FIFO, the
// kernel, initrd and rootfs (hard links or copies), and on save/restore the state and memory.
#pragma once

#include <filesystem>
#include <string_view>

namespace hearth {

// The names of the files inside the directories above, for the code that builds paths from a
// directory it was given (an image, a snapshot, a Firecracker jail).
namespace files {
// images/<name>/ (and the same names inside a Firecracker jail)
inline constexpr std::string_view kKernel = "vmlinux";
inline constexpr std::string_view kInitrd = "initrd.img";
inline constexpr std::string_view kRootfs = "rootfs.img";
// images/<name>/ and vms/<id>/snapshot/: what the directory holds, written last
inline constexpr std::string_view kManifest = "manifest.json";
// vms/<id>/snapshot/: the VMM's device state (QEMU's migration stream, Firecracker's snapshot)
inline constexpr std::string_view kSnapshotState = "state";
// vms/<id>/: when the console log's bytes arrived (hv/console_index.h)
inline constexpr std::string_view kConsoleTimes = "console.times";
// A file being written next to where it goes, renamed when whole
inline constexpr std::string_view kPartialSuffix = ".part";
// A Firecracker jail
inline constexpr std::string_view kJailRoot = "root";
inline constexpr std::string_view kFirecrackerSocket = "firecracker.socket";
inline constexpr std::string_view kFirecrackerLog = "firecracker.log";
inline constexpr std::string_view kFirecrackerMetrics = "metrics.fifo";
inline constexpr std::string_view kJailStateIn = "state";            // a snapshot to load
inline constexpr std::string_view kJailMemoryIn = "memory";          // its guest memory
inline constexpr std::string_view kJailStateOut = "state.saving";    // a snapshot being taken
inline constexpr std::string_view kJailMemoryOut = "memory.saving";  // its guest memory
}  // namespace files

class Paths {
 public:
  explicit Paths(std::filesystem::path data_dir) : data_dir_(std::move(data_dir)) {}

  static constexpr std::string_view kDefaultDataDir = "/var/lib/hearth";

  const std::filesystem::path& data_dir() const { return data_dir_; }
  std::filesystem::path socket() const { return data_dir_ / "hearthd.sock"; }
  std::filesystem::path lock_file() const { return data_dir_ / "hearthd.lock"; }
  std::filesystem::path admin_token() const { return data_dir_ / "admin.token"; }
  std::filesystem::path state_db() const { return data_dir_ / "state.db"; }
  std::filesystem::path vms_dir() const { return data_dir_ / "vms"; }
  std::filesystem::path vm_dir(std::string_view vm_id) const { return vms_dir() / vm_id; }
  std::filesystem::path console_log(std::string_view vm_id) const {
    return vm_dir(vm_id) / "console.log";
  }
  std::filesystem::path console_times(std::string_view vm_id) const {
    return vm_dir(vm_id) / files::kConsoleTimes;
  }
  std::filesystem::path vmm_log(std::string_view vm_id) const { return vm_dir(vm_id) / "vmm.log"; }
  std::filesystem::path memory_file(std::string_view vm_id) const {
    return vm_dir(vm_id) / "memory";
  }
  std::filesystem::path snapshot_dir(std::string_view vm_id) const {
    return vm_dir(vm_id) / "snapshot";
  }
  std::filesystem::path snapshot_staging(std::string_view vm_id) const {
    return vm_dir(vm_id) / "snapshot.new";
  }
  std::filesystem::path qmp_socket(std::string_view vm_id) const {
    return vm_dir(vm_id) / "qmp.sock";
  }
  // The agent channel's path prefix; the VMM appends ".in" and ".out".
  std::filesystem::path agent_pipe(std::string_view vm_id) const { return vm_dir(vm_id) / "agent"; }
  std::filesystem::path images_dir() const { return data_dir_ / "images"; }
  std::filesystem::path image_dir(std::string_view name) const { return images_dir() / name; }
  std::filesystem::path metering_dir() const { return data_dir_ / "metering"; }
  std::filesystem::path clickhouse_spool() const { return metering_dir() / "clickhouse-spool"; }

  static std::filesystem::path kvm_probe_cache() { return "/run/hearth/kvm-probe.json"; }

 private:
  std::filesystem::path data_dir_;
};

}  // namespace hearth

// QEMU's own save/restore of a hearth VM, done by hand over QMP for the benchmarks' side-by-side
// numbers: the same argv as hearth's QEMU (tap and QMP socket by name, see ByName), the same RAM
// file, hearth's device state copied aside. Two ways to move the device state:
//   kExecCat  the way shared/DESIGN.md measured it, and what the targets refer to:
//             `migrate exec:cat > state`, polling query-migrate; `migrate-incoming exec:cat state`,
//             polling query-status;
//   kFd       the QMP commands hearthd itself sends: the file handed over with getfd,
//             `migrate fd:` / `migrate-incoming fd:`, the MIGRATION event. Against this one, what
//             hearth adds is its own work only (the API, its records, its checks).
// Restore: -incoming defer, x-ignore-shared, the load, cont. Save: stop, the save, quit. The state
// is then handed back to hearth's snapshot (with its sum in the manifest), so that hearth and the
// raw cycles can alternate on one guest.
#pragma once

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/files.h"
#include "common/paths.h"
#include "hv/process.h"
#include "hv/qemu/qmp_client.h"
#include "hv/qemu/qmp_migration.h"
#include "snapshot/snapshot_dir.h"
#include "vm_bench_support.h"

namespace hearth::bench {

class RawQemu {
 public:
  enum class Transport { kExecCat, kFd };

  // `argv` as hearth ran it (see ByName); the VM must be suspended by hearth when Restore runs.
  RawQemu(Paths paths, std::string vm_id, std::vector<std::string> argv)
      : paths_(std::move(paths)), id_(std::move(vm_id)), argv_(std::move(argv)) {
    // By hand QEMU runs as root without hearth's seccomp filter, whose spawn=deny would kill the
    // exec:cat transport.
    for (size_t i = 0; i + 1 < argv_.size(); ++i) {
      if (argv_[i] == "-sandbox") {
        argv_.erase(argv_.begin() + static_cast<std::ptrdiff_t>(i),
                    argv_.begin() + static_cast<std::ptrdiff_t>(i) + 2);
        break;
      }
    }
    for (size_t i = 0; i + 1 < argv_.size(); ++i) {
      if (argv_[i] == "-qmp") {
        std::string v = argv_[i + 1].substr(5);  // after "unix:"
        qmp_path_ = v.substr(0, v.find(','));
      }
    }
    if (qmp_path_.empty()) throw std::runtime_error("no -qmp in the argv");
    state_ = (paths_.vm_dir(id_) / "raw-state").string();
  }

  // Restores hearth's snapshot by hand; returns the ms until the guest runs.
  double Restore(Transport how) {
    std::filesystem::copy_file(paths_.snapshot_dir(id_) / "state", state_ + ".in",
                               std::filesystem::copy_options::overwrite_existing);
    std::vector<std::string> incoming = argv_;
    incoming.insert(incoming.end(), {"-incoming", "defer"});
    std::filesystem::remove(qmp_path_);
    auto t0 = Clock::now();
    auto qemu = hv::Spawn(incoming, {});
    if (!qemu) throw std::runtime_error(qemu.error().message);
    qemu_ = *qemu;
    qmp_.emplace(Connect());
    // The same capabilities for both transports (events change nothing for exec:cat).
    Must(hv::qemu::SetMigrationCapabilities(*qmp_));
    if (how == Transport::kFd) {
      PassFile(state_ + ".in", O_RDONLY);
      Must(qmp_->Execute("migrate-incoming",
                         {{"uri", std::string("fd:") + hv::qemu::kStateFdName}}));
      WaitCompleted();
    } else {
      Must(qmp_->Execute("migrate-incoming", {{"uri", "exec:cat " + state_ + ".in"}}));
      Poll("query-status", [](const std::string& s) { return s != "inmigrate"; });
    }
    Must(qmp_->Execute("cont"));
    return Ms(Clock::now() - t0);
  }

  // Saves the running guest by hand, ends QEMU and hands the state back to hearth's snapshot;
  // returns the ms of the save (until QEMU ended and the state file is whole).
  double SaveAndHandBack(Transport how) {
    auto t0 = Clock::now();
    Must(hv::qemu::SetMigrationCapabilities(*qmp_));
    if (how == Transport::kFd) {
      PassFile(state_ + ".part", O_WRONLY | O_CREAT | O_TRUNC);
      Must(qmp_->Execute("stop"));
      Must(qmp_->Execute("migrate", {{"uri", std::string("fd:") + hv::qemu::kStateFdName}}));
      WaitCompleted();
      std::filesystem::rename(state_ + ".part", state_);
    } else {
      Must(qmp_->Execute("stop"));
      // The file gets its name once `cat` has written all of it (QEMU's `completed` comes
      // earlier).
      Must(qmp_->Execute("migrate", {{"uri", "exec:cat > " + state_ + ".part && mv " + state_ +
                                                 ".part " + state_}}));
      Poll("query-migrate", [](const std::string& s) { return s == "completed"; });
    }
    qmp_->Execute("quit", nlohmann::json::object(), std::chrono::seconds(2));
    qmp_.reset();
    hv::WaitForExit(qemu_, std::chrono::seconds(5));
    waitpid(static_cast<pid_t>(qemu_.pid), nullptr, 0);
    while (!std::filesystem::exists(state_))
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    double ms = Ms(Clock::now() - t0);
    HandBack();
    std::filesystem::remove(state_);
    return ms;
  }

 private:
  template <class T>
  static void Must(const Result<T>& r) {
    if (!r) throw std::runtime_error(r.error().message);
  }
  hv::qemu::QmpClient Connect() {
    auto c = hv::qemu::QmpClient::Connect(qmp_path_, std::chrono::seconds(10));
    if (!c) throw std::runtime_error(c.error().message);
    return std::move(*c);
  }
  void Poll(const std::string& cmd, const std::function<bool(const std::string&)>& done) {
    for (auto until = Clock::now() + std::chrono::seconds(60); Clock::now() < until;) {
      auto r = qmp_->Execute(cmd);
      Must(r);
      if (done(r->value("status", ""))) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    throw std::runtime_error(cmd + " did not finish");
  }
  void PassFile(const std::string& path, int flags) {
    Must(hv::qemu::PassStateFile(*qmp_, path, flags));
  }
  void WaitCompleted() {
    auto done = hv::qemu::WaitMigration(*qmp_, std::chrono::seconds(60));
    Must(done);
    if (*done != "completed") throw std::runtime_error("migration " + *done);
  }
  // The raw run moved the guest on: hearth's device state becomes the raw one, with its sum.
  void HandBack() {
    snapshot::SnapshotDir dir(paths_, id_);
    std::filesystem::copy_file(state_, dir.current() / "state",
                               std::filesystem::copy_options::overwrite_existing);
    std::ifstream in(dir.current() / snapshot::kManifestFile);
    auto m = snapshot::ManifestFromJson(nlohmann::json::parse(in));
    if (!m) throw std::runtime_error(m.error().message);
    for (auto& f : m->files) {
      if (f.name != "state") continue;
      f.bytes = static_cast<int64_t>(std::filesystem::file_size(dir.current() / "state"));
      f.sha256 = *Sha256File(dir.current() / "state");
    }
    if (auto s = WriteFileDurably(dir.current() / snapshot::kManifestFile, ToJson(*m).dump()); !s) {
      throw std::runtime_error(s.error().message);
    }
  }

  Paths paths_;
  std::string id_;
  std::vector<std::string> argv_;
  std::string qmp_path_;
  std::string state_;
  hv::ProcessId qemu_;
  std::optional<hv::qemu::QmpClient> qmp_;
};

}  // namespace hearth::bench

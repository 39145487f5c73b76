// SIGKILL of hearthd in the middle of a burst of concurrent writes loses no acknowledged write and
// leaves nothing half-applied. Eight client threads (half over the unix socket, half over TCP)
// create, edit (with If-Match) and delete VMs while the daemon is killed at a random moment; a new
// daemon on the same data directory must then show every write that was answered 2xx, and every
// VM it shows must be exactly the result of some sequence of whole requests the clients sent.
//
// What this catches: a write acknowledged before its transaction committed (or kept only in
// memory, or committed in a later batch), an update whose row and event are not one transaction,
// an edit applied in part, a create that reuses or regenerates the VM's id, a store the kill
// leaves corrupt or unreadable, and a restart that loses or rewrites the admin token.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "http/client.h"
#include "support/daemon.h"
#include "support/temp_dir.h"

namespace hearth::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// Any ELF file passes the kernel check of the validator; nothing boots it here.
constexpr const char* kKernel = "/bin/true";
constexpr int kThreads = 8;
constexpr int kSharedVms = 16;  // edited by every thread, so that If-Match conflicts happen
constexpr int kCycles = 3;

// Every edit writes a fresh cmdline together with a memory size derived from it: a VM whose
// memory does not belong with its cmdline holds a half-applied edit.
int64_t MemoryFor(uint64_t n) { return 64 + 2 * static_cast<int64_t>(n % 64); }

// What the clients sent and what hearthd acknowledged, for one VM name.
struct VmLedger {
  std::string acked_id;  // the id the 201 of its create gave; empty when not acknowledged
  bool delete_sent = false;
  bool delete_acked = false;
  int64_t acked_version = 0;  // the highest version an acknowledged write produced
  std::string acked_cmdline;  // ... and the values that write left
  int64_t acked_memory = 0;
  std::map<std::string, int64_t> sent;  // every cmdline a request carried -> its memory_mib
};

// Shared by the client threads.
class Ledger {
 public:
  // Called before the request goes out: its outcome may never be known.
  void Sent(const std::string& name, const std::string& cmdline, int64_t memory) {
    std::lock_guard lock(mu_);
    vms_[name].sent.emplace(cmdline, memory);
  }
  void SentDelete(const std::string& name) {
    std::lock_guard lock(mu_);
    vms_[name].delete_sent = true;
  }
  // Records a 2xx answer carrying the VM object.
  void Acked(const json& vm, bool created) {
    std::lock_guard lock(mu_);
    VmLedger& l = vms_[vm["name"].get<std::string>()];
    if (created) l.acked_id = vm["id"].get<std::string>();
    int64_t version = vm["version"].get<int64_t>();
    if (version >= l.acked_version) {
      l.acked_version = version;
      l.acked_cmdline = vm["cmdline"].get<std::string>();
      l.acked_memory = vm["memory_mib"].get<int64_t>();
    }
    ++acks_;
  }
  void AckedDelete(const std::string& name) {
    std::lock_guard lock(mu_);
    vms_[name].delete_acked = true;
    ++acks_;
  }
  // A finding that fails the test (an unexpected status, a transport error before the kill).
  void Problem(std::string what) {
    std::lock_guard lock(mu_);
    if (problems_.size() < 20) problems_.push_back(std::move(what));
  }

  int acks() const {
    std::lock_guard lock(mu_);
    return acks_;
  }
  std::vector<std::string> problems() const {
    std::lock_guard lock(mu_);
    return problems_;
  }
  std::map<std::string, VmLedger> vms() const {
    std::lock_guard lock(mu_);
    return vms_;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, VmLedger> vms_;
  int acks_ = 0;
  std::vector<std::string> problems_;
};

std::string SharedName(int i) { return fmt::format("pool-{}", i); }

// One client thread of the burst: until `stop`, creates VMs of its own (unique names), edits the
// shared VMs and its own with If-Match of the version it last saw, and deletes some of its own.
class Writer {
 public:
  Writer(int cycle, int index, http::ClientOptions options, Ledger& ledger,
         const std::atomic<bool>& killing, const std::atomic<bool>& stop)
      : cycle_(cycle),
        index_(index),
        client_(std::move(options)),
        ledger_(ledger),
        killing_(killing),
        stop_(stop),
        rng_(std::random_device{}()) {}

  void Run() {
    try {
      while (!stop_.load()) {
        unsigned dice = rng_() % 100;
        bool ok;
        if (dice < 30) {
          ok = Create();
        } else if (dice < 36 && !own_.empty()) {
          ok = Delete();
        } else {
          ok = Edit();
        }
        if (!ok) return;  // the daemon is gone (or a problem was recorded)
      }
    } catch (const std::exception& e) {  // e.g. an answer that is not JSON
      ledger_.Problem(fmt::format("writer {}: {}", index_, e.what()));
    }
  }

 private:
  // Sends one request; nullopt when there is no answer. Without an answer the outcome is unknown:
  // expected once the kill has begun, a problem before.
  std::optional<api::HttpResponse> Send(
      std::string_view method, const std::string& target, const std::string& body = "",
      const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    auto r = client_.Request(method, target, body, headers);
    if (!r) {
      if (!killing_.load()) {
        ledger_.Problem(
            fmt::format("{} {} failed before the kill: {}", method, target, r.error().message));
      }
      return std::nullopt;
    }
    return *r;
  }

  void Unexpected(std::string_view what, const api::HttpResponse& r) {
    ledger_.Problem(fmt::format("{}: unexpected {} {}", what, r.status, r.body.substr(0, 300)));
  }

  bool Create() {
    std::string name = fmt::format("c{}-t{}-{}", cycle_, index_, counter_++);
    uint64_t n = rng_();
    std::string cmdline = fmt::format("init-{}", name);
    int64_t memory = MemoryFor(n);
    ledger_.Sent(name, cmdline, memory);
    json body = {{"name", name}, {"kernel", kKernel}, {"cmdline", cmdline}, {"memory_mib", memory}};
    auto r = Send("POST", "/v1/vms", body.dump());
    if (!r) return false;
    if (r->status != 201) {
      Unexpected("create " + name, *r);
      return false;
    }
    json vm = json::parse(r->body);
    ledger_.Acked(vm, /*created=*/true);
    own_.push_back(name);
    seen_[name] = vm["generation"].get<int64_t>();
    return true;
  }

  bool Delete() {
    size_t i = rng_() % own_.size();
    std::string name = own_[i];
    own_.erase(own_.begin() + static_cast<std::ptrdiff_t>(i));
    seen_.erase(name);
    ledger_.SentDelete(name);
    auto r = Send("DELETE", "/v1/vms/" + name);
    if (!r) return false;
    if (r->status != 204) {
      Unexpected("delete " + name, *r);
      return false;
    }
    ledger_.AckedDelete(name);
    return true;
  }

  // Reads the VM's generation into seen_.
  bool Refresh(const std::string& name) {
    auto r = Send("GET", "/v1/vms/" + name);
    if (!r) return false;
    if (r->status != 200) {
      Unexpected("get " + name, *r);
      return false;
    }
    seen_[name] = json::parse(r->body)["generation"].get<int64_t>();
    return true;
  }

  bool Edit() {
    size_t pick = rng_() % (kSharedVms + own_.size());
    std::string name =
        pick < kSharedVms ? SharedName(static_cast<int>(pick)) : own_[pick - kSharedVms];
    if (!seen_.count(name) && !Refresh(name)) return false;
    uint64_t n = rng_();
    std::string cmdline = fmt::format("c{}-t{}-e{}", cycle_, index_, counter_++);
    int64_t memory = MemoryFor(n);
    ledger_.Sent(name, cmdline, memory);
    json body = {{"cmdline", cmdline}, {"memory_mib", memory}};
    auto r = Send("PATCH", "/v1/vms/" + name, body.dump(),
                  {{"If-Match", fmt::format("\"{}\"", seen_[name])}});
    if (!r) return false;
    if (r->status == 409) {
      // Another thread edited it first: the edit was refused as a whole; read and go on.
      if (json::parse(r->body)["error"].value("field", "") != "generation") {
        Unexpected("edit " + name, *r);
        return false;
      }
      return Refresh(name);
    }
    if (r->status != 200) {
      Unexpected("edit " + name, *r);
      return false;
    }
    json vm = json::parse(r->body);
    if (vm["generation"].get<int64_t>() != seen_[name] + 1 || vm["cmdline"] != cmdline ||
        vm["memory_mib"] != memory) {
      ledger_.Problem(fmt::format("edit {} from generation {} answered {}", name, seen_[name],
                                  r->body.substr(0, 300)));
      return false;
    }
    ledger_.Acked(vm, /*created=*/false);
    seen_[name] = vm["version"].get<int64_t>();
    return true;
  }

  const int cycle_;
  const int index_;
  http::Client client_;
  Ledger& ledger_;
  const std::atomic<bool>& killing_;
  const std::atomic<bool>& stop_;
  std::mt19937_64 rng_;
  int counter_ = 0;
  std::vector<std::string> own_;         // created by this thread, acknowledged, not deleted
  std::map<std::string, int64_t> seen_;  // the version this thread last saw of each VM
};

// PRAGMA integrity_check on a copy of the store as the killed daemon left it (the database and
// its WAL; SQLite rebuilds the shared-memory index). Returns "ok" or what SQLite reports.
std::string IntegrityOfCopy(const std::filesystem::path& data_dir,
                            const std::filesystem::path& scratch) {
  std::filesystem::remove_all(scratch);
  std::filesystem::create_directories(scratch);
  for (const char* name : {"state.db", "state.db-wal"}) {
    if (std::filesystem::exists(data_dir / name)) {
      std::filesystem::copy_file(data_dir / name, scratch / name);
    }
  }
  sqlite3* db = nullptr;
  std::string out;
  if (sqlite3_open_v2((scratch / "state.db").c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) !=
      SQLITE_OK) {
    out = fmt::format("cannot open the copy: {}", db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    return out;
  }
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, nullptr) != SQLITE_OK) {
    out = fmt::format("integrity_check: {}", sqlite3_errmsg(db));
  } else {
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      if (!out.empty()) out += "; ";
      out += reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    if (rc != SQLITE_DONE) out += fmt::format(" (step: {})", sqlite3_errmsg(db));
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return out;
}

class DurabilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = dir_.path() / "data";
    StartDaemon();
    ASSERT_NE(daemon_, nullptr);
    token_ = daemon_->token();
    ASSERT_FALSE(token_.empty());
    http::Client client(daemon_->UnixClient());
    for (int i = 0; i < kSharedVms; ++i) {
      std::string name = SharedName(i);
      ledger_.Sent(name, "boot", 128);
      json body = {{"name", name}, {"kernel", kKernel}, {"cmdline", "boot"}, {"memory_mib", 128}};
      auto r = client.Request("POST", "/v1/vms", body.dump());
      ASSERT_TRUE(r) << r.error().message;
      ASSERT_EQ(r->status, 201) << r->body;
      ledger_.Acked(json::parse(r->body), /*created=*/true);
    }
  }

  void StartDaemon() {
    daemon_.reset();
    auto daemon = DaemonProcess::Start(data_);
    ASSERT_TRUE(daemon) << daemon.error().message;
    daemon_ = std::move(*daemon);
  }

  // Runs the burst and kills the daemon once `kill_after` writes were acknowledged (or after a
  // few seconds, whichever comes first), at a random moment within the next few milliseconds.
  void BurstAndKill(int cycle, int kill_after, std::mt19937& rng) {
    std::atomic<bool> killing{false}, stop{false};
    std::vector<std::unique_ptr<Writer>> writers;
    for (int t = 0; t < kThreads; ++t) {
      writers.push_back(std::make_unique<Writer>(
          cycle, t, t % 2 ? daemon_->TcpClient() : daemon_->UnixClient(), ledger_, killing, stop));
    }
    int acks_before = ledger_.acks();
    auto started = Clock::now();
    std::vector<std::thread> threads;
    for (auto& w : writers) threads.emplace_back([&w] { w->Run(); });
    auto deadline = Clock::now() + std::chrono::seconds(5);
    while (ledger_.acks() - acks_before < kill_after && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20000));
    int acks_at_kill = ledger_.acks() - acks_before;
    killing = true;
    daemon_->Kill();
    stop = true;
    for (auto& t : threads) t.join();
    // Without a real burst the kill tested nothing.
    EXPECT_GE(acks_at_kill, 100) << "cycle " << cycle << ": too few writes before the kill";
    std::cout << fmt::format(
        "[ cycle {} ] killed after {} acknowledged writes in {} ms\n", cycle, acks_at_kill,
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count());
  }

  // Checks the restarted daemon against the ledger.
  void Verify(int cycle) {
    SCOPED_TRACE(fmt::format("after kill {}", cycle));
    for (const std::string& p : ledger_.problems()) ADD_FAILURE() << p;
    EXPECT_EQ(daemon_->token(), token_) << "the restart replaced the admin token";

    http::Client unix_client(daemon_->UnixClient());
    http::Client tcp_client(daemon_->TcpClient());
    auto health = tcp_client.Request("GET", "/v1/vms");
    ASSERT_TRUE(health) << health.error().message;
    ASSERT_EQ(health->status, 200) << "the old token no longer works: " << health->body;

    auto listed = unix_client.Request("GET", "/v1/vms");
    ASSERT_TRUE(listed) << listed.error().message;
    ASSERT_EQ(listed->status, 200) << listed->body;
    std::map<std::string, json> stored;
    json list = json::parse(listed->body);
    for (const json& vm : list["vms"]) stored[vm["name"].get<std::string>()] = vm;

    const std::map<std::string, VmLedger> ledger = ledger_.vms();
    int acked_creates = 0, acked_edits_checked = 0;
    for (const auto& [name, l] : ledger) {
      auto it = stored.find(name);
      if (l.delete_acked) {
        EXPECT_EQ(it, stored.end()) << name << ": its delete was acknowledged, yet it is back";
        continue;
      }
      if (!l.acked_id.empty()) ++acked_creates;
      if (it == stored.end()) {
        EXPECT_TRUE(l.acked_id.empty() || l.delete_sent)
            << name << ": its create was acknowledged (id " << l.acked_id << "), yet it is gone";
        continue;
      }
      const json& vm = it->second;
      if (!l.acked_id.empty()) {
        EXPECT_EQ(vm["id"], l.acked_id) << name << ": the id changed";
      }
      int64_t version = vm["version"].get<int64_t>();
      std::string cmdline = vm["cmdline"].get<std::string>();
      int64_t memory = vm["memory_mib"].get<int64_t>();
      EXPECT_GE(version, l.acked_version)
          << name << ": the acknowledged write that made version " << l.acked_version
          << " (cmdline " << l.acked_cmdline << ") is lost";
      if (version == l.acked_version) {
        ++acked_edits_checked;
        EXPECT_EQ(cmdline, l.acked_cmdline) << name << " at version " << version;
        EXPECT_EQ(memory, l.acked_memory) << name << " at version " << version;
      }
      // Whatever is stored is the whole of one request that was sent.
      auto sent = l.sent.find(cmdline);
      if (sent == l.sent.end()) {
        ADD_FAILURE() << name << ": cmdline '" << cmdline << "' was never sent for this VM";
      } else {
        EXPECT_EQ(memory, sent->second) << name << ": memory_mib does not belong with cmdline '"
                                        << cmdline << "': a half-applied edit";
      }
    }
    EXPECT_GE(acked_creates, kSharedVms);
    for (const auto& [name, vm] : stored) {
      EXPECT_TRUE(ledger.count(name)) << name << ": a VM no client ever asked for";
    }

    // Each stored VM reads back whole, and its history is consistent with its version: every
    // edit bumped the version by one in the same transaction that logged it.
    for (const auto& [name, vm] : stored) {
      auto got = unix_client.Request("GET", "/v1/vms/" + name);
      ASSERT_TRUE(got) << got.error().message;
      ASSERT_EQ(got->status, 200) << name << ": " << got->body;
      EXPECT_EQ(json::parse(got->body), vm) << name << ": GET and the list disagree";
      auto events = unix_client.Request("GET", "/v1/vms/" + name + "/events?limit=10000");
      ASSERT_TRUE(events) << events.error().message;
      ASSERT_EQ(events->status, 200) << name << ": " << events->body;
      int created = 0, edited = 0;
      json history = json::parse(events->body);
      for (const json& e : history["events"]) {
        created += e["type"] == "created";
        edited += e["type"] == "edited";
      }
      EXPECT_EQ(created, 1) << name;
      EXPECT_EQ(edited, vm["version"].get<int64_t>() - 1)
          << name << ": " << edited << " edit events for version " << vm["version"];
    }
    std::cout << fmt::format(
        "[ cycle {} ] {} VMs stored; {} acknowledged creates and {} latest acknowledged edits "
        "checked\n",
        cycle, stored.size(), acked_creates, acked_edits_checked);
  }

  TempDir dir_;
  std::filesystem::path data_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::string token_;
  Ledger ledger_;
};

TEST_F(DurabilityTest, SigkillDuringConcurrentWritesLosesNoAcknowledgedWrite) {
  std::random_device seed;
  std::mt19937 rng(seed());
  for (int cycle = 1; cycle <= kCycles; ++cycle) {
    int kill_after = 200 + static_cast<int>(rng() % 800);
    BurstAndKill(cycle, kill_after, rng);
    ASSERT_FALSE(daemon_->running());

    std::string integrity = IntegrityOfCopy(data_, dir_.path() / "copy");
    EXPECT_EQ(integrity, "ok") << "the store is corrupt after the kill";

    StartDaemon();
    ASSERT_NE(daemon_, nullptr) << "hearthd does not start on the store the kill left";
    Verify(cycle);
    if (HasFailure()) return;  // the next cycles would only repeat the findings
  }
}

}  // namespace
}  // namespace hearth::testing

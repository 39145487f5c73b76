// Fakes of metering's I/O boundaries: the host counters (UsageReader) and a ClickHouse server
// (ClickHouseTransport) that understands the statements hearth sends and can fail like the real
// one: down, an insert applied without an answer, or an error reply.
#pragma once

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "metering/clickhouse_transport.h"
#include "metering/usage_reader.h"

namespace hearth::testing {

class FakeUsageReader final : public metering::UsageReader {
 public:
  metering::VmReading Read(const VmRecord& vm) override;
  // What Read returns for VM `vm_id`: process, stats and disks only while the record has a pid
  // (the process is the record's unless set here); the tap always.
  void Set(const std::string& vm_id, metering::VmReading reading);
  int reads() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, metering::VmReading> readings_;
  int reads_ = 0;
};

class FakeClickHouse final : public metering::ClickHouseTransport {
 public:
  enum class Mode {
    kUp,
    kDown,         // no connection: unavailable, nothing happens
    kLoseReply,    // inserts are applied, but the answer is lost (unavailable)
    kServerError,  // HTTP 500 "Code: 241 ... Memory limit", nothing happens
    kRefuseBatch,  // an insert containing `refused_batch` gets Code 27 (cannot parse)
  };
  Result<metering::ClickHouseReply> Execute(std::string_view sql, std::string_view data) override;
  std::string Describe() const override { return "fake://clickhouse"; }

  void SetMode(Mode mode) {
    std::lock_guard lock(mu_);
    mode_ = mode;
  }
  void RefuseBatch(std::string batch) {
    std::lock_guard lock(mu_);
    mode_ = Mode::kRefuseBatch;
    refused_batch_ = std::move(batch);
  }
  // Drops the tables (as an operator might).
  void DropTables();
  // Every row inserted into `table` ("samples", "events"), duplicates included.
  std::vector<nlohmann::json> Rows(const std::string& table) const;
  int inserts() const;
  int statements() const;
  int schema_version() const;

 private:
  mutable std::mutex mu_;
  Mode mode_ = Mode::kUp;
  std::string refused_batch_;
  bool database_ = false;
  std::map<std::string, bool> tables_;
  int version_ = 0;
  std::map<std::string, std::vector<nlohmann::json>> rows_;
  int inserts_ = 0, statements_ = 0;
};

}  // namespace hearth::testing

#include "fakes/fake_metering.h"

#include <fmt/format.h>

namespace hearth::testing {

using nlohmann::json;

metering::VmReading FakeUsageReader::Read(const VmRecord& vm) {
  std::lock_guard lock(mu_);
  ++reads_;
  auto it = readings_.find(vm.id);
  if (it == readings_.end()) return {};
  metering::VmReading r = it->second;
  if (vm.pid) {
    if (!r.process) r.process = hv::ProcessId{*vm.pid, vm.pid_start};
  } else {
    r.process.reset();
    r.stats.reset();
    r.disks.reset();
  }
  return r;
}

void FakeUsageReader::Set(const std::string& vm_id, metering::VmReading reading) {
  std::lock_guard lock(mu_);
  readings_[vm_id] = std::move(reading);
}

int FakeUsageReader::reads() const {
  std::lock_guard lock(mu_);
  return reads_;
}

namespace {

// The table a statement is about ("INSERT INTO db.samples ..." -> "samples").
std::string TableOf(std::string_view sql) {
  for (const char* t : {"samples", "events", "schema_versions"}) {
    if (sql.find(fmt::format(".{}", t)) != std::string_view::npos) return t;
  }
  return "";
}

metering::ClickHouseReply Error(int status, int code, std::string_view what) {
  return {status, fmt::format("Code: {}, e.displayText() = DB::Exception: {}", code, what)};
}

}  // namespace

Result<metering::ClickHouseReply> FakeClickHouse::Execute(std::string_view sql,
                                                          std::string_view data) {
  std::lock_guard lock(mu_);
  ++statements_;
  if (mode_ == Mode::kDown) {
    return Fail(Code::kUnavailable, "cannot reach ClickHouse at fake: Connection refused");
  }
  bool insert = sql.starts_with("INSERT INTO");
  if (mode_ == Mode::kServerError && insert) return Error(500, 241, "Memory limit exceeded");
  if (sql.starts_with("CREATE DATABASE")) {
    database_ = true;
    return metering::ClickHouseReply{200, ""};
  }
  std::string table = TableOf(sql);
  if (sql.starts_with("CREATE TABLE")) {
    if (!database_) return Error(404, 81, "Database hearth doesn't exist");
    tables_[table] = true;
    return metering::ClickHouseReply{200, ""};
  }
  if (!tables_[table]) return Error(404, 60, fmt::format("Table hearth.{} doesn't exist", table));
  if (table == "schema_versions") {
    if (insert) {
      version_ = std::atoi(std::string(sql.substr(sql.find("SELECT ") + 7)).c_str());
      return metering::ClickHouseReply{200, ""};
    }
    return metering::ClickHouseReply{200, fmt::format("{}\n", version_)};
  }
  if (insert) {
    if (mode_ == Mode::kRefuseBatch && data.find(refused_batch_) != std::string_view::npos) {
      return Error(500, 27, "Cannot parse input");
    }
    size_t pos = 0;
    while (pos < data.size()) {
      size_t end = data.find('\n', pos);
      if (end == std::string_view::npos) end = data.size();
      if (end > pos) rows_[table].push_back(json::parse(data.substr(pos, end - pos)));
      pos = end + 1;
    }
    ++inserts_;
    if (mode_ == Mode::kLoseReply) return Fail(Code::kUnavailable, "ClickHouse timed out");
    return metering::ClickHouseReply{200, ""};
  }
  if (sql.starts_with("SELECT batch, count()")) {
    std::map<std::string, int> counts;
    for (const auto& row : rows_[table]) {
      std::string b = row.value("batch", "");
      if (sql.find("'" + b + "'") != std::string_view::npos) ++counts[b];
    }
    std::string out;
    for (const auto& [b, n] : counts) out += fmt::format("{}\t{}\n", b, n);
    return metering::ClickHouseReply{200, out};
  }
  return Error(400, 62, "the fake does not know this statement");
}

void FakeClickHouse::DropTables() {
  std::lock_guard lock(mu_);
  tables_.clear();
  version_ = 0;
}

std::vector<json> FakeClickHouse::Rows(const std::string& table) const {
  std::lock_guard lock(mu_);
  auto it = rows_.find(table);
  return it == rows_.end() ? std::vector<json>{} : it->second;
}

int FakeClickHouse::inserts() const {
  std::lock_guard lock(mu_);
  return inserts_;
}

int FakeClickHouse::statements() const {
  std::lock_guard lock(mu_);
  return statements_;
}

int FakeClickHouse::schema_version() const {
  std::lock_guard lock(mu_);
  return version_;
}

}  // namespace hearth::testing

#include "metering/spool.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace hearth::metering {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kSuffix = ".jsonl";
constexpr std::string_view kTempPrefix = ".tmp-";

Status FsyncPath(const fs::path& path, int flags) {
  int fd = open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) {
    return Fail(Code::kUnavailable, fmt::format("opening {}: {}", path.string(), strerror(errno)));
  }
  int rc = fsync(fd);
  int err = errno;
  close(fd);
  if (rc != 0) {
    return Fail(Code::kUnavailable, fmt::format("fsync {}: {}", path.string(), strerror(err)));
  }
  return Ok();
}

// Writes `body` to `path` atomically: temporary file, rename; with `durable`, also fsyncs the
// file before and the directory after the rename.
Status WriteAtomically(const fs::path& path, std::string_view body, bool durable) {
  fs::path tmp = path.parent_path() / (std::string(kTempPrefix) + path.filename().string());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(body.data(), static_cast<std::streamsize>(body.size()));
    out.flush();
    if (!out) {
      return Fail(Code::kUnavailable, fmt::format("writing {}: {}", tmp.string(), strerror(errno)));
    }
  }
  if (durable) {
    if (auto s = FsyncPath(tmp, O_RDONLY); !s) return s;
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    return Fail(Code::kUnavailable, fmt::format("renaming {}: {}", tmp.string(), ec.message()));
  }
  return durable ? FsyncPath(path.parent_path(), O_RDONLY | O_DIRECTORY) : Ok();
}

// "samples-0000000000000001-0000000000000020" -> batch; nullopt for other names.
std::optional<SpoolBatch> ParseName(const std::string& stem) {
  SpoolBatch b;
  std::string rest;
  if (stem.rfind("samples-", 0) == 0) {
    b.table = ChTable::kSamples;
    rest = stem.substr(8);
  } else if (stem.rfind("events-", 0) == 0) {
    b.table = ChTable::kEvents;
    rest = stem.substr(7);
  } else {
    return std::nullopt;
  }
  if (std::sscanf(rest.c_str(), "%ld-%ld", &b.first, &b.last) != 2) return std::nullopt;
  b.name = stem;
  return b;
}

bool Before(const SpoolBatch& a, const SpoolBatch& b) { return a.name < b.name; }

}  // namespace

Result<std::unique_ptr<Spool>> Spool::Open(fs::path dir, int64_t limit_bytes) {
  std::error_code ec;
  fs::create_directories(dir / "rejected", ec);
  if (ec) {
    return Fail(Code::kUnavailable,
                fmt::format("creating the ClickHouse spool {}: {}", dir.string(), ec.message()));
  }
  std::unique_ptr<Spool> spool(new Spool(std::move(dir), limit_bytes));
  spool->Scan();
  return spool;
}

std::string Spool::BatchName(ChTable table, int64_t first, int64_t last) {
  return fmt::format("{}-{:016}-{:016}", TableName(table), first, last);
}

fs::path Spool::File(const SpoolBatch& b) const { return dir_ / (b.name + std::string(kSuffix)); }

void Spool::Scan() {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    std::string file = entry.path().filename().string();
    if (file.rfind(kTempPrefix, 0) == 0) {
      fs::remove(entry.path(), ec);  // a write a crash cut short; its rows are spooled again
      continue;
    }
    if (file == "marks") {
      std::ifstream in(entry.path());
      nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
      if (j.is_object()) {
        marks_ = SpoolMarks{j.value("samples", int64_t{0}), j.value("events", int64_t{0})};
      }
      continue;
    }
    if (!entry.is_regular_file() || !file.ends_with(kSuffix)) continue;
    auto batch = ParseName(file.substr(0, file.size() - kSuffix.size()));
    if (!batch) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::string line;
    while (std::getline(in, line)) ++batch->rows;
    batch->bytes = static_cast<int64_t>(entry.file_size(ec));
    batches_.push_back(*batch);
  }
  std::sort(batches_.begin(), batches_.end(), Before);
}

Status Spool::Write(ChTable table, int64_t first, int64_t last, const std::string& body,
                    int64_t rows) {
  SpoolBatch b;
  b.table = table;
  b.first = first;
  b.last = last;
  b.name = BatchName(table, first, last);
  b.rows = rows;
  b.bytes = static_cast<int64_t>(body.size());
  if (auto s = WriteAtomically(File(b), body, true); !s) {
    return Fail(s.error().Wrap("writing to the ClickHouse spool"));
  }
  std::lock_guard lock(mu_);
  std::erase_if(batches_, [&](const SpoolBatch& x) { return x.name == b.name; });
  batches_.insert(std::upper_bound(batches_.begin(), batches_.end(), b, Before), b);
  int64_t total = 0;
  for (const auto& x : batches_) total += x.bytes;
  // Over the limit: ClickHouse has been away for long; keep the newest rows.
  while (total > limit_ && batches_.size() > 1) {
    // Samples go first: they are the bulk, and one lost sample loses less than an event.
    auto droppable = [&](const SpoolBatch& x, bool samples_only) {
      return x.name != b.name && (!samples_only || x.table == ChTable::kSamples);
    };
    auto oldest = std::find_if(batches_.begin(), batches_.end(),
                               [&](const SpoolBatch& x) { return droppable(x, true); });
    if (oldest == batches_.end()) {
      oldest = std::find_if(batches_.begin(), batches_.end(),
                            [&](const SpoolBatch& x) { return droppable(x, false); });
    }
    if (oldest == batches_.end()) break;
    spdlog::error(
        "metering: the ClickHouse spool {} is over its limit of {} bytes; dropping "
        "{} rows of batch {}",
        dir_.string(), limit_, oldest->rows, oldest->name);
    std::error_code ec;
    fs::remove(File(*oldest), ec);
    dropped_rows_ += oldest->rows;
    total -= oldest->bytes;
    batches_.erase(oldest);
  }
  return Ok();
}

std::vector<SpoolBatch> Spool::List() const {
  std::lock_guard lock(mu_);
  return batches_;
}

Result<std::string> Spool::Read(const SpoolBatch& batch) const {
  std::ifstream in(File(batch), std::ios::binary);
  if (!in) {
    return Fail(Code::kNotFound,
                fmt::format("reading {}: {}", File(batch).string(), strerror(errno)));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void Spool::Remove(const SpoolBatch& batch) {
  std::error_code ec;
  fs::remove(File(batch), ec);
  std::lock_guard lock(mu_);
  std::erase_if(batches_, [&](const SpoolBatch& x) { return x.name == batch.name; });
}

void Spool::Reject(const SpoolBatch& batch) {
  std::error_code ec;
  fs::rename(File(batch), dir_ / "rejected" / File(batch).filename(), ec);
  if (ec) fs::remove(File(batch), ec);
  std::lock_guard lock(mu_);
  std::erase_if(batches_, [&](const SpoolBatch& x) { return x.name == batch.name; });
}

std::optional<SpoolMarks> Spool::marks() const {
  std::lock_guard lock(mu_);
  return marks_;
}

Status Spool::SetMarks(const SpoolMarks& marks) {
  nlohmann::json j = {{"samples", marks.samples}, {"events", marks.events}};
  // Not fsynced: marks that lag behind after a power loss only make CatchUp spool some rows
  // again, which ClickHouse keeps once.
  if (auto s = WriteAtomically(dir_ / "marks", j.dump(), false); !s) {
    return Fail(s.error().Wrap("writing the ClickHouse spool's marks"));
  }
  std::lock_guard lock(mu_);
  marks_ = marks;
  return Ok();
}

int64_t Spool::bytes() const {
  std::lock_guard lock(mu_);
  int64_t total = 0;
  for (const auto& b : batches_) total += b.bytes;
  return total;
}

int64_t Spool::rows() const {
  std::lock_guard lock(mu_);
  int64_t total = 0;
  for (const auto& b : batches_) total += b.rows;
  return total;
}

int64_t Spool::dropped_rows() const {
  std::lock_guard lock(mu_);
  return dropped_rows_;
}

}  // namespace hearth::metering

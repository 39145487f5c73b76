// Spool: rows on their way to ClickHouse, on disk (Paths::clickhouse_spool), so that nothing is
// lost while ClickHouse is down or slow, or hearthd restarts.
//
// A batch is one file `<table>-<first>-<last>.jsonl` holding JSONEachRow lines for one table,
// ready to POST; first and last are the local seqs of its rows (samples: their seq in the local
// store; events: the node's event seq), zero-padded so that names sort oldest first per table. The
// file's stem is also the `batch` column of its rows. A batch is written to a temporary name,
// fsynced and renamed: a file with a batch name is whole. `marks` records the highest seq spooled
// per table (written after the batch), so that a restarted hearthd hands the spool what it missed
// and nothing else; a batch spooled again gets the same name and replaces itself.
// `rejected/` keeps batches ClickHouse refused as unparsable, for a person to look at.
#pragma once

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "metering/clickhouse_schema.h"

namespace hearth::metering {

struct SpoolBatch {
  ChTable table = ChTable::kSamples;
  int64_t first = 0, last = 0;
  std::string name;  // the file's stem, also the rows' `batch`
  int64_t rows = 0;
  int64_t bytes = 0;
};

struct SpoolMarks {
  int64_t samples = 0, events = 0;
};

// Thread-safe.
class Spool {
 public:
  // Creates `dir` if needed; removes temporary files a crash left.
  static Result<std::unique_ptr<Spool>> Open(std::filesystem::path dir, int64_t limit_bytes);

  static std::string BatchName(ChTable table, int64_t first, int64_t last);

  // Writes a batch durably; `body` holds `rows` lines. When the spool would pass its byte limit,
  // the oldest batches are dropped first (counted in dropped_rows) and the error is logged.
  Status Write(ChTable table, int64_t first, int64_t last, const std::string& body, int64_t rows);
  // The batches, oldest first per table (events, then samples).
  std::vector<SpoolBatch> List() const;
  Result<std::string> Read(const SpoolBatch& batch) const;
  void Remove(const SpoolBatch& batch);
  // Moves a batch ClickHouse refuses for good to rejected/.
  void Reject(const SpoolBatch& batch);

  // nullopt before the first marks were written.
  std::optional<SpoolMarks> marks() const;
  Status SetMarks(const SpoolMarks& marks);

  int64_t bytes() const;
  int64_t rows() const;
  int64_t dropped_rows() const;
  const std::filesystem::path& dir() const { return dir_; }

 private:
  Spool(std::filesystem::path dir, int64_t limit) : dir_(std::move(dir)), limit_(limit) {}
  std::filesystem::path File(const SpoolBatch& b) const;
  void Scan();  // fills batches_ from the directory (Open)

  std::filesystem::path dir_;
  int64_t limit_;
  mutable std::mutex mu_;
  std::vector<SpoolBatch> batches_;  // sorted by name
  std::optional<SpoolMarks> marks_;
  int64_t dropped_rows_ = 0;
};

}  // namespace hearth::metering

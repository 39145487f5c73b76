#include "metering/clickhouse_sink.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <map>

namespace hearth::metering {
namespace {

// Codes of ClickHouse errors that mean the tables are gone (UNKNOWN_TABLE, UNKNOWN_DATABASE).
bool SchemaMissing(std::string_view body) {
  int code = ExceptionCode(body);
  return code == 60 || code == 81;
}

Error ReplyError(std::string_view what, const ClickHouseReply& r) {
  return Error{Code::kUnavailable,
               fmt::format("clickhouse: {}: HTTP {}: {}", what, r.status, r.body.substr(0, 300))};
}

}  // namespace

ClickHouseSink::ClickHouseSink(ClickHouseTransport& transport, Spool& spool,
                               ClickHouseSinkOptions options)
    : transport_(transport), spool_(spool), options_(std::move(options)) {}

ClickHouseSink::~ClickHouseSink() { Stop(); }

Status ClickHouseSink::Write(const std::vector<StoredSample>& samples,
                             const std::vector<UsageEvent>& events) {
  std::lock_guard lock(write_mu_);
  SpoolMarks marks = spool_.marks().value_or(SpoolMarks{});
  // Rows at or below the marks are spooled already (CatchUp raced a tick): skip them.
  std::string body;
  int64_t first = 0, last = 0, rows = 0;
  std::string name;
  auto start = [&](ChTable table, int64_t lo, int64_t hi) {
    body.clear();
    rows = 0;
    first = lo;
    last = hi;
    name = Spool::BatchName(table, lo, hi);
  };
  std::vector<const StoredSample*> new_samples;
  for (const auto& s : samples) {
    if (s.seq > marks.samples) new_samples.push_back(&s);
  }
  if (!new_samples.empty()) {
    start(ChTable::kSamples, new_samples.front()->seq, new_samples.back()->seq);
    for (const StoredSample* s : new_samples) {
      body += SampleRow(s->sample, options_.node, name);
      ++rows;
    }
    if (auto s = spool_.Write(ChTable::kSamples, first, last, body, rows); !s) return s;
    marks.samples = last;
  }
  std::vector<const UsageEvent*> new_events;
  for (const auto& e : events) {
    if (e.seq > marks.events) new_events.push_back(&e);
  }
  if (!new_events.empty()) {
    start(ChTable::kEvents, new_events.front()->seq, new_events.back()->seq);
    for (const UsageEvent* e : new_events) {
      body += EventRow(*e, options_.node, name);
      ++rows;
    }
    if (auto s = spool_.Write(ChTable::kEvents, first, last, body, rows); !s) return s;
    marks.events = last;
  }
  if (!new_samples.empty() || !new_events.empty()) {
    if (auto s = spool_.SetMarks(marks); !s) return s;
    std::lock_guard lock(mu_);  // so that the sender cannot miss the wake-up
    cv_.notify_all();
  }
  return Ok();
}

Status ClickHouseSink::CatchUp(UsageStore& local, int64_t events_cursor) {
  std::optional<SpoolMarks> marks = spool_.marks();
  auto last = local.LastSampleSeq();
  if (!last) return Fail(last.error());
  if (!marks || marks->samples > *last || marks->events > events_cursor) {
    // A spool never used: ClickHouse gets what is metered from now on. Marks beyond the local
    // store belong to another database (state.db was replaced): they would hide its rows.
    if (marks) {
      spdlog::warn(
          "metering: the ClickHouse spool's marks ({}, {}) are beyond the local store "
          "({}, {}); starting them over",
          marks->samples, marks->events, *last, events_cursor);
    }
    std::lock_guard lock(write_mu_);
    return spool_.SetMarks(SpoolMarks{*last, events_cursor});
  }
  constexpr int kChunk = 10'000;
  while (true) {
    auto samples = local.SamplesAfter(spool_.marks()->samples, kChunk);
    if (!samples) return Fail(samples.error());
    if (samples->empty()) break;
    if (auto s = Write(*samples, {}); !s) return s;
  }
  while (true) {
    auto events = local.EventsAfter(spool_.marks()->events, kChunk);
    if (!events) return Fail(events.error());
    if (events->empty()) break;
    if (auto s = Write({}, *events); !s) return s;
  }
  return Ok();
}

Status ClickHouseSink::EnsureSchema() {
  const std::string& db = options_.database;
  for (const auto& sql : ClickHouseBootstrap(db)) {
    auto r = transport_.Execute(sql);
    if (!r) return Fail(r.error());
    if (r->status != 200) return Fail(ReplyError("creating the schema", *r));
  }
  auto v = transport_.Execute(SchemaVersionQuery(db));
  if (!v) return Fail(v.error());
  if (v->status != 200) return Fail(ReplyError("reading the schema version", *v));
  int version = 0;
  std::from_chars(v->body.data(), v->body.data() + v->body.size(), version);
  if (version > kClickHouseSchemaVersion) {
    return Fail(Code::kFailedPrecondition,
                fmt::format("clickhouse {}: schema version {} is newer than this hearthd's ({}); "
                            "upgrade hearthd",
                            transport_.Describe(), version, kClickHouseSchemaVersion));
  }
  for (int next = version + 1; next <= kClickHouseSchemaVersion; ++next) {
    for (const auto& sql : ClickHouseMigration(next, db)) {
      auto r = transport_.Execute(sql);
      if (!r) return Fail(r.error());
      if (r->status != 200) return Fail(ReplyError(fmt::format("migrating to {}", next), *r));
    }
    auto r = transport_.Execute(
        fmt::format("INSERT INTO {}.schema_versions SELECT {}, now()", db, next));
    if (!r) return Fail(r.error());
    if (r->status != 200) return Fail(ReplyError("recording the schema version", *r));
    spdlog::info("metering: ClickHouse {} is at schema version {}", transport_.Describe(), next);
  }
  std::lock_guard lock(mu_);
  schema_ready_ = stats_.schema_ready = true;
  return Ok();
}

Status ClickHouseSink::SendGroup(std::vector<SpoolBatch> group) {
  ChTable table = group.front().table;
  std::vector<std::string> unsure;
  {
    std::lock_guard lock(mu_);
    for (const auto& b : group) {
      if (uncertain_.count(b.name)) unsure.push_back(b.name);
    }
  }
  if (!unsure.empty()) {
    // An insert of these got no answer: send again only what did not arrive whole.
    auto r = transport_.Execute(BatchCountQuery(options_.database, table, options_.node, unsure));
    if (!r) return Fail(r.error());
    if (r->status != 200) return Fail(ReplyError("checking a batch", *r));
    std::map<std::string, int64_t> arrived;
    std::string_view body = r->body;
    while (!body.empty()) {
      size_t nl = body.find('\n');
      std::string_view line = body.substr(0, nl);
      body = nl == std::string_view::npos ? std::string_view{} : body.substr(nl + 1);
      size_t tab = line.find('\t');
      if (tab == std::string_view::npos) continue;
      int64_t n = 0;
      std::from_chars(line.data() + tab + 1, line.data() + line.size(), n);
      arrived[std::string(line.substr(0, tab))] = n;
    }
    std::vector<SpoolBatch> rest;
    for (const auto& b : group) {
      if (arrived.count(b.name) && arrived[b.name] >= b.rows) {
        spool_.Remove(b);
        std::lock_guard lock(mu_);
        uncertain_.erase(b.name);
        stats_.rows_sent += b.rows;
      } else {
        rest.push_back(b);
      }
    }
    group = std::move(rest);
    if (group.empty()) return Ok();
  }
  std::string body;
  for (const auto& b : group) {
    auto text = spool_.Read(b);
    if (!text) {
      spool_.Remove(b);  // gone from under us: nothing to send
      return Fail(text.error());
    }
    body += *text;
  }
  auto r = transport_.Execute(InsertStatement(options_.database, table), body);
  std::lock_guard lock(mu_);
  if (r && r->status == 200) {
    for (const auto& b : group) {
      spool_.Remove(b);
      uncertain_.erase(b.name);
      stats_.rows_sent += b.rows;
    }
    ++stats_.inserts;
    return Ok();
  }
  if (r && SchemaMissing(r->body)) {
    schema_ready_ = stats_.schema_ready = false;  // nothing was inserted
    return Fail(ReplyError("inserting", *r));
  }
  if (r && IsPermanentInsertError(r->body)) {
    if (group.size() > 1) {
      single_until_ = group.back().name;  // find the bad batch: one at a time
    } else {
      spdlog::error("metering: ClickHouse refused batch {} for good; moved to {}/rejected: {}",
                    group.front().name, spool_.dir().string(), r->body.substr(0, 300));
      spool_.Reject(group.front());
      stats_.rejected_rows += group.front().rows;
    }
    return Fail(ReplyError("inserting", *r));
  }
  // No answer, or an error after which some rows may have been written.
  for (const auto& b : group) uncertain_.insert(b.name);
  return r ? Fail(ReplyError("inserting", *r)) : Fail(r.error());
}

Status ClickHouseSink::SendOnce() {
  Status s = SendRound();
  if (!s) Failed(s.error());
  return s;
}

Status ClickHouseSink::SendRound() {
  bool ready;
  {
    std::lock_guard lock(mu_);
    ready = schema_ready_;
  }
  if (!ready) {
    if (auto s = EnsureSchema(); !s) return s;
  }
  std::vector<SpoolBatch> all = spool_.List();
  if (all.empty()) return Ok();
  std::vector<SpoolBatch> group;
  int64_t rows = 0, bytes = 0;
  std::string single;
  {
    std::lock_guard lock(mu_);
    single = single_until_;
  }
  for (const auto& b : all) {
    if (b.table != all.front().table) break;
    if (!group.empty() && (rows + b.rows > options_.max_batch_rows ||
                           bytes + b.bytes > options_.max_batch_bytes || b.name <= single)) {
      break;
    }
    group.push_back(b);
    rows += b.rows;
    bytes += b.bytes;
    if (b.name <= single) break;
  }
  if (!single.empty() && group.back().name >= single) {
    std::lock_guard lock(mu_);
    single_until_.clear();
  }
  return SendGroup(std::move(group));
}

void ClickHouseSink::Failed(const Error& e) {
  std::lock_guard lock(mu_);
  ++stats_.errors;
  if (stats_.last_error != e.message) {
    spdlog::warn("metering: {}; rows stay in the spool and are sent when it answers", e.message);
  }
  stats_.last_error = e.message;
}

void ClickHouseSink::Loop() {
  Duration backoff = options_.retry_min;
  std::unique_lock lock(mu_);
  while (!stop_) {
    lock.unlock();
    Status s = SendOnce();
    bool backlog = spool_.rows() >= options_.max_batch_rows;
    bool empty = spool_.List().empty();
    lock.lock();
    if (!s) {
      cv_.wait_for(lock, backoff, [&] { return stop_; });
      backoff = std::min(backoff * 2, options_.retry_max);
      continue;
    }
    backoff = options_.retry_min;
    if (!stats_.last_error.empty()) {
      spdlog::info("metering: ClickHouse {} answers again", transport_.Describe());
      stats_.last_error.clear();
    }
    if (empty) {
      cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stop_ || !spool_.List().empty(); });
    } else if (!backlog) {
      cv_.wait_for(lock, options_.min_insert_interval, [&] { return stop_; });
    }
  }
}

void ClickHouseSink::Start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void ClickHouseSink::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

bool ClickHouseSink::Drain(Duration timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(mu_);
  while (!spool_.List().empty()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    cv_.notify_all();
    cv_.wait_for(lock, std::chrono::milliseconds(20));
  }
  return true;
}

SinkStats ClickHouseSink::stats() const {
  std::lock_guard lock(mu_);
  SinkStats s = stats_;
  s.spool_rows = spool_.rows();
  s.spool_bytes = spool_.bytes();
  s.dropped_rows = spool_.dropped_rows();
  return s;
}

}  // namespace hearth::metering

#include "metering/sampler.h"

#include <spdlog/spdlog.h>

namespace hearth::metering {
namespace {

constexpr int kEventChunk = 1000;
// Events handled in one tick at most; a backlog beyond it (a long outage of the local store) is
// worked off over the next ticks.
constexpr size_t kEventsPerTick = 100'000;

}  // namespace

Sampler::Sampler(store::StateStore& events, UsageStore& local, UsageReader& reader,
                 const Clock& clock, std::function<std::vector<VmRecord>()> vms, Metrics& metrics,
                 SamplerOptions options, ClickHouseSink* sink)
    : events_(events),
      local_(local),
      reader_(reader),
      clock_(clock),
      vms_(std::move(vms)),
      metrics_(metrics),
      options_(options),
      sink_(sink),
      accountant_(options.accountant) {}

Sampler::~Sampler() { Stop(); }

int64_t Sampler::cursor() const {
  std::lock_guard lock(tick_mu_);
  return cursor_;
}

Status Sampler::Load() {
  std::lock_guard lock(tick_mu_);
  auto state = local_.LoadState();
  if (!state) return Fail(state.error().Wrap("loading metering state"));
  if (state->begun) {
    cursor_ = state->cursor;
    accountant_.Load(std::move(state->trackers));
  } else {
    // The first start with metering: events so far are history; the VMs are metered from now.
    auto last = events_.LastEventSeq();
    if (!last) return Fail(last.error().Wrap("reading the event stream"));
    accountant_.Begin(vms_(), clock_.Now());
    TickResult begin;
    begin.trackers = accountant_.trackers();
    for (const auto& [id, _] : begin.trackers) begin.changed.insert(id);
    if (auto s = local_.Commit(TickWrite{*last, &begin}); !s) {
      return Fail(s.error().Wrap("starting metering"));
    }
    cursor_ = *last;
    spdlog::info("metering begins with {} vms", begin.trackers.size());
  }
  if (sink_) {
    if (auto s = sink_->CatchUp(local_, cursor_); !s) {
      spdlog::error("metering: handing missed rows to the ClickHouse spool: {}", s.error().message);
      sink_behind_ = true;
    }
  }
  return Ok();
}

Status Sampler::Tick() {
  std::lock_guard lock(tick_mu_);
  auto started = std::chrono::steady_clock::now();
  std::vector<store::RecordedEvent> events;
  int64_t after = cursor_;
  while (events.size() < kEventsPerTick) {
    auto chunk = events_.ListEventsAfter(after, kEventChunk);
    if (!chunk) return Fail(chunk.error().Wrap("metering: reading the event stream"));
    if (chunk->empty()) break;
    after = chunk->back().event.seq;
    events.insert(events.end(), std::make_move_iterator(chunk->begin()),
                  std::make_move_iterator(chunk->end()));
    if (chunk->size() < kEventChunk) break;
  }
  // Read after the events: every event read has a time at or before now.
  Timestamp now = clock_.Now();
  std::map<std::string, VmReading> readings;
  for (const VmRecord& vm : vms_()) readings.emplace(vm.id, reader_.Read(vm));
  TickResult result = accountant_.Tick(events, now, readings);
  bool nothing = result.samples.empty() && result.events.empty() && result.changed.empty() &&
                 result.removed.empty() && after == cursor_;
  // An idle node writes nothing: quiet VMs are sampled once a minute.
  auto seqs = nothing ? Result<std::vector<int64_t>>(std::vector<int64_t>{})
                      : local_.Commit(TickWrite{after, &result});
  if (!seqs) {
    metrics_.ObserveTickError();
    if (seqs.error().message != last_error_) {
      spdlog::error("metering: {}; the interval is sampled again next time", seqs.error().message);
      last_error_ = seqs.error().message;
    }
    return Fail(seqs.error());
  }
  last_error_.clear();
  if (sink_) {
    Status handed = Ok();
    if (sink_behind_) {
      handed = sink_->CatchUp(local_, after);
    } else {
      std::vector<StoredSample> stored;
      stored.reserve(result.samples.size());
      for (size_t i = 0; i < result.samples.size(); ++i) {
        stored.push_back(StoredSample{(*seqs)[i], result.samples[i]});
      }
      handed = sink_->Write(stored, result.events);
    }
    if (!handed && !sink_behind_) {
      spdlog::error("metering: {}; trying again next interval", handed.error().message);
    }
    sink_behind_ = !handed;
  }
  metrics_.ObserveTick(
      result, readings,
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  accountant_.Accept(result);
  cursor_ = after;
  if (!maintained_ || now - *maintained_ >= options_.maintain_every) {
    if (auto s = local_.Maintain(now, options_.raw_keep, options_.retention); !s) {
      spdlog::error("metering: {}", s.error().message);
    }
    maintained_ = now;
  }
  return Ok();
}

void Sampler::Loop() {
  // The first tick one interval after the start: Load has just written where metering begins.
  auto next = std::chrono::steady_clock::now() + options_.interval;
  std::unique_lock lock(mu_);
  while (!stop_) {
    cv_.wait_until(lock, next, [&] { return stop_; });
    if (stop_) break;
    lock.unlock();
    Tick();  // errors are logged; the next tick covers the interval
    lock.lock();
    next += options_.interval;
    auto now = std::chrono::steady_clock::now();
    if (next < now) next = now;  // fell behind (a slow tick): no burst to catch up
  }
}

void Sampler::Start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void Sampler::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace hearth::metering

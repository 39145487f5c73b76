#include "node/timer_book.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "model/lifecycle.h"

namespace hearth::node {
namespace {

bool HasTimers(const Timers& t) { return t.stop_at || t.stop_after || t.idle_timeout; }

bool Timed(const VmRecord& vm) {
  return Allows(vm.state, VmEvent::kTimerFired) && vm.running_since.has_value();
}

}  // namespace

std::vector<std::pair<std::string, std::string>> TimerBook::TapsToRead(const VmMap& vms) {
  std::vector<std::pair<std::string, std::string>> taps;
  for (const auto& [name, vm] : vms) {
    if (Timed(vm) && vm.spec.timers.idle_timeout && !vm.ip.empty()) {
      taps.emplace_back(name, net::TapName(vm.id));
    }
  }
  return taps;
}

Timestamp TimerBook::IdleBaseline(const VmRecord& vm) const {
  // Packets are known only from when they were first watched: since the VM became running, since
  // this node's timers started (after a restart), or since the record last changed (the edit that
  // gave a running VM its idle timeout), whichever is latest.
  return std::max({*vm.running_since, epoch_, vm.updated_at});
}

std::optional<DueTimer> TimerBook::Next(const VmRecord& vm) const {
  if (!Timed(vm)) return std::nullopt;
  Timestamp last_activity = IdleBaseline(vm);
  std::optional<Timestamp> retry;
  if (auto it = watches_.find(vm.name);
      it != watches_.end() && it->second.run == vm.running_since) {
    const Watch& w = it->second;
    if (w.idle_watched) last_activity = w.last_activity;
    if (w.fired_at) retry = *w.fired_at + kTimerRetry;
  }
  auto next = hearth::NextTimer(vm, last_activity);
  if (next && retry) next->at = std::max(next->at, *retry);
  return next;
}

std::optional<TimerBook::Firing> TimerBook::Check(const VmRecord& vm, const TapReadings& readings,
                                                  Timestamp now, bool busy, Pass& pass) {
  if (!Timed(vm)) return std::nullopt;
  auto later = [&](Timestamp at) { pass.next = pass.next ? std::min(*pass.next, at) : at; };
  const Timers& t = vm.spec.timers;
  auto found = watches_.find(vm.name);
  bool fresh = found == watches_.end() || found->second.run != vm.running_since;
  Watch& w = watches_[vm.name];
  if (fresh) {
    w = Watch{};
    w.run = vm.running_since;
  }
  if (t.idle_timeout && !w.idle_watched) w.last_activity = IdleBaseline(vm);
  w.idle_watched = t.idle_timeout.has_value();
  if (auto c = readings.find(vm.name); c != readings.end()) {
    if (c->second) {
      if (w.counters && *w.counters != *c->second) w.last_activity = now;
      w.counters = *c->second;
      w.read_failed = false;
    } else if (!w.read_failed) {
      w.read_failed = true;
      spdlog::warn("vm '{}': {}; its idle time counts on as if no packet passed", vm.name,
                   c->second.error().message);
    }
  }
  if (!HasTimers(t)) return std::nullopt;
  if (t.idle_timeout) pass.polling = true;
  auto next = hearth::NextTimer(vm, w.last_activity);
  if (!next) return std::nullopt;
  Timestamp at = w.fired_at ? std::max(next->at, *w.fired_at + kTimerRetry) : next->at;
  if (at > now) {
    later(at);
    return std::nullopt;
  }
  if (busy) {
    later(now + kMaxTimerSleep);  // a lifecycle job owns the VM; look again once it is done
    return std::nullopt;
  }
  w.fired_at = now;
  return Firing{vm.name, *next, DescribeFiring(*next, t)};
}

}  // namespace hearth::node

#include "hv/firecracker/metrics_reader.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace hearth::hv::firecracker {
namespace {

using nlohmann::json;

int64_t Number(const json& object, std::string_view key) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_number()) return 0;
  return it->get<int64_t>();
}

// The named device section, or else the aggregate one (`net`, `block`), or null.
const json* Section(const json& line, std::string_view prefix, std::string_view device) {
  if (auto it = line.find(fmt::format("{}_{}", prefix, device)); it != line.end()) return &*it;
  if (auto it = line.find(prefix); it != line.end()) return &*it;
  return nullptr;
}

}  // namespace

void MetricsTotals::Add(std::string_view text) {
  json line = json::parse(text, nullptr, false);
  if (!line.is_object()) {
    ++bad_lines;
    return;
  }
  ++lines;
  if (const json* net = Section(line, "net", "eth0"); net && net->is_object()) {
    net_rx_bytes += Number(*net, "rx_bytes_count");
    net_tx_bytes += Number(*net, "tx_bytes_count");
    net_rx_packets += Number(*net, "rx_packets_count");
    net_tx_packets += Number(*net, "tx_packets_count");
  }
  // Every disk: the per-drive sections, or the aggregate when there are none.
  std::vector<const json*> blocks;
  for (const auto& [key, value] : line.items()) {
    if (key.rfind("block_", 0) == 0 && value.is_object()) blocks.push_back(&value);
  }
  if (blocks.empty()) {
    if (auto it = line.find("block"); it != line.end() && it->is_object()) blocks.push_back(&*it);
  }
  for (const json* b : blocks) {
    block_read_bytes += Number(*b, "read_bytes");
    block_write_bytes += Number(*b, "write_bytes");
    block_read_ops += Number(*b, "read_count");
    block_write_ops += Number(*b, "write_count");
  }
  if (auto it = line.find("latencies_us"); it != line.end() && it->is_object()) {
    if (int64_t v = Number(*it, "full_create_snapshot"); v > 0) full_create_snapshot_us = v;
    if (int64_t v = Number(*it, "load_snapshot"); v > 0) load_snapshot_us = v;
  }
}

json MetricsTotals::ToJson() const {
  return {
      {"net_eth0",
       {{"rx_bytes", net_rx_bytes},
        {"tx_bytes", net_tx_bytes},
        {"rx_packets", net_rx_packets},
        {"tx_packets", net_tx_packets}}},
      {"block",
       {{"read_bytes", block_read_bytes},
        {"write_bytes", block_write_bytes},
        {"read_ops", block_read_ops},
        {"write_ops", block_write_ops}}},
      {"latencies_us",
       {{"full_create_snapshot", full_create_snapshot_us}, {"load_snapshot", load_snapshot_us}}},
      {"lines", lines},
      {"bad_lines", bad_lines}};
}

MetricsReader::MetricsReader() {
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  thread_ = std::thread([this] { Run(); });
}

MetricsReader::~MetricsReader() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
  thread_.join();
  for (auto& [_, s] : sources_) ::close(s.fd);
  ::close(wake_fd_);
}

Status MetricsReader::Attach(const std::string& vm_id, const std::filesystem::path& fifo) {
  // Read-write: the FIFO never reports end-of-file or hang-up when Firecracker exits, and the
  // open does not wait for a writer.
  int fd = ::open(fifo.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    return Fail(Code::kInternal,
                fmt::format("opening the metrics FIFO {}: {}", fifo.string(), strerror(errno)));
  }
  {
    std::lock_guard lock(mu_);
    auto& s = sources_[vm_id];
    if (s.fd >= 0) ::close(s.fd);
    s = Source{fd, fifo, "", {}};
  }
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof(one));
  return Ok();
}

void MetricsReader::Detach(const std::string& vm_id) {
  std::lock_guard lock(mu_);
  auto it = sources_.find(vm_id);
  if (it == sources_.end()) return;
  ::close(it->second.fd);
  sources_.erase(it);
}

bool MetricsReader::attached(const std::string& vm_id) const {
  std::lock_guard lock(mu_);
  return sources_.count(vm_id) > 0;
}

Result<MetricsTotals> MetricsReader::Totals(const std::string& vm_id) {
  std::lock_guard lock(mu_);
  auto it = sources_.find(vm_id);
  if (it == sources_.end()) {
    return Fail(Code::kNotFound, fmt::format("no metrics FIFO attached for vm {}", vm_id));
  }
  Drain(it->second);
  return it->second.totals;
}

size_t MetricsReader::pending_bytes(const std::string& vm_id) const {
  std::lock_guard lock(mu_);
  auto it = sources_.find(vm_id);
  return it == sources_.end() ? 0 : it->second.partial.size();
}

void MetricsReader::Drain(Source& s) {
  char buf[16384];
  for (size_t total = 0; total < kMaxDrainBytes;) {
    ssize_t n = ::read(s.fd, buf, sizeof(buf));
    if (n <= 0) break;
    total += static_cast<size_t>(n);
    Split(s, std::string_view(buf, static_cast<size_t>(n)));
  }
}

void MetricsReader::Split(Source& s, std::string_view chunk) {
  while (!chunk.empty()) {
    size_t nl = chunk.find('\n');
    std::string_view piece = chunk.substr(0, nl);
    if (!s.skipping && s.partial.size() + piece.size() > kMaxMetricsLineBytes) {
      s.skipping = true;  // never a line of Firecracker's: skip it, whatever follows in it
      s.partial.clear();
      s.partial.shrink_to_fit();
      ++s.totals.bad_lines;
    }
    if (!s.skipping) s.partial.append(piece);
    if (nl == std::string_view::npos) return;
    if (!s.skipping && !s.partial.empty()) s.totals.Add(s.partial);
    s.partial.clear();
    s.skipping = false;
    chunk.remove_prefix(nl + 1);
  }
}

void MetricsReader::Run() {
  for (;;) {
    std::vector<pollfd> fds = {{wake_fd_, POLLIN, 0}};
    {
      std::lock_guard lock(mu_);
      if (stop_) return;
      // A FIFO whose VM directory is gone belongs to a deleted VM.
      for (auto it = sources_.begin(); it != sources_.end();) {
        struct stat st {};
        if (::stat(it->second.path.c_str(), &st) != 0) {
          ::close(it->second.fd);
          it = sources_.erase(it);
          continue;
        }
        fds.push_back({it->second.fd, POLLIN, 0});
        ++it;
      }
    }
    int rc = poll(fds.data(), fds.size(), 5000);
    if (rc < 0 && errno != EINTR) return;
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      (void)!read(wake_fd_, &v, sizeof(v));
    }
    std::lock_guard lock(mu_);
    for (auto& [_, s] : sources_) {
      for (size_t i = 1; i < fds.size(); ++i) {
        if (fds[i].fd == s.fd && (fds[i].revents & POLLIN)) Drain(s);
      }
    }
  }
}

}  // namespace hearth::hv::firecracker

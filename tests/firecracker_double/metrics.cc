#include "firecracker_double/metrics.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace hearth::fcdouble {

using nlohmann::json;

json MetricsLine(const MetricsInput& in) {
  const uint64_t on = in.running ? 1 : 0;
  auto net_group = [&](uint64_t n) {
    return json{{"rx_bytes_count", 1000 * on * n},
                {"tx_bytes_count", 500 * on * n},
                {"rx_packets_count", 10 * on * n},
                {"tx_packets_count", 5 * on * n},
                {"rx_fails", 0},
                {"tx_fails", 0},
                {"rx_rate_limiter_throttled", 0},
                {"tx_rate_limiter_throttled", 0}};
  };
  auto block_group = [&](uint64_t n) {
    return json{{"read_bytes", 4096 * on * n},
                {"write_bytes", 8192 * on * n},
                {"read_count", 1 * on * n},
                {"write_count", 2 * on * n},
                {"flush_count", 0},
                {"activate_fails", 0},
                {"read_agg", {{"min_us", 0}, {"max_us", 0}, {"sum_us", 0}}},
                {"write_agg", {{"min_us", 0}, {"max_us", 0}, {"sum_us", 0}}}};
  };
  const uint64_t vcpus = static_cast<uint64_t>(in.vcpu_count);
  json line = {{"utc_timestamp_ms", in.utc_timestamp_ms}};
  line["net"] = net_group(in.iface_ids.size());
  for (const auto& id : in.iface_ids) line["net_" + id] = net_group(1);
  line["block"] = block_group(in.drive_ids.size());
  for (const auto& id : in.drive_ids) line["block_" + id] = block_group(1);
  line["vcpu"] = {{"exit_io_in", on * vcpus},
                  {"exit_io_out", 0},
                  {"exit_mmio_read", 0},
                  {"exit_mmio_write", on * vcpus},
                  {"failures", 0}};
  line["latencies_us"] = {{"full_create_snapshot", in.full_create_snapshot_us},
                          {"diff_create_snapshot", 0},
                          {"load_snapshot", in.load_snapshot_us},
                          {"pause_vm", in.pause_vm_us},
                          {"resume_vm", in.resume_vm_us}};
  line["vmm"] = {{"panic_count", 0}};
  line["logger"] = {{"missed_metrics_count", in.missed_metrics_count},
                    {"metrics_fails", 0},
                    {"missed_log_count", 0},
                    {"log_fails", 0}};
  return line;
}

Status MetricsSink::Open(const std::string& path) {
  std::lock_guard lock(mu_);
  int fd = ::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return Fail(Code::kFailedPrecondition,
                fmt::format("Cannot initialize the metrics system due to: Failed to open target "
                            "file {}: {} (os error {})",
                            path, std::strerror(err), err));
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  return Ok();
}

bool MetricsSink::Write(const json& line) {
  std::lock_guard lock(mu_);
  if (fd_ < 0) return false;
  std::string text = line.dump() + "\n";
  ssize_t n;
  do n = ::write(fd_, text.data(), text.size());
  while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(text.size());
}

}  // namespace hearth::fcdouble

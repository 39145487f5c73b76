// `hearth usage` output: a table for people, CSV for spreadsheets (JSON and YAML as elsewhere).
#include <fmt/format.h>

#include "cli/output.h"

namespace hearth::cli {
namespace {

using nlohmann::json;

// The report's numeric columns, in CSV order.
constexpr const char* kCsvColumns[] = {
    "cpu_seconds",     "vcpu_seconds",      "ram_gib_hours",   "snapshot_gib_hours",
    "running_seconds", "suspended_seconds", "stopped_seconds", "transition_seconds",
    "net_rx_bytes",    "net_tx_bytes",      "net_rx_packets",  "net_tx_packets",
    "disk_read_bytes", "disk_write_bytes",  "disk_read_ops",   "disk_write_ops",
    "wakes",           "wake_p50_ms",       "wake_p99_ms"};

std::string Bytes(const json& v) {
  double b = v.is_number() ? v.get<double>() : 0;
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} B", b) : fmt::format("{:.1f} {}", b, units[u]);
}

std::string Fixed(const json& v, int digits) {
  if (!v.is_number()) return "-";
  return fmt::format("{:.{}f}", v.get<double>(), digits);
}

std::vector<std::string> Cells(const json& line, const std::string& first, const std::string& vm) {
  return {first,
          vm,
          Fixed(line["cpu_seconds"], 2),
          Fixed(line["ram_gib_hours"], 4),
          Fixed(line["snapshot_gib_hours"], 4),
          Fixed(line["running_seconds"], 0),
          Fixed(line["suspended_seconds"], 0),
          Bytes(line["net_rx_bytes"]),
          Bytes(line["net_tx_bytes"]),
          Bytes(line["disk_read_bytes"]),
          Bytes(line["disk_write_bytes"]),
          fmt::format("{}", line.value("wakes", 0)),
          Fixed(line["wake_p50_ms"], 1),
          Fixed(line["wake_p99_ms"], 1)};
}

std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace

std::string UsageTable(const json& report) {
  std::vector<std::string> head = {"VM",     "CPU-S",  "RAM-GIB-H", "SNAP-GIB-H", "RUN-S",
                                   "SUSP-S", "NET-RX", "NET-TX",    "DISK-R",     "DISK-W",
                                   "WAKES",  "P50-MS", "P99-MS"};
  std::string out = fmt::format("usage {} to {} ({})\n", report.value("since", ""),
                                report.value("until", ""), report.value("source", ""));
  if (report.contains("rows")) {
    std::vector<std::vector<std::string>> rows;
    std::vector<std::string> h = head;
    h.insert(h.begin(), "START");
    rows.push_back(h);
    for (const auto& r : report["rows"]) {
      rows.push_back(Cells(r, r.value("start", ""), r.value("vm", "")));
    }
    out += FormatTable(rows) + "\n";
  }
  std::vector<std::vector<std::string>> rows = {head};
  for (const auto& v : report.value("vms", json::array())) {
    auto cells = Cells(v, "", v.value("vm", ""));
    cells.erase(cells.begin());
    rows.push_back(cells);
  }
  auto total = Cells(report.value("total", json::object()), "", "TOTAL");
  total.erase(total.begin());
  rows.push_back(total);
  return out + FormatTable(rows);
}

std::string UsageCsv(const json& report) {
  std::string out = "start,vm,vm_id";
  for (const char* c : kCsvColumns) out += fmt::format(",{}", c);
  out += "\n";
  auto line = [&](const json& l, const std::string& vm) {
    out +=
        CsvField(l.value("start", "")) + "," + CsvField(vm) + "," + CsvField(l.value("vm_id", ""));
    for (const char* c : kCsvColumns) {
      out += ",";
      if (l.contains(c) && !l[c].is_null()) out += l[c].dump();
    }
    out += "\n";
  };
  const json& lines = report.contains("rows") ? report["rows"] : report["vms"];
  for (const auto& l : lines) line(l, l.value("vm", ""));
  line(report.value("total", json::object()), "TOTAL");
  return out;
}

}  // namespace hearth::cli

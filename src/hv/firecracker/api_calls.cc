#include "hv/firecracker/api_calls.h"

#include <fmt/format.h>

#include <sstream>

namespace hearth::hv::firecracker {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

ApiCall Call(std::string method, std::string path, const json& body, std::string what,
             std::chrono::milliseconds timeout = 5s) {
  ApiCall c;
  c.request.method = std::move(method);
  c.request.path = std::move(path);
  if (!body.is_null()) c.request.body = body.dump();
  c.what = std::move(what);
  c.timeout = timeout;
  return c;
}

tl::unexpected<Error> Missing(std::string_view what) {
  return Fail(Code::kInvalidArgument, fmt::format("firecracker: {}", what));
}

}  // namespace

std::string BootArgs(std::string_view cmdline) {
  std::vector<std::string> words;
  std::istringstream in{std::string(cmdline)};
  for (std::string w; in >> w;) words.push_back(w);
  auto has_key = [&](std::string_view key) {
    for (const auto& w : words) {
      if (w == key || w.rfind(std::string(key) + "=", 0) == 0) return true;
    }
    return false;
  };
  std::string out(cmdline);
  auto add = [&](std::string_view key, std::string_view word) {
    if (has_key(key)) return;
    if (!out.empty()) out += ' ';
    out += word;
  };
  add("console", "console=ttyS0");
  add("reboot", "reboot=k");
  add("panic", "panic=1");
  add("pci", "pci=off");
  add("i8042.noaux", "i8042.noaux");
  add("i8042.nomux", "i8042.nomux");
  add("i8042.dumbkbd", "i8042.dumbkbd");
  return out;
}

namespace {

// Logger and metrics come first in every process, and only once (Firecracker refuses a second).
void AddLoggerAndMetrics(std::vector<ApiCall>& calls, const std::string& log_path,
                         const std::string& metrics_path) {
  calls.push_back(Call(
      "PUT", "/logger",
      {{"log_path", log_path}, {"level", "Info"}, {"show_level", true}, {"show_log_origin", false}},
      "configuring the logger"));
  calls.push_back(
      Call("PUT", "/metrics", {{"metrics_path", metrics_path}}, "configuring the metrics"));
}

}  // namespace

Result<std::vector<ApiCall>> BootCalls(const BootConfig& c) {
  if (c.kernel.empty()) return Missing("a kernel is required");
  if (c.vcpus < 1 || c.vcpus > 32) {
    return Missing(fmt::format("{} vCPUs: Firecracker runs 1 to 32", c.vcpus));
  }
  if (c.memory_mib <= 0) return Missing("memory must be positive");
  if (!c.tap.empty() && c.mac.empty()) return Missing("a tap needs the guest's MAC");
  if (c.log_path.empty() || c.metrics_path.empty()) {
    return Missing("the log and metrics paths are required");
  }
  std::vector<ApiCall> calls;
  AddLoggerAndMetrics(calls, c.log_path, c.metrics_path);
  json boot = {{"kernel_image_path", c.kernel}, {"boot_args", c.boot_args}};
  if (!c.initrd.empty()) boot["initrd_path"] = c.initrd;
  calls.push_back(Call("PUT", "/boot-source", boot, "configuring the boot source"));
  calls.push_back(Call("PUT", "/machine-config",
                       {{"vcpu_count", c.vcpus}, {"mem_size_mib", c.memory_mib}},
                       "configuring the machine"));
  if (!c.rootfs.empty()) {
    // With an initrd, the initramfs is the root and the disk just the first virtio-blk device;
    // without one, Firecracker appends root=/dev/vda (rw or ro) to the command line.
    calls.push_back(Call("PUT", fmt::format("/drives/{}", kRootDriveId),
                         {{"drive_id", kRootDriveId},
                          {"path_on_host", c.rootfs},
                          {"is_root_device", c.initrd.empty()},
                          {"is_read_only", c.rootfs_readonly},
                          // The default, Unsafe, drops the guest's flushes: its fsync would not
                          // reach the host's disk.
                          {"cache_type", "Writeback"}},
                         "attaching the root disk"));
  }
  if (!c.tap.empty()) {
    calls.push_back(Call("PUT", fmt::format("/network-interfaces/{}", kIfaceId),
                         {{"iface_id", kIfaceId}, {"host_dev_name", c.tap}, {"guest_mac", c.mac}},
                         fmt::format("attaching tap {}", c.tap)));
  }
  calls.push_back(
      Call("PUT", "/actions", {{"action_type", "InstanceStart"}}, "starting the instance", 30s));
  return calls;
}

std::vector<ApiCall> RestoreCalls(const RestoreConfig& c) {
  std::vector<ApiCall> calls;
  AddLoggerAndMetrics(calls, c.log_path, c.metrics_path);
  json load = {{"snapshot_path", c.snapshot_path},
               {"mem_backend", {{"backend_type", "File"}, {"backend_path", c.memory_path}}},
               {"resume_vm", false},
               {"clock_realtime", true}};
  if (!c.tap.empty()) {
    load["network_overrides"] = json::array({{{"iface_id", kIfaceId}, {"host_dev_name", c.tap}}});
  }
  calls.push_back(Call("PUT", "/snapshot/load", load, "loading the snapshot", 120s));
  return calls;
}

ApiCall Pause() { return Call("PATCH", "/vm", {{"state", "Paused"}}, "pausing the guest"); }
ApiCall Resume() { return Call("PATCH", "/vm", {{"state", "Resumed"}}, "resuming the guest"); }

ApiCall CreateSnapshot(std::string_view snapshot_path, std::string_view memory_path) {
  return Call(
      "PUT", "/snapshot/create",
      {{"snapshot_type", "Full"}, {"snapshot_path", snapshot_path}, {"mem_file_path", memory_path}},
      "creating the snapshot", 300s);
}

ApiCall SendCtrlAltDel() {
  return Call("PUT", "/actions", {{"action_type", "SendCtrlAltDel"}},
              "sending Ctrl-Alt-Del to the guest");
}

ApiCall FlushMetrics() {
  return Call("PUT", "/actions", {{"action_type", "FlushMetrics"}}, "flushing the metrics");
}

ApiCall DescribeInstance() { return Call("GET", "/", nullptr, "describing the instance", 2s); }

std::string InstanceId(const json& info) {
  if (!info.is_object()) return "";
  auto it = info.find("id");
  return it != info.end() && it->is_string() ? it->get<std::string>() : "";
}

Result<nlohmann::json> Execute(ApiTransport& transport, const ApiCall& call,
                               std::string_view vm_name) {
  std::string context = fmt::format("{} of vm '{}'", call.what, vm_name);
  auto response = transport.Send(call.request, call.timeout);
  if (!response) return Fail(response.error().Wrap(context));
  json body = response->body.empty() ? json() : json::parse(response->body, nullptr, false);
  if (response->status / 100 == 2) {
    if (body.is_discarded()) {
      return Fail(Code::kInternal,
                  fmt::format("{}: Firecracker answered {} with a body that is "
                              "not JSON: {}",
                              context, response->status, response->body.substr(0, 200)));
    }
    return body;
  }
  std::string said;
  if (body.is_object() && body.contains("fault_message") && body["fault_message"].is_string()) {
    said = body["fault_message"].get<std::string>();
  } else {
    said = fmt::format("HTTP {} {}", response->status, response->body.substr(0, 200));
  }
  return Fail(response->status / 100 == 4 ? Code::kFailedPrecondition : Code::kInternal,
              fmt::format("{}: Firecracker said: {}", context, said));
}

}  // namespace hearth::hv::firecracker

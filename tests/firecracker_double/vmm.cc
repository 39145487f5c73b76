#include "firecracker_double/vmm.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

namespace hearth::fcdouble {
namespace {

using nlohmann::json;

constexpr const char* kNotAfterBoot =
    "The requested operation is not supported after starting the microVM.";
constexpr const char* kNotBeforeBoot =
    "The requested operation is not supported before starting the microVM.";

std::string Key(const std::string& method, const std::string& tmpl) { return method + " " + tmpl; }

bool PreBootOnly(const std::string& key) {
  static const std::set<std::string> keys = {"PUT /boot-source",
                                             "PUT /machine-config",
                                             "PATCH /machine-config",
                                             "PUT /cpu-config",
                                             "PUT /drives/{drive_id}",
                                             "PUT /pmem/{id}",
                                             "PUT /network-interfaces/{iface_id}",
                                             "PUT /vsock",
                                             "PUT /entropy",
                                             "PUT /balloon",
                                             "PUT /mmds/config",
                                             "PUT /serial",
                                             "PUT /hotplug/memory",
                                             "PUT /logger",
                                             "PUT /metrics",
                                             "PUT /snapshot/load"};
  return keys.contains(key);
}

bool PostBootOnly(const std::string& key) {
  static const std::set<std::string> keys = {"PATCH /drives/{drive_id}",
                                             "PATCH /network-interfaces/{iface_id}",
                                             "PATCH /pmem/{id}",
                                             "PATCH /vm",
                                             "PUT /snapshot/create",
                                             "GET /balloon/statistics",
                                             "PATCH /balloon/hinting/start",
                                             "PATCH /balloon/hinting/stop",
                                             "GET /balloon/hinting/status",
                                             "PATCH /hotplug/memory"};
  return keys.contains(key);
}

// Firecracker's check of ids in paths: alphanumeric characters and underscores.
bool ValidResourceId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

ApiResponse Json(int status, const json& body) {
  ApiResponse r;
  r.status = status;
  r.body = body.dump();
  return r;
}

}  // namespace

ApiResponse NoContent() { return ApiResponse{}; }

uint64_t MicrosSince(std::chrono::steady_clock::time_point start) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                                  start)
                .count();
  return static_cast<uint64_t>(us < 1 ? 1 : us);
}

Vmm::Vmm(const SwaggerSpec& spec, VmmOptions options) : spec_(spec), options_(std::move(options)) {
  machine_config_ = {{"vcpu_count", 1},
                     {"mem_size_mib", 128},
                     {"smt", false},
                     {"track_dirty_pages", false},
                     {"huge_pages", "None"}};
}

void Vmm::Journal(const ApiRequest& request, int status) {
  if (options_.journal_path.empty()) return;
  int fd = ::open(options_.journal_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0) return;
  std::string line = fmt::format("{} {} {}\n", request.method, request.path, status);
  ssize_t unused = ::write(fd, line.data(), line.size());
  (void)unused;
  ::close(fd);
}

void Vmm::Log(const std::string& message) {
  if (log_file_.get() < 0) return;
  auto now = std::chrono::system_clock::now().time_since_epoch();
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now).count();
  std::string line = fmt::format("{}.{:09} [{}:fc_api] {}\n", ns / 1000000000, ns % 1000000000,
                                 options_.instance_id, message);
  ssize_t unused = ::write(log_file_.get(), line.data(), line.size());
  (void)unused;
}

ApiResponse Vmm::Handle(const ApiRequest& request) {
  if (options_.delay_ms > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(options_.delay_ms));
  }
  std::lock_guard lock(mu_);
  ApiResponse resp = [&]() -> ApiResponse {
    auto route = spec_.Match(request.method, request.path);
    if (!route) {
      // Firecracker names the first path segment: "PUT vm." for PUT /vm.
      std::string first = request.path;
      while (!first.empty() && first.front() == '/') first.erase(0, 1);
      first = first.substr(0, first.find('/'));
      return Fault(
          fmt::format("Invalid request method and/or path: {} {}.", request.method, first));
    }
    Log(fmt::format("The API server received a {} request on \"{}\".", request.method,
                    request.path));
    for (const auto& [name, value] : route->path_params) {
      if (!ValidResourceId(value)) {
        return Fault("API Resource IDs can only contain alphanumeric characters and underscores.");
      }
    }
    json body;
    if (request.method == "GET") {
      if (!request.body.empty()) return Fault("GET request cannot have a body.");
    } else if (route->body_schema != nullptr) {
      const bool optional = route->path_template == "/balloon/hinting/start";
      if (request.body.empty()) {
        if (!optional) return Fault("Empty request body.");
        body = json::object();
      } else {
        try {
          body = json::parse(request.body);
        } catch (const json::exception& e) {
          return Fault(
              fmt::format("An error occurred when deserializing the json body of a "
                          "request: {}.",
                          e.what()));
        }
        const bool partial = Key(route->method, route->path_template) == "PATCH /machine-config";
        if (auto problem = spec_.Validate(body, *route->body_schema, partial)) {
          return Fault(
              fmt::format("An error occurred when deserializing the json body of a "
                          "request: {}.",
                          *problem));
        }
      }
      for (const auto& [name, value] : route->path_params) {
        if (body.contains(name) && body[name] != json(value)) {
          return Fault("The id from the path does not match the id from the body!");
        }
      }
    }
    const std::string key = Key(route->method, route->path_template);
    if (options_.fail.contains(key) ||
        options_.fail.contains(request.method + " " + request.path)) {
      if (key == "PUT /snapshot/load") return FailLoad("fault injected by FC_DOUBLE_FAIL");
      return Fault(fmt::format("fault injected by FC_DOUBLE_FAIL for {}", key));
    }
    if (booted() && PreBootOnly(key)) return Fault(kNotAfterBoot);
    if (!booted() && PostBootOnly(key)) return Fault(kNotBeforeBoot);
    return Dispatch(*route, body);
  }();
  Journal(request, resp.status);
  if (resp.status >= 400)
    Log(fmt::format("Received Error. Status code: {}. Message: {}", resp.status, resp.body));
  return resp;
}

ApiResponse Vmm::Dispatch(const Route& route, const json& body) {
  const std::string key = Key(route.method, route.path_template);
  if (route.method == "GET") return Get(route);
  if (key != "PUT /logger" && key != "PUT /metrics" && key != "PUT /actions" &&
      key != "PUT /mmds" && key != "PATCH /mmds" && key != "PUT /snapshot/load") {
    boot_specific_ = true;
  }
  if (key == "PUT /logger") return PutLogger(body);
  if (key == "PUT /metrics") return PutMetrics(body);
  if (key == "PUT /boot-source") return PutBootSource(body);
  if (key == "PUT /machine-config") return PutMachineConfig(body, false);
  if (key == "PATCH /machine-config") return PutMachineConfig(body, true);
  if (key == "PUT /drives/{drive_id}") return PutDrive(body);
  if (key == "PATCH /drives/{drive_id}") return PatchDrive(body);
  if (key == "PUT /network-interfaces/{iface_id}") return PutNic(body);
  if (key == "PATCH /network-interfaces/{iface_id}") {
    for (auto& [id, nic] : nics_) {
      if (id == body["iface_id"]) return NoContent();
    }
    return Fault(fmt::format("Network config error: Could not find the network device {}",
                             body["iface_id"].get<std::string>()));
  }
  if (key == "PUT /vsock") return PutVsock(body);
  if (key == "PUT /actions") return Action(body);
  if (key == "PATCH /vm") return PatchVm(body);
  if (key == "PUT /snapshot/create") return CreateSnapshot(body);
  if (key == "PUT /snapshot/load") return LoadSnapshot(body);
  if (key == "PUT /mmds") {
    mmds_ = body;
    return NoContent();
  }
  if (key == "PATCH /mmds") {
    mmds_.merge_patch(body);
    return NoContent();
  }
  if (key == "PUT /mmds/config") {
    for (const auto& want : body["network_interfaces"]) {
      bool found = false;
      for (const auto& [id, nic] : nics_) found = found || id == want;
      if (!found) {
        return Fault(
            "The MMDS could not be configured to listen on the selected network "
            "interface.");
      }
    }
    mmds_config_ = body;
    return NoContent();
  }
  if (key == "PUT /cpu-config") {
    cpu_config_ = body;
    return NoContent();
  }
  if (key == "PUT /pmem/{id}") {
    auto file = OpenFile(options_.paths.Resolve(body["path_on_host"]), false);
    if (!file) return Fault("Unable to create the pmem device: " + file.error().message);
    pmem_.emplace_back(body["id"], body);
    return NoContent();
  }
  if (key == "PUT /balloon") {
    balloon_ = body;
    return NoContent();
  }
  if (key == "PATCH /balloon" || key == "PATCH /balloon/statistics") {
    if (!balloon_) return Fault("Balloon device not configured.");
    for (const auto& [k, v] : body.items()) (*balloon_)[k] = v;
    return NoContent();
  }
  if (key == "PATCH /balloon/hinting/start" || key == "PATCH /balloon/hinting/stop") {
    if (!balloon_ || !balloon_->value("free_page_hinting", false)) {
      return Fault("Free page hinting is not enabled on the balloon device.");
    }
    return NoContent();
  }
  if (key == "PUT /entropy") {
    entropy_ = body;
    return NoContent();
  }
  if (key == "PUT /serial") {
    serial_ = body;
    return NoContent();
  }
  if (key == "PUT /hotplug/memory") {
    memory_hotplug_ = body;
    return NoContent();
  }
  if (key == "PATCH /hotplug/memory") {
    if (!memory_hotplug_) return Fault("Memory hotplug is not configured.");
    return NoContent();
  }
  if (key == "PATCH /pmem/{id}") {
    for (const auto& [id, p] : pmem_) {
      if (id == body["id"]) return NoContent();
    }
    return Fault("Invalid pmem device ID.");
  }
  return Fault(fmt::format("the firecracker double does not emulate {}", key));
}

ApiResponse Vmm::Get(const Route& route) {
  const std::string& p = route.path_template;
  static const char* kStates[] = {"Not started", "Running", "Paused"};
  if (p == "/") {
    return Json(200, {{"app_name", "Firecracker"},
                      {"id", options_.instance_id},
                      {"state", kStates[static_cast<int>(state_)]},
                      {"vmm_version", kFirecrackerVersion}});
  }
  if (p == "/version") return Json(200, {{"firecracker_version", kFirecrackerVersion}});
  if (p == "/machine-config") return Json(200, MachineConfig());
  if (p == "/vm/config") return Json(200, VmConfig());
  if (p == "/mmds") return Json(200, mmds_);
  if (p == "/balloon") {
    if (!balloon_) return Fault("Balloon device not configured.");
    return Json(200, *balloon_);
  }
  if (p == "/balloon/statistics") {
    if (!balloon_ || balloon_->value("stats_polling_interval_s", 0) == 0) {
      return Fault("Statistics for the balloon device are not enabled");
    }
    const int64_t pages = balloon_->value("amount_mib", 0) * 256;
    return Json(200, {{"target_pages", pages},
                      {"actual_pages", pages},
                      {"target_mib", balloon_->value("amount_mib", 0)},
                      {"actual_mib", balloon_->value("amount_mib", 0)}});
  }
  if (p == "/balloon/hinting/status") {
    if (!balloon_ || !balloon_->value("free_page_hinting", false)) {
      return Fault("Free page hinting is not enabled on the balloon device.");
    }
    return Json(200, {{"host_cmd", 0}, {"guest_cmd", 0}});
  }
  if (p == "/hotplug/memory") {
    if (!memory_hotplug_) return Fault("Memory hotplug is not configured.");
    json status = *memory_hotplug_;
    status["plugged_size_mib"] = 0;
    status["requested_size_mib"] = 0;
    return Json(200, status);
  }
  return Fault(fmt::format("the firecracker double does not emulate GET {}", p));
}

json Vmm::MachineConfig() const { return machine_config_; }

json Vmm::VmConfig() const {
  json drives = json::array(), nics = json::array(), pmem = json::array();
  for (const auto& [id, d] : drives_) drives.push_back(d.config);
  for (const auto& [id, n] : nics_) nics.push_back(n.config);
  for (const auto& [id, p] : pmem_) pmem.push_back(p);
  auto opt = [](const std::optional<json>& v) { return v ? *v : json(nullptr); };
  return {{"balloon", opt(balloon_)},
          {"drives", drives},
          {"boot-source", restored_ ? json(nullptr) : opt(boot_source_)},
          {"cpu-config", opt(cpu_config_)},
          {"logger", opt(logger_config_)},
          {"machine-config", MachineConfig()},
          {"metrics", opt(metrics_config_)},
          {"memory-hotplug", opt(memory_hotplug_)},
          {"mmds-config", opt(mmds_config_)},
          {"network-interfaces", nics},
          {"pmem", pmem},
          {"vsock", opt(vsock_)},
          {"entropy", opt(entropy_)}};
}

}  // namespace hearth::fcdouble

// firecracker (test double): a stand-in for the Firecracker v1.16.1 VMM binary that hearth's
// Firecracker driver is tested against in CI, where KVM guests cannot run. It speaks Firecracker's
// API contract and enforces the published spec, so a driver bug fails a test.
//
// Emulated, as Firecracker v1.16.1 does it:
//   - CLI: --api-sock (required by the double), --id (≤64 chars, alphanumeric and '-'), --level,
//     --log-path, --show-level, --show-log-origin, --metrics-path, --boot-timer, --start-time-us,
//     --start-time-cpu-us, --parent-cpu-time-us, --no-seccomp, --seccomp-filter,
//     --http-api-max-payload-size (default 51200), --mmds-size-limit, --enable-pci, --version
//     (prints "Firecracker v1.16.1" and a blank line, exit 0), --snapshot-version ("v10.0.0"),
//     --help. "--name value" and "--name=value" both work. An unknown or malformed argument exits
//     153 with "Arguments parsing error: ...". An existing --api-sock path is not removed: the
//     process exits 1 ("Address in use"). --log-path/--metrics-path must exist already.
//   - HTTP/1.1 on the unix socket (api_server.h): 204 for PUT/PATCH, 200 + JSON for GET, 400 +
//     {"fault_message"} for every error, Content-Length always, payload limit.
//   - Every request checked against the embedded spec (swagger_spec.h): path and method, body
//     types, required fields, enums, minimum/maximum, unknown fields (serde deny_unknown_fields),
//     path id equal to body id, ids made of alphanumerics and '_'.
//   - The state machine and ordering rules of vmm.h, the snapshot files of vmm_snapshot.cc, the
//     metrics of metrics.h, taps opened with TUNSETIFF at PUT /network-interfaces and at snapshot
//     load (a tap held by another process fails with EBUSY), vCPU threads "fc_vcpu <n>".
//   - The guest's serial console goes to stdout (or PUT /serial serial_out_path): boot_delay after
//     InstanceStart it prints a kernel line and hearth's guest ready marker
//     (image::kGuestReadyMarker); a snapshot restored with resume_vm prints nothing. SendCtrlAltDel
//     makes the process exit 0 shortly after (a guest with reboot=k).
// Not emulated: KVM, a real guest, MMDS networking, the Uffd memory backend, vhost-user drives,
// --config-file / --no-api, seccomp, rate limiting, fault texts word for word (the texts checked
// against Firecracker's source are: invalid path/method, not supported before/after starting,
// id mismatch, snapshot load not allowed; the others are close paraphrases).
//
// Test hooks (environment):
//   FC_DOUBLE_JOURNAL=<file>          append "METHOD PATH STATUS" per request (host path)
//   FC_DOUBLE_FAIL="PUT /snapshot/load,PUT /drives/{drive_id}"   answer those with 400 (a path
//                                     template or a concrete path); a failed load ends the process
//   FC_DOUBLE_DELAY_MS=<n>            delay every answer by n ms
//   FC_DOUBLE_METRICS_INTERVAL_MS=<n> metrics period (default 60000)
//   FC_DOUBLE_BOOT_DELAY_MS=<n>       InstanceStart to console lines (default 50)
//   FC_DOUBLE_ROOT=<dir>              set by the jailer double: every path is resolved inside dir
#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "firecracker_double/api_server.h"
#include "firecracker_double/swagger_spec.h"
#include "firecracker_double/vmm.h"

namespace {

using hearth::fcdouble::ApiServer;
using hearth::fcdouble::SwaggerSpec;
using hearth::fcdouble::Vmm;
using hearth::fcdouble::VmmOptions;

constexpr int kExitArgs = 153;

[[noreturn]] void ArgError(const std::string& message) {
  std::fprintf(stderr, "Arguments parsing error: %s \n\nFor more information try --help.\n",
               message.c_str());
  std::exit(kExitArgs);
}

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  try {
    return std::stoi(v);
  } catch (...) {
    return fallback;
  }
}

std::set<std::string> EnvList(const char* name) {
  std::set<std::string> out;
  const char* v = std::getenv(name);
  if (v == nullptr) return out;
  std::string s = v;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    std::string item = s.substr(i, j - i);
    while (!item.empty() && item.front() == ' ') item.erase(0, 1);
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (!item.empty()) out.insert(item);
    i = j + 1;
  }
  return out;
}

bool ValidInstanceId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  static const std::set<std::string> kValued = {"api-sock",
                                                "id",
                                                "level",
                                                "log-path",
                                                "metrics-path",
                                                "start-time-us",
                                                "start-time-cpu-us",
                                                "parent-cpu-time-us",
                                                "seccomp-filter",
                                                "http-api-max-payload-size",
                                                "mmds-size-limit",
                                                "config-file",
                                                "metadata",
                                                "describe-snapshot"};
  static const std::set<std::string> kFlags = {"boot-timer", "no-seccomp", "version",
                                               "help",       "show-level", "show-log-origin",
                                               "enable-pci", "no-api",     "snapshot-version"};
  std::map<std::string, std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (!a.starts_with("--")) {
      ArgError(
          fmt::format("Found argument '{}' which wasn't expected, or isn't valid in this "
                      "context.",
                      a));
    }
    std::string name = a.substr(2), value;
    bool inline_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    if (args.contains(name))
      ArgError(fmt::format("The argument '{}' was provided more than once.", name));
    if (kFlags.contains(name)) {
      if (inline_value) ArgError(fmt::format("The argument '{}' does not take a value.", name));
      args[name] = "";
    } else if (kValued.contains(name)) {
      if (!inline_value) {
        if (i + 1 >= argc) ArgError(fmt::format("The argument '{}' requires a value.", name));
        value = argv[++i];
      }
      args[name] = value;
    } else {
      ArgError(
          fmt::format("Found argument '{}' which wasn't expected, or isn't valid in this "
                      "context.",
                      a));
    }
  }
  if (args.contains("help") || args.contains("version")) {
    std::printf("Firecracker v%s\n\n", std::string(hearth::fcdouble::kFirecrackerVersion).c_str());
    return 0;
  }
  if (args.contains("snapshot-version")) {
    std::printf("v%s\n", std::string(hearth::fcdouble::kSnapshotVersion).c_str());
    return 0;
  }
  if (args.contains("config-file") || args.contains("no-api") ||
      args.contains("describe-snapshot")) {
    std::fprintf(stderr,
                 "firecracker double: --config-file, --no-api and --describe-snapshot "
                 "are not emulated\n");
    return 1;
  }
  if (args.contains("no-seccomp") && args.contains("seccomp-filter")) {
    ArgError("Argument 'no-seccomp' cannot be used together with 'seccomp-filter'.");
  }
  for (const char* dep : {"level", "show-level", "show-log-origin"}) {
    if (args.contains(dep) && !args.contains("log-path")) {
      ArgError(fmt::format("Argument '{}' requires 'log-path' to be present.", dep));
    }
  }
  for (const char* num : {"start-time-us", "start-time-cpu-us", "parent-cpu-time-us",
                          "http-api-max-payload-size", "mmds-size-limit"}) {
    if (!args.contains(num)) continue;
    const std::string& v = args[num];
    if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos) {
      std::fprintf(stderr, "'%s' parameter expected to be of 'u64' type.\n", num);
      return 1;
    }
  }
  if (!args.contains("api-sock")) ArgError("the firecracker double needs --api-sock.");

  VmmOptions options;
  options.instance_id = args.contains("id") ? args["id"] : "anonymous-instance";
  if (!ValidInstanceId(options.instance_id)) {
    std::fprintf(stderr, "Invalid instance ID: %s\n", options.instance_id.c_str());
    return 1;
  }
  const char* root = std::getenv("FC_DOUBLE_ROOT");
  options.paths = hearth::fcdouble::PathResolver(root != nullptr ? root : "");
  if (const char* j = std::getenv("FC_DOUBLE_JOURNAL")) options.journal_path = j;
  options.fail = EnvList("FC_DOUBLE_FAIL");
  options.delay_ms = EnvInt("FC_DOUBLE_DELAY_MS", 0);
  options.metrics_interval_ms = EnvInt("FC_DOUBLE_METRICS_INTERVAL_MS", 60000);
  options.boot_delay_ms = EnvInt("FC_DOUBLE_BOOT_DELAY_MS", 50);
  options.boot_timer = args.contains("boot-timer");
  const size_t limit = args.contains("http-api-max-payload-size")
                           ? std::stoull(args["http-api-max-payload-size"])
                           : 51200;

  static auto spec = SwaggerSpec::Parse(hearth::fcdouble::EmbeddedSpecYaml());
  if (!spec) {
    std::fprintf(stderr, "firecracker double: bad embedded spec: %s\n",
                 spec.error().message.c_str());
    return 1;
  }
  static Vmm vmm(*spec, options);
  if (args.contains("log-path")) {
    auto s =
        vmm.ConfigureLogger(args["log-path"], args.contains("level") ? args["level"] : "Warning");
    if (!s) {
      std::fprintf(stderr, "Error: %s\n", s.error().message.c_str());
      return s.error().code == hearth::Code::kInvalidArgument ? 152 : 1;
    }
  }
  if (args.contains("metrics-path")) {
    if (auto s = vmm.ConfigureMetrics(args["metrics-path"]); !s) {
      std::fprintf(stderr, "Error: Could not initialize metrics: %s\n", s.error().message.c_str());
      return 1;
    }
  }
  auto server = ApiServer::Bind(options.paths.Resolve(args["api-sock"]), limit);
  if (!server) {
    std::fprintf(stderr, "Error creating the HTTP server: %s\n", server.error().message.c_str());
    return 1;
  }
  server->Serve([](const hearth::fcdouble::ApiRequest& r) { return vmm.Handle(r); });
}

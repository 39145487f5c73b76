// What the VM benchmarks share: timing helpers, a small API client that throws on failure (a
// benchmark stops at the first error, and the stack unwinds so its hearthd is cleaned up), and
// the command line of a running process.
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "http/client.h"

namespace hearth::bench {

using Clock = std::chrono::steady_clock;

inline double Ms(Clock::duration d) { return Millis(d); }

inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

inline std::vector<std::string> Cmdline(int64_t pid) {
  std::ifstream in(fmt::format("/proc/{}/cmdline", pid), std::ios::binary);
  std::vector<std::string> argv;
  for (std::string arg; std::getline(in, arg, '\0');) argv.push_back(arg);
  return argv;
}

// The argv with what hearthd hands its VMMs as descriptors given by name instead: the tap
// (`-netdev tap,...,fd=N`) and the QMP socket (`-chardev socket,id=qmp,fd=N` with its `-mon`). A
// process run by hand has no such descriptors; QEMU opens the tap and creates `qmp` itself.
inline std::vector<std::string> ByName(const std::vector<std::string>& argv, const std::string& tap,
                                       const std::string& qmp) {
  std::vector<std::string> out;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (arg.rfind("tap,id=net0,fd=", 0) == 0) {
      out.push_back("tap,id=net0,ifname=" + tap + ",script=no,downscript=no");
    } else if (arg == "-chardev" && i + 1 < argv.size() &&
               argv[i + 1].rfind("socket,id=qmp,fd=", 0) == 0) {
      out.insert(out.end(), {"-qmp", "unix:" + qmp + ",server=on,wait=off"});
      ++i;
    } else if (arg == "-mon" && i + 1 < argv.size() && argv[i + 1] == "chardev=qmp,mode=control") {
      ++i;
    } else {
      out.push_back(arg);
    }
  }
  return out;
}

struct Api {
  http::Client client;

  nlohmann::json Call(std::string_view method, const std::string& target,
                      const std::string& body = "") {
    auto r = client.Request(method, target, body);
    if (!r || r->status >= 300) {
      throw std::runtime_error(
          fmt::format("{} {} failed: {}", method, target, r ? r->body : r.error().message));
    }
    return r->body.empty() ? nlohmann::json() : nlohmann::json::parse(r->body);
  }

  // The measures of the VM's newest `type` event among its last five (see the Event schema in
  // openapi.yaml); throws when there is none.
  nlohmann::json LastMeasures(const std::string& name, const std::string& type) {
    nlohmann::json events = Call("GET", "/v1/vms/" + name + "/events?limit=5");
    std::optional<nlohmann::json> measures;
    for (const auto& e : events.value("events", nlohmann::json::array())) {
      if (e.value("type", "") == type) measures = e.value("measures", nlohmann::json::object());
    }
    if (!measures)
      throw std::runtime_error(fmt::format("vm {} has no recent {} event", name, type));
    return *measures;
  }

  // Polls (every `poll`) until the VM is in `state`; throws when it fails or takes 2 minutes.
  nlohmann::json WaitState(const std::string& name, const std::string& state,
                           std::chrono::milliseconds poll = std::chrono::milliseconds(1)) {
    for (auto until = Clock::now() + std::chrono::minutes(2); Clock::now() < until;) {
      nlohmann::json vm = Call("GET", "/v1/vms/" + name);
      if (vm["state"] == state) return vm;
      if (vm["state"] == "failed") break;
      std::this_thread::sleep_for(poll);
    }
    throw std::runtime_error(fmt::format("vm {} did not become {}", name, state));
  }
};

// main() of a benchmark: `NAME [ROUNDS]` (default `default_rounds`, at least 1); an exception
// ends it with its message.
inline int Main(const char* name, int argc, char** argv, int (*run)(int rounds),
                int default_rounds = 5) {
  int rounds = argc > 1 ? std::atoi(argv[1]) : default_rounds;
  try {
    return run(std::max(rounds, 1));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name, e.what());
    return 1;
  }
}

}  // namespace hearth::bench

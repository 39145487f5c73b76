// hearth: the command-line client of hearthd. Exit codes: 0 success, 1 the request failed,
// 2 the command line is wrong. Errors are one line on stderr.
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "cli/image_commands.h"
#include "cli/output.h"
#include "common/text.h"
#include "http/client.h"
#include "model/vm.h"

namespace hearth::cli {
namespace {

using nlohmann::json;

constexpr int kOk = 0, kFailed = 1, kUsage = 2;

struct UsageError {
  std::string message;
};

// Flags that set VM spec fields, shared by create and edit.
struct SpecFlags {
  int vcpus = 0;
  std::string memory, kernel, initrd, rootfs, image, cmdline, idle_timeout, stop_after, stop_at,
      on_timer, wake, wake_ports, restart;
  bool rootfs_readonly = false;
  std::vector<std::string> publish;
  std::vector<CLI::Option*> options;

  void Register(CLI::App* cmd) {
    auto add = [&](const char* flag, std::string& into, const char* help) {
      options.push_back(cmd->add_option(flag, into, help));
    };
    options.push_back(cmd->add_option("--vcpus", vcpus, "virtual CPUs, 1-32"));
    add("--memory", memory, "guest RAM: 512, 256M, 2G (MiB unless a unit is given)");
    add("--kernel", kernel, "path of an ELF vmlinux or bzImage on the host");
    add("--initrd", initrd, "path of an initramfs (\"\" to remove)");
    add("--rootfs", rootfs, "root disk: an image file or block device (\"\" to remove)");
    options.push_back(cmd->add_flag("--rootfs-readonly{true},--rootfs-readwrite{false}",
                                    rootfs_readonly, "attach the root disk read-only"));
    add("--image", image, "image name from `hearth image ls` (kernel + rootfs)");
    add("--cmdline", cmdline, "extra kernel command line");
    options.push_back(cmd->add_option("--publish", publish,
                                      "HOSTPORT:GUESTPORT[/tcp|udp], repeatable; \"\" clears")
                          ->take_all()
                          ->allow_extra_args(false));
    add("--idle-timeout", idle_timeout,
        "act after this long (e.g. 30s) without a packet either way on the VM's tap, or none");
    add("--stop-after", stop_after,
        "act after this much running time since the last start or resume (e.g. 2h), or none");
    add("--stop-at", stop_at, "act at this RFC 3339 time if the VM was started before it, or none");
    add("--on-timer", on_timer,
        "what timers do: suspend (default; state kept) or stop (guest shutdown, no state)");
    add("--wake", wake, "on-packet or never");
    add("--wake-ports", wake_ports, "e.g. tcp:80,tcp:443 (default: any packet); \"\" for any");
    add("--restart", restart, "never, on-failure (default) or always");
  }

  bool Given(const char* name) const {
    for (auto* o : options) {
      if (o->check_lname(std::string(name).substr(2)) && o->count() > 0) return true;
    }
    return false;
  }

  // The spec fields given on the command line, in API form.
  json ToJson() const {
    json out = json::object();
    auto text_or_null = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
    if (Given("--vcpus")) out["vcpus"] = vcpus;
    if (Given("--memory")) {
      auto mib = ParseMemoryMib(memory);
      if (!mib) throw UsageError{mib.error().message};
      out["memory_mib"] = *mib;
    }
    if (Given("--kernel")) out["kernel"] = text_or_null(kernel);
    if (Given("--initrd")) out["initrd"] = text_or_null(initrd);
    if (Given("--rootfs")) out["rootfs"] = text_or_null(rootfs);
    if (Given("--rootfs-readonly")) out["rootfs_readonly"] = rootfs_readonly;
    if (Given("--image")) out["image"] = text_or_null(image);
    if (Given("--cmdline")) out["cmdline"] = cmdline;
    if (Given("--publish")) {
      json list = json::array();
      for (const auto& p : publish) {
        if (!p.empty()) list.push_back(p);
      }
      out["publish"] = list;
    }
    json timers = json::object();
    auto timer = [&](const char* flag, const char* key, const std::string& v) {
      if (Given(flag)) timers[key] = (v == "none" || v.empty()) ? json(nullptr) : json(v);
    };
    timer("--idle-timeout", "idle_timeout", idle_timeout);
    timer("--stop-after", "stop_after", stop_after);
    timer("--stop-at", "stop_at", stop_at);
    if (Given("--on-timer")) timers["on_timer"] = on_timer;
    if (!timers.empty()) out["timers"] = timers;
    if (Given("--wake")) out["wake"] = wake;
    if (Given("--wake-ports")) {
      json list = json::array();
      std::stringstream ss(wake_ports);
      std::string item;
      while (std::getline(ss, item, ',')) {
        if (!item.empty()) list.push_back(item);
      }
      out["wake_ports"] = list;
    }
    if (Given("--restart")) out["restart"] = restart;
    return out;
  }
};

struct Globals {
  std::string socket, host, output = "table";
};

class Cli {
 public:
  explicit Cli(Globals& g) : g_(g) {}

  // Sends a request; prints the API's error and returns nullopt on failure.
  std::optional<api::HttpResponse> Call(
      std::string_view method, const std::string& target, const std::string& body = "",
      std::vector<std::pair<std::string, std::string>> hdrs = {}) {
    if (!client_) client_ = std::make_unique<http::Client>(Options());
    auto r = client_->Request(method, target, body, hdrs);
    if (!r) {
      std::fprintf(stderr, "hearth: %s\n", EscapeText(r.error().message).c_str());
      return std::nullopt;
    }
    if (r->status >= 400) {
      json err = json::parse(r->body, nullptr, false);
      std::string msg = err.is_object() && err.contains("error")
                            ? err["error"].value("message", r->body)
                            : fmt::format("HTTP {}: {}", r->status, r->body);
      std::fprintf(stderr, "hearth: %s\n", EscapeText(msg).c_str());
      return std::nullopt;
    }
    return std::move(*r);
  }

  int Print(const api::HttpResponse& r, std::string (*table)(const json&)) {
    if (g_.output == "csv") throw UsageError{"-o csv: only `hearth usage` prints CSV"};
    auto format = ParseFormat(g_.output);
    json body = json::parse(r.body);
    std::fputs(Render(body, *format, table).c_str(), stdout);
    return kOk;
  }

  // For actions: the object in json/yaml, a sentence in table mode.
  int Done(const api::HttpResponse& r, const std::string& sentence) {
    if (g_.output == "csv") throw UsageError{"-o csv: only `hearth usage` prints CSV"};
    if (*ParseFormat(g_.output) != Format::kTable && !r.body.empty()) return Print(r, nullptr);
    std::printf("%s\n", sentence.c_str());
    return kOk;
  }

  const Globals& globals() const { return g_; }

 private:
  http::ClientOptions Options() const {
    http::ClientOptions o;
    if (g_.host.empty()) {
      o.unix_socket = g_.socket;
      return o;
    }
    // HOST, HOST:PORT, [V6] or [V6]:PORT.
    std::string host = g_.host, port;
    if (!host.empty() && host.front() == '[') {
      auto close = host.find(']');
      if (close == std::string::npos) throw UsageError{fmt::format("--host: '{}' lacks ']'", host)};
      if (close + 1 < host.size() && host[close + 1] == ':') port = host.substr(close + 2);
      host = host.substr(1, close - 1);
    } else if (auto colon = host.find(':');
               colon != std::string::npos && host.find(':', colon + 1) == std::string::npos) {
      port = host.substr(colon + 1);
      host = host.substr(0, colon);
    }
    if (!port.empty()) {
      int p = 0;
      auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
      if (ec != std::errc{} || end != port.data() + port.size() || p < 1 || p > 65535) {
        throw UsageError{fmt::format("--host: port '{}' is not 1-65535", port)};
      }
      o.port = static_cast<uint16_t>(p);
    }
    o.host = host;
    const char* token = std::getenv("HEARTH_TOKEN");
    if (!token || !*token) {
      throw UsageError{
          "--host needs a token in HEARTH_TOKEN (the admin token is in "
          "<data-dir>/admin.token on the node)"};
    }
    o.token = token;
    return o;
  }

  Globals& g_;
  std::unique_ptr<http::Client> client_;
};

std::string VmPath(const std::string& name, std::string_view suffix = "") {
  std::string out = "/v1/vms/";
  for (unsigned char c : name) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out + std::string(suffix);
}

std::string UrlQueryValue(const std::string& value) {
  std::string out;
  for (unsigned char c : value) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

json ReadSpecFile(const std::string& path) {
  std::string text;
  if (path == "-") {
    std::stringstream ss;
    ss << std::cin.rdbuf();
    text = ss.str();
  } else {
    std::ifstream in(path);
    if (!in) throw UsageError{fmt::format("-f: cannot read '{}'", path)};
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  auto doc = YamlToJson(text);
  if (!doc) throw UsageError{fmt::format("-f {}: {}", path, doc.error().message)};
  if (!doc->is_object())
    throw UsageError{fmt::format("-f {}: expected a mapping of spec fields", path)};
  return *doc;
}

// After a lifecycle request: polls the VM until it leaves its transitional state (at most until
// `until`, `timeout` after the request was sent), then reports where it settled. Exit 1 when it
// ended failed, elsewhere than `expected` (a suspend that failed leaves the VM running), or did
// not settle in time.
int WaitSettled(Cli& cli, const std::string& name, api::HttpResponse r,
                std::chrono::steady_clock::time_point until, std::chrono::seconds timeout,
                const std::string& expected) {
  json vm = json::parse(r.body, nullptr, false);
  auto text = [&](const char* key) {  // escaped: a reason can quote the guest's console
    return vm.is_object() && vm.contains(key) && vm[key].is_string()
               ? EscapeText(vm[key].get<std::string>())
               : std::string();
  };
  auto state = [&] { return text("state"); };
  auto transitional = [&] {
    auto s = ParseVmState(state());
    return s && IsTransitional(*s);
  };
  while (transitional()) {
    if (std::chrono::steady_clock::now() >= until) {
      std::fprintf(stderr, "hearth: vm '%s' is still %s after %llds; see `hearth vm events %s`\n",
                   name.c_str(), state().c_str(), static_cast<long long>(timeout.count()),
                   name.c_str());
      return kFailed;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto next = cli.Call("GET", VmPath(name));
    if (!next) return kFailed;
    r = std::move(*next);
    vm = json::parse(r.body, nullptr, false);
  }
  if (state() == "failed") {
    std::fprintf(stderr, "hearth: vm '%s' failed: %s\n", name.c_str(),
                 text("state_reason").c_str());
    return kFailed;
  }
  if (state() != expected && !text("state_reason").empty()) {
    std::fprintf(stderr, "hearth: vm '%s' is %s, not %s: %s\n", name.c_str(), state().c_str(),
                 expected.c_str(), text("state_reason").c_str());
    return kFailed;
  }
  std::string detail;
  if (state() == "running") {
    detail = fmt::format(" ({}{}{})", text("ip"), text("ip").empty() ? "" : ", ", text("backend"));
  }
  return cli.Done(r, fmt::format("vm '{}' is {}{}", name, state(), detail));
}

// Prints console output. On a terminal its control characters are escaped (newlines and tabs
// stay; "\r\n" is a newline), so a guest cannot drive the terminal; into a pipe or file the bytes
// go as they are.
void PrintLog(std::string_view log) {
  if (!isatty(STDOUT_FILENO)) {
    std::fwrite(log.data(), 1, log.size(), stdout);
    return;
  }
  std::string lines;
  lines.reserve(log.size());
  for (size_t i = 0; i < log.size(); ++i) {
    if (!(log[i] == '\r' && i + 1 < log.size() && log[i + 1] == '\n')) lines += log[i];
  }
  std::string safe = EscapeText(lines, {.keep_newlines = true});
  std::fwrite(safe.data(), 1, safe.size(), stdout);
}

int FollowLogs(Cli& cli, const std::string& name) {
  std::string last;
  while (true) {
    auto r = cli.Call("GET", VmPath(name, "/logs?tail_bytes=1048576"));
    if (!r) return kFailed;
    const std::string& log = r->body;
    // The log is a tail: print what follows the part already shown.
    size_t start = 0;
    if (!last.empty()) {
      size_t at = log.rfind(last.substr(last.size() > 256 ? last.size() - 256 : 0));
      start = at == std::string::npos ? 0 : at + std::min<size_t>(last.size(), 256);
    }
    if (start < log.size()) {
      PrintLog(std::string_view(log).substr(start));
      std::fflush(stdout);
    }
    last = log;
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

}  // namespace

int Main(int argc, char** argv) {
  Globals g;
  CLI::App app{"hearth - manage the microVMs of a hearth node.", "hearth"};
  app.footer(R"(Examples:
  hearth vm create web --kernel /srv/vmlinux --initrd /srv/initrd --memory 256M --publish 8080:80
  hearth vm create -f web.yaml web      # spec fields as in the API: vcpus, memory_mib, kernel, ...
  hearth vm ls
  hearth vm edit web --memory 512M --idle-timeout 30s
  hearth vm start web && hearth vm logs web -f
  hearth vm show web -o json
  HEARTH_HOST=node1:7777 HEARTH_TOKEN=$(cat admin.token) hearth node info
  hearth usage --since 7d --by day -o csv   # what each VM used, per day

Timers (--idle-timeout, --stop-after, --stop-at) act on a running VM within a second of their
time, also when it came while hearthd was down; `vm ls` shows the next one, and each firing is a
`timer` event in `vm events`.

Exit codes: 0 success, 1 the request failed, 2 the command line is wrong.)");
  app.require_subcommand(1);
  app.fallthrough();  // global flags such as -o may come after the subcommand
  const char* env_socket = std::getenv("HEARTH_SOCKET");
  const char* env_host = std::getenv("HEARTH_HOST");
  g.socket = env_socket && *env_socket ? env_socket : "/var/lib/hearth/hearthd.sock";
  if (env_host) g.host = env_host;
  app.add_option("--socket", g.socket,
                 "hearthd's unix socket (env HEARTH_SOCKET, default /var/lib/hearth/hearthd.sock)");
  app.add_option("--host", g.host,
                 "talk TCP to HOST[:PORT] instead (env HEARTH_HOST; token "
                 "from HEARTH_TOKEN)");
  app.add_option("-o,--output", g.output, "table, json or yaml (and csv for usage)")
      ->check(CLI::IsMember({"table", "json", "yaml", "csv"}));

  Cli cli(g);
  int rc = kOk;
  auto* vm = app.add_subcommand("vm", "create, change and run VMs")->require_subcommand(1);

  std::string name, file, if_version;
  bool force = false, fresh = false, kill = false, follow = false, discard_state = false;
  int limit = 100;

  SpecFlags create_flags;
  auto* create = vm->add_subcommand("create", "define a VM (it starts with `hearth vm start`)");
  create->add_option("NAME", name, "VM name: a-z, 0-9, '-', starting with a letter")->required();
  create->add_option("-f,--file", file, "YAML/JSON spec file (- for stdin); flags override it");
  create_flags.Register(create);
  create->callback([&] {
    json body = file.empty() ? json::object() : ReadSpecFile(file);
    if (body.contains("name") && body["name"] != name) {
      throw UsageError{fmt::format("-f {}: its name {} differs from NAME '{}'", file,
                                   body["name"].dump(), name)};
    }
    body["name"] = name;
    const json flags = create_flags.ToJson();
    for (const auto& [k, v] : flags.items()) {
      if (k == "timers" && body.contains("timers") && body["timers"].is_object()) {
        body["timers"].update(v);
      } else {
        body[k] = v;
      }
    }
    auto r = cli.Call("POST", "/v1/vms", body.dump());
    if (!r) return void(rc = kFailed);
    json vm_json = json::parse(r->body);
    rc = cli.Done(*r, fmt::format("vm '{}' created ({}, version {}); start it with `hearth vm "
                                  "start {}`",
                                  name, vm_json["id"].get<std::string>(),
                                  vm_json["version"].get<int64_t>(), name));
  });

  SpecFlags edit_flags;
  auto* edit = vm->add_subcommand("edit", "change a VM's spec (fields not given stay as they are)");
  edit->add_option("NAME", name, "VM name")->required();
  edit->add_option("--if-version", if_version,
                   "only if the VM is still at this version (else the edit is refused)");
  edit->add_flag("--discard-state", discard_state,
                 "allow changes that invalidate a suspended VM's saved state (it cold-boots)");
  edit_flags.Register(edit);
  edit->callback([&] {
    json body = edit_flags.ToJson();
    if (discard_state) body["discard_state"] = true;
    if (body.empty()) throw UsageError{"vm edit: nothing to change; give at least one flag"};
    std::vector<std::pair<std::string, std::string>> headers;
    if (!if_version.empty()) headers.emplace_back("If-Match", "\"" + if_version + "\"");
    auto r = cli.Call("PATCH", VmPath(name), body.dump(), headers);
    if (!r) return void(rc = kFailed);
    rc = cli.Done(*r, fmt::format("vm '{}' updated (version {})", name,
                                  json::parse(r->body)["version"].get<int64_t>()));
  });

  vm->add_subcommand("ls", "list VMs")->callback([&] {
    auto r = cli.Call("GET", "/v1/vms");
    rc = r ? cli.Print(*r, VmListTable) : kFailed;
  });
  auto* show = vm->add_subcommand("show", "show one VM");
  show->add_option("NAME", name, "VM name")->required();
  show->callback([&] {
    auto r = cli.Call("GET", VmPath(name));
    rc = r ? cli.Print(*r, VmDetailTable) : kFailed;
  });
  auto* logs = vm->add_subcommand("logs", "print the VM's console log");
  logs->add_option("NAME", name, "VM name")->required();
  logs->add_flag("-f,--follow", follow, "keep printing new output");
  logs->callback([&] {
    if (follow) return void(rc = FollowLogs(cli, name));
    auto r = cli.Call("GET", VmPath(name, "/logs"));
    if (!r) return void(rc = kFailed);
    PrintLog(r->body);
  });
  auto* events = vm->add_subcommand("events", "what happened to the VM, oldest first");
  events->add_option("NAME", name, "VM name")->required();
  events->add_option("--limit", limit, "at most this many of the newest events")->default_val(100);
  events->callback([&] {
    auto r = cli.Call("GET", VmPath(name, fmt::format("/events?limit={}", limit)));
    rc = r ? cli.Print(*r, EventsTable) : kFailed;
  });
  auto* rm = vm->add_subcommand("rm", "delete a VM");
  rm->add_option("NAME", name, "VM name")->required();
  rm->add_flag("--force", force, "also delete a running or suspended VM (its state is lost)");
  rm->callback([&] {
    auto r = cli.Call("DELETE", VmPath(name, force ? "?force=true" : ""));
    if (!r) return void(rc = kFailed);
    std::printf("vm '%s' deleted\n", name.c_str());
  });

  auto action = [&](const char* verb, const char* help, const char* done) {
    auto* cmd = vm->add_subcommand(verb, help);
    cmd->add_option("NAME", name, "VM name")->required();
    return std::pair{cmd, std::string(done)};
  };
  auto [start, start_done] = action("start", "boot a VM, or resume a suspended one", "started");
  start->add_flag("--fresh", fresh, "discard a suspended VM's saved state and cold-boot");
  auto [stop, stop_done] = action("stop", "shut a VM down (no state kept)", "stopped");
  stop->add_flag("--kill", kill, "kill the VMM at once instead of a guest shutdown");
  auto [suspend, suspend_done] =
      action("suspend", "save the VM's state to disk and free its RAM", "suspended");
  auto [resume, resume_done] = action("resume", "restore a suspended VM", "resumed");
  bool no_wait = false;
  int wait_seconds = 300;
  for (auto* cmd : {start, stop, suspend, resume}) {
    cmd->add_flag("--no-wait", no_wait, "return at once, while the VM is still in transition");
    cmd->add_option("--timeout", wait_seconds, "seconds to wait for the VM to settle")
        ->default_str("300");
  }
  for (auto [cmd, done, query] : {std::tuple{start, start_done, std::string("start")},
                                  std::tuple{stop, stop_done, std::string("stop")},
                                  std::tuple{suspend, suspend_done, std::string("suspend")},
                                  std::tuple{resume, resume_done, std::string("resume")}}) {
    cmd->callback([&, done = done, query = query] {
      std::string params;
      if (query == "start" && fresh) params += "&fresh=true";
      if (query == "stop" && kill) params += "&kill=true";
      // hearthd answers once the VM settled (within the client's own timeout); a VM still in
      // transition then, or a busy hearthd that answered at once, is polled below.
      if (!no_wait) params += fmt::format("&wait={}s", std::clamp(wait_seconds, 1, 20));
      std::string target = VmPath(name, "/" + query);
      if (!params.empty()) target += "?" + params.substr(1);
      auto until = std::chrono::steady_clock::now() + std::chrono::seconds(wait_seconds);
      auto r = cli.Call("POST", target);
      if (!r) return void(rc = kFailed);
      if (no_wait) return void(rc = cli.Done(*r, fmt::format("vm '{}' {}", name, done)));
      std::string expected = query == "stop"      ? "stopped"
                             : query == "suspend" ? "suspended"
                                                  : "running";
      rc = WaitSettled(cli, name, *r, until, std::chrono::seconds(wait_seconds), expected);
    });
  }

  AddImageCommands(app, rc);

  std::string since, until, by, source;
  auto* usage = app.add_subcommand(
      "usage",
      "resources used per VM and in total: CPU-seconds, GiB-hours of RAM while running and of "
      "saved state while suspended, network and disk bytes, wakes and their latency");
  usage->add_option("NAME", name, "only this VM");
  usage->add_option("--since", since,
                    "from this RFC 3339 time, or this long ago (e.g. 24h); default 24h");
  usage->add_option("--until", until, "up to this RFC 3339 time or this long ago; default now");
  usage->add_option("--by", by, "also per minute, hour or day")
      ->check(CLI::IsMember({"minute", "hour", "day"}));
  usage
      ->add_option("--source", source,
                   "local (the node's store, default; hourly after a day, kept 7 days) or "
                   "clickhouse (with hearthd --clickhouse)")
      ->check(CLI::IsMember({"local", "clickhouse"}));
  usage->callback([&] {
    std::string target = "/v1/usage";
    char sep = '?';
    for (auto [key, value] :
         {std::pair{"vm", &name}, std::pair{"since", &since}, std::pair{"until", &until},
          std::pair{"by", &by}, std::pair{"source", &source}}) {
      if (value->empty()) continue;
      target += fmt::format("{}{}={}", sep, key, UrlQueryValue(*value));
      sep = '&';
    }
    auto r = cli.Call("GET", target);
    if (!r) return void(rc = kFailed);
    if (g.output == "csv") {
      std::fputs(UsageCsv(json::parse(r->body)).c_str(), stdout);
      return void(rc = kOk);
    }
    rc = cli.Print(*r, UsageTable);
  });

  auto* node =
      app.add_subcommand("node", "this node's capacity and backends")->require_subcommand(1);
  node->add_subcommand("info", "CPUs, memory, memory held by VMs, hypervisor backends")
      ->callback([&] {
        auto r = cli.Call("GET", "/v1/node");
        rc = r ? cli.Print(*r, NodeTable) : kFailed;
      });

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return kOk;
  } catch (const CLI::CallForAllHelp&) {
    std::cout << app.help("", CLI::AppFormatMode::All);
    return kOk;
  } catch (const CLI::ParseError& e) {
    // Name the command that lacks a subcommand and what was typed instead.
    CLI::App* cmd = &app;
    std::string path = "hearth";
    while (!cmd->get_subcommands().empty()) {
      cmd = cmd->get_subcommands().front();
      path += " " + cmd->get_name();
    }
    std::string msg = e.what();
    if (cmd->get_require_subcommand_min() > 0 && cmd->get_subcommands().empty()) {
      std::string names;
      for (const CLI::App* sub : cmd->get_subcommands({})) {
        names += (names.empty() ? "" : ", ") + sub->get_name();
      }
      std::vector<std::string> extra = app.remaining();
      msg = extra.empty() ? fmt::format("'{}' needs a subcommand: {}", path, names)
                          : fmt::format("'{}' has no subcommand '{}'; use one of: {}", path,
                                        extra.front(), names);
    }
    std::fprintf(stderr, "hearth: %s (see %s --help)\n", msg.c_str(), path.c_str());
    return kUsage;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "hearth: %s\n", e.message.c_str());
    return kUsage;
  }
  return rc;
}

}  // namespace hearth::cli

int main(int argc, char** argv) { return hearth::cli::Main(argc, argv); }

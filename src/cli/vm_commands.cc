#include "cli/vm_commands.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cli/output.h"
#include "cli/spec_file.h"
#include "common/text.h"
#include "model/validator.h"
#include "model/vm.h"

namespace hearth::cli {
namespace {

using nlohmann::json;

json LabelsJson(const std::vector<std::string>& flags) {
  auto labels = ParseLabelFlags(flags);
  if (!labels) throw UsageError{labels.error().message};
  return *labels;
}

// Flags that set VM spec fields, shared by create and edit.
struct SpecFlags {
  int vcpus = 0;
  std::string memory, kernel, initrd, rootfs, image, cmdline, idle_timeout, stop_after, stop_at,
      on_timer, wake, wake_ports, restart;
  bool rootfs_readonly = false;
  std::vector<std::string> publish, labels;
  std::vector<CLI::Option*> options;

  void Register(CLI::App* cmd) {
    auto add = [&](const char* flag, std::string& into, const char* help) {
      options.push_back(cmd->add_option(flag, into, help));
    };
    const VmSpec defaults;
    options.push_back(
        cmd->add_option("--vcpus", vcpus,
                        fmt::format("virtual CPUs, 1-{} (default {})", kMaxVcpus, defaults.vcpus)));
    add("--memory", memory, "guest RAM: 512, 256M, 2G (MiB unless a unit is given; default 256M)");
    add("--kernel", kernel, "path of an ELF vmlinux or bzImage on the host");
    add("--initrd", initrd, "path of an initramfs (\"\" to remove)");
    add("--rootfs", rootfs, "root disk: an image file or block device (\"\" to remove)");
    options.push_back(cmd->add_flag("--rootfs-readonly{true},--rootfs-readwrite{false}",
                                    rootfs_readonly, "attach the root disk read-only"));
    add("--image", image,
        "image name from `hearth image ls`: it provides the kernel plus an initrd or a root disk "
        "(instead of --kernel/--initrd/--rootfs)");
    add("--cmdline", cmdline, "extra kernel command line");
    options.push_back(cmd->add_option("--publish", publish,
                                      "[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp] as docker: 8080:80, "
                                      "127.0.0.1:8080:80 (this host only), 5353:53/udp; "
                                      "repeatable; \"\" clears")
                          ->take_all()
                          ->allow_extra_args(false));
    add("--idle-timeout", idle_timeout,
        "act after this long (e.g. 30s) without a packet either way on the VM's tap, or none");
    add("--stop-after", stop_after,
        "act after this much running time since the last start or resume (e.g. 2h), or none");
    add("--stop-at", stop_at, "act at this RFC 3339 time if the VM was started before it, or none");
    add("--on-timer", on_timer,
        "what timers do: suspend (default; state kept) or stop (guest shutdown, no state)");
    add("--wake", wake,
        "on-packet (the default: a packet for the suspended VM resumes it) or never");
    add("--wake-ports", wake_ports, "e.g. tcp:80,tcp:443 (default: any packet); \"\" for any");
    add("--restart", restart, "never, on-failure (default) or always");
    options.push_back(cmd->add_option("--label", labels,
                                      "KEY=VALUE label, repeatable (KEY- removes one); "
                                      "filter with `hearth vm ls --label`")
                          ->allow_extra_args(false));
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
    if (Given("--label")) out["labels"] = LabelsJson(labels);
    return out;
  }
};

// The one VM of `-f FILE` for create and edit.
DeclaredVm ReadOneVm(const std::string& path) {
  auto vms = ParseVmFile(ReadFileArgument(path, "-f"));
  if (!vms) throw UsageError{fmt::format("-f {}: {}", path, vms.error().message)};
  if (vms->size() != 1) {
    throw UsageError{fmt::format("-f {}: holds {} VMs; use `hearth apply -f {}` for several", path,
                                 vms->size(), path)};
  }
  return std::move(vms->front());
}

// The spec fields of `-f` with the flags' on top (a flag's timers merge into the file's).
json MergeFlags(json body, const json& flags) {
  for (const auto& [k, v] : flags.items()) {
    if ((k == "timers" || k == "labels") && body.contains(k) && body[k].is_object()) {
      body[k].update(v);
    } else {
      body[k] = v;
    }
  }
  return body;
}

// How a suspended VM comes back, after "vm 'web' is suspended".
std::string HowItComesBack(const json& vm, const std::string& name) {
  if (vm.value("wake", "") == "never") {
    return fmt::format("; it stays so until `hearth vm resume {}` (wake: never)", name);
  }
  std::string ports;
  for (const auto& p : vm.value("wake_ports", json::array())) {
    if (p.is_string()) ports += (ports.empty() ? "" : ",") + p.get<std::string>();
  }
  std::string where =
      EscapeText(vm.value("ip", json()).is_string() ? vm["ip"].get<std::string>() : std::string());
  for (const auto& p : vm.value("publish", json::array())) {
    if (p.is_object() && p.contains("host_port")) {
      where += fmt::format(", host port {}/{}", p["host_port"].dump(), p.value("protocol", "tcp"));
    }
  }
  return fmt::format("; {} for it{} wakes it (wake: on-packet), as does `hearth vm resume {}`",
                     ports.empty() ? "any packet" : "a packet on " + ports,
                     where.empty() ? "" : " (" + where + ")", name);
}

// "vm 'web' is running (172.30.0.2, qemu)" and the like, for a VM that settled in `vm`.
std::string SettledSentence(const std::string& name, const json& vm, bool already) {
  auto text = [&](const char* key) {  // escaped: a reason can quote the guest's console
    return vm.is_object() && vm.contains(key) && vm[key].is_string()
               ? EscapeText(vm[key].get<std::string>())
               : std::string();
  };
  std::string state = text("state");
  if (already && state == "created")
    return fmt::format("vm '{}' is not running (never started)", name);
  std::string detail;
  if (state == "running") {
    detail = fmt::format(" ({}{}{})", text("ip"), text("ip").empty() ? "" : ", ", text("backend"));
  } else if (state == "suspended") {
    detail = HowItComesBack(vm, name);
  }
  return fmt::format("vm '{}' is {}{}{}", name, already ? "already " : "", state, detail);
}

// After a lifecycle request: polls the VM until it leaves its transitional state (at most until
// `until`, `timeout` after the request was sent), then reports where it settled. Exit 1 when it
// ended failed, elsewhere than `expected` (a suspend that failed leaves the VM running), or did
// not settle in time. `quiet`: print only errors.
int WaitSettled(Cli& cli, const std::string& name, api::HttpResponse r,
                std::chrono::steady_clock::time_point until, std::chrono::seconds timeout,
                const std::string& expected, bool quiet) {
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
  if (quiet) return kOk;
  return cli.Done(r, SettledSentence(name, vm, /*already=*/false));
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

// The query of GET /v1/vms/NAME/logs: the last `tail_lines` lines (all kept ones with 0), with
// arrival times if `timestamps`.
std::string LogsQuery(int tail_lines, bool timestamps, bool all = false) {
  std::vector<std::string> params;
  if (all) params.push_back("tail_bytes=1048576");
  if (tail_lines > 0) params.push_back(fmt::format("tail_lines={}", tail_lines));
  if (timestamps) params.push_back("timestamps=true");
  return params.empty() ? "/logs" : fmt::format("/logs?{}", fmt::join(params, "&"));
}

// `vm ls`: GET /v1/vms, filtered by hearthd.
int ListVms(Cli& cli, const std::string& states, const std::vector<std::string>& labels) {
  std::string target = "/v1/vms";
  char sep = '?';
  if (!states.empty()) {
    target += fmt::format("{}state={}", sep, UrlQueryValue(states));
    sep = '&';
  }
  for (const std::string& label : labels) {
    target += fmt::format("{}label={}", sep, UrlQueryValue(label));
    sep = '&';
  }
  auto r = cli.Call("GET", target);
  return r ? cli.Print(*r, VmListTable, VmWideTable) : kFailed;
}

int FollowLogs(Cli& cli, const std::string& name, bool timestamps) {
  std::string last;
  while (true) {
    auto r = cli.Call("GET", VmPath(name, LogsQuery(0, timestamps, true)));
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

// The lifecycle commands: each sends POST /v1/vms/NAME/VERB and, unless --no-wait, waits for
// the VM to settle.
struct LifecycleCommand {
  const char* verb;
  const char* help;
  const char* done;  // "vm 'NAME' DONE" with --no-wait
  // The command's own flag, if any, and the query parameter it sets.
  const char* flag;
  const char* flag_help;
  const char* flag_query;
  const char* expected;  // the state the VM settles in when the command worked
};

constexpr LifecycleCommand kLifecycleCommands[] = {
    {"start", "boot a VM, or resume a suspended one", "started", "--fresh",
     "discard a suspended VM's saved state and cold-boot", "fresh=true", "running"},
    {"stop", "shut a VM down (no state kept)", "stopped", "--kill",
     "kill the VMM at once instead of a guest shutdown", "kill=true", "stopped"},
    {"suspend", "save the VM's state to disk and free its RAM", "suspended", nullptr, nullptr,
     nullptr, "suspended"},
    {"resume", "restore a suspended VM", "resumed", nullptr, nullptr, nullptr, "running"},
};

// What a command's flags parse into; owned by its callback, which outlives the parse.
struct VmArgs {
  std::string name, file, if_version, states;
  std::vector<std::string> labels;
  bool force = false, flag = false, follow = false, discard_state = false, no_wait = false,
       timestamps = false;
  int limit = 100, tail_lines = 0;
  int wait_seconds = 300;
  SpecFlags spec;
};

void AddCreate(CLI::App* vm, Cli& cli, int& rc) {
  auto a = std::make_shared<VmArgs>();
  auto* create = vm->add_subcommand("create", "define a VM (it starts with `hearth vm start`)");
  create
      ->add_option("NAME", a->name,
                   "VM name: 1-63 of a-z, 0-9 and '-', starting with a letter, not ending with "
                   "'-' (may come from -f's name)")
      ->check(VmNameCheck());
  create->footer(CommandFooter(
      "  hearth vm create web --image default --memory 128M --publish 8080:80\n"
      "  hearth vm create web --kernel /srv/hearth/vmlinux --initrd /srv/hearth/initrd.img \\\n"
      "      --vcpus 2 --memory 1G --idle-timeout 30s --label env=prod\n"
      "  hearth vm show web -o yaml > web.yaml && hearth vm create -f web.yaml web2\n"
      "Unset fields take the defaults above; start the VM with `hearth vm start NAME`."));
  create->add_option("-f,--file", a->file,
                     "YAML/JSON file of the VM (- for stdin), e.g. from `hearth vm show NAME -o "
                     "yaml`; flags override it");
  a->spec.Register(create);
  create->callback([a, &cli, &rc] {
    json body = json::object();
    if (!a->file.empty()) {
      DeclaredVm file = ReadOneVm(a->file);
      if (!file.name.empty() && !a->name.empty() && file.name != a->name) {
        throw UsageError{
            fmt::format("-f {}: the file is for vm '{}', not '{}'; drop NAME or "
                        "change the file's name",
                        a->file, file.name, a->name)};
      }
      if (a->name.empty()) a->name = file.name;
      body = std::move(file.spec);  // a new VM: the file's id and generation are another's
    }
    if (a->name.empty()) throw UsageError{"vm create: NAME is required (or a `name:` in -f)"};
    const std::string& name = a->name;
    body = MergeFlags(std::move(body), a->spec.ToJson());
    body["name"] = name;
    auto r = cli.Call("POST", "/v1/vms", body.dump());
    if (!r) return void(rc = kFailed);
    json vm_json = json::parse(r->body);
    rc = cli.Done(*r, fmt::format("vm '{}' created ({}, generation {}); start it with `hearth vm "
                                  "start {}`",
                                  name, vm_json["id"].get<std::string>(),
                                  vm_json["generation"].get<int64_t>(), name));
  });
}

// PATCH of the flags' fields on top of -f's; the file's generation guards the edit as
// --if-version does, and its id must be the VM's.
int RunEdit(Cli& cli, VmArgs& a) {
  json body = json::object();
  std::vector<std::pair<std::string, std::string>> headers;
  if (!a.file.empty()) {
    DeclaredVm file = ReadOneVm(a.file);
    if (!file.name.empty() && file.name != a.name) {
      throw UsageError{
          fmt::format("-f {}: the file is for vm '{}', not '{}'", a.file, file.name, a.name)};
    }
    if (file.id) {
      auto now = cli.Call("GET", VmPath(a.name));
      if (!now) return kFailed;
      std::string id = json::parse(now->body).value("id", "");
      if (id != *file.id) {
        std::fprintf(stderr,
                     "hearth: id: the file is for vm '%s' with id %s, but it is now %s (deleted "
                     "and created again); remove `id` from the file to edit this VM\n",
                     a.name.c_str(), EscapeText(*file.id).c_str(), EscapeText(id).c_str());
        return kFailed;
      }
    }
    body = std::move(file.spec);
    if (file.generation) body["generation"] = *file.generation;
  }
  body = MergeFlags(std::move(body), a.spec.ToJson());
  if (a.discard_state) body["discard_state"] = true;
  if (body.empty()) throw UsageError{"vm edit: nothing to change; give at least one flag or -f"};
  if (!a.if_version.empty()) headers.emplace_back("If-Match", "\"" + a.if_version + "\"");
  auto r = cli.Call("PATCH", VmPath(a.name), body.dump(), headers);
  if (!r) return kFailed;
  return cli.Done(*r, fmt::format("vm '{}' updated (generation {})", a.name,
                                  json::parse(r->body)["generation"].get<int64_t>()));
}

void AddEdit(CLI::App* vm, Cli& cli, int& rc) {
  auto a = std::make_shared<VmArgs>();
  auto* edit = vm->add_subcommand("edit", "change a VM's spec (fields not given stay as they are)");
  edit->add_option("NAME", a->name, "VM name")->required()->check(VmNameCheck());
  edit->footer(CommandFooter(
      "  hearth vm edit web --memory 512M --if-version 3\n"
      "  hearth vm edit web --idle-timeout none --label env=staging --label team-\n"
      "  hearth vm edit web -f web.yaml       # an edited `hearth vm show web -o yaml`\n"
      "Fields not given stay as they are; hardware (vcpus, memory, disks) changes only while\n"
      "the VM is stopped."));
  edit->add_option("--if-version,--if-generation", a->if_version,
                   "only if the VM's spec is still at this generation (`hearth vm show`); "
                   "starting or stopping it does not change it");
  edit->add_option("-f,--file", a->file,
                   "YAML/JSON file of fields to change (- for stdin), e.g. an edited `hearth vm "
                   "show NAME -o yaml`; its id and generation must still be the VM's");
  edit->add_flag("--discard-state", a->discard_state,
                 "allow changes that invalidate a suspended VM's saved state (it cold-boots)");
  a->spec.Register(edit);
  edit->callback([a, &cli, &rc] { rc = RunEdit(cli, *a); });
}

// ls, show, logs and events: they change nothing.
void AddReads(CLI::App* vm, Cli& cli, int& rc) {
  auto a = std::make_shared<VmArgs>();
  auto* ls = vm->add_subcommand("ls", "list VMs");
  AddOutputFlag(ls, cli, {"table", "wide", "json", "yaml"});
  ls->add_option("--state", a->states,
                 "only VMs in these states, comma-separated (e.g. running,suspended)");
  ls->add_option("--label", a->labels,
                 "only VMs with this label KEY=VALUE; repeatable (all must "
                 "match)")
      ->allow_extra_args(false);
  ls->footer(
      CommandFooter("  hearth vm ls\n"
                    "  hearth vm ls -o wide                   # also id, image, wake, pid, "
                    "labels...\n"
                    "  hearth vm ls --state running,suspended --label env=prod\n"
                    "  hearth vm ls -o json | jq -r '.vms[].name'"));
  ls->callback([a, &cli, &rc] { rc = ListVms(cli, a->states, a->labels); });
  auto* show = vm->add_subcommand("show", "show one VM");
  AddOutputFlag(show, cli, {"table", "json", "yaml"});
  show->add_option("NAME", a->name, "VM name")->required()->check(VmNameCheck());
  show->footer(CommandFooter("  hearth vm show web\n  hearth vm show web -o yaml > web.yaml"));
  show->callback([a, &cli, &rc] {
    auto r = cli.Call("GET", VmPath(a->name));
    rc = r ? cli.Print(*r, VmDetailTable) : kFailed;
  });
  auto* logs = vm->add_subcommand("logs", "print the VM's console log");
  logs->add_option("NAME", a->name, "VM name")->required()->check(VmNameCheck());
  logs->add_flag("-f,--follow", a->follow, "keep printing new output");
  logs->add_option("--tail", a->tail_lines, "only the last N lines (default: the last 64 KiB)")
      ->check(CLI::Range(1, 100000));
  logs->add_flag("-t,--timestamps", a->timestamps,
                 "prefix each line with when hearthd saw it arrive (RFC 3339, UTC; within a "
                 "second)");
  logs->footer(
      CommandFooter("  hearth vm logs web\n  hearth vm logs web --tail 20 --timestamps\n"
                    "  hearth vm logs web -f"));
  logs->callback([a, &cli, &rc] {
    if (a->follow) return void(rc = FollowLogs(cli, a->name, a->timestamps));
    auto r = cli.Call("GET", VmPath(a->name, LogsQuery(a->tail_lines, a->timestamps)));
    if (!r) return void(rc = kFailed);
    PrintLog(r->body);
  });
  auto* events = vm->add_subcommand("events", "what happened to the VM, oldest first");
  events->add_option("NAME", a->name, "VM name")->required()->check(VmNameCheck());
  AddOutputFlag(events, cli, {"table", "json", "yaml"});
  events->footer(CommandFooter(
      "  hearth vm events web                # times in the local zone on a terminal\n"
      "  hearth vm events web --limit 10 -o json"));
  events->add_option("--limit", a->limit, "at most this many of the newest events")
      ->default_val(100);
  events->callback([a, &cli, &rc] {
    auto r = cli.Call("GET", VmPath(a->name, fmt::format("/events?limit={}", a->limit)));
    // On a terminal, times in the local zone; into a pipe, RFC 3339 UTC as the API has them.
    std::string (*table)(const json&) = EventsTable;
    if (isatty(STDOUT_FILENO)) table = LocalEventsTable;
    rc = r ? cli.Print(*r, table) : kFailed;
  });
}

void AddRm(CLI::App* vm, Cli& cli, int& rc) {
  auto a = std::make_shared<VmArgs>();
  auto* rm = vm->add_subcommand("rm", "delete a VM");
  rm->add_option("NAME", a->name, "VM name")->required()->check(VmNameCheck());
  rm->footer(CommandFooter("  hearth vm rm web\n  hearth vm rm web --force   # even if running"));
  rm->add_flag("--force", a->force, "also delete a running or suspended VM (its state is lost)");
  rm->callback([a, &cli, &rc] {
    auto r = cli.Call("DELETE", VmPath(a->name, a->force ? "?force=true" : ""));
    if (!r) return void(rc = kFailed);
    std::printf("vm '%s' deleted\n", a->name.c_str());
  });
}

// Sends the lifecycle request of `c` and, unless --no-wait, waits for the VM to settle. `quiet`:
// print only errors.
int RunLifecycle(Cli& cli, const LifecycleCommand& c, const VmArgs& a, bool quiet = false) {
  std::string params;
  if (c.flag && a.flag) params += fmt::format("&{}", c.flag_query);
  // hearthd answers once the VM settled (within the client's own timeout); a VM still in
  // transition then, or a busy hearthd that answered at once, is polled below.
  if (!a.no_wait) params += fmt::format("&wait={}s", std::clamp(a.wait_seconds, 1, 20));
  std::string target = VmPath(a.name, fmt::format("/{}", c.verb));
  if (!params.empty()) target += "?" + params.substr(1);
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(a.wait_seconds);
  auto r = cli.Call("POST", target);
  if (!r) return kFailed;
  if (!HeaderOf(*r, "hearth-unchanged").empty()) {
    if (quiet) return kOk;
    return cli.Done(*r, SettledSentence(a.name, json::parse(r->body, nullptr, false), true));
  }
  if (a.no_wait) {
    if (quiet) return kOk;
    // Not settled yet: say where the VM is, not where it is going.
    json vm = json::parse(r->body, nullptr, false);
    std::string state =
        vm.is_object() && vm["state"].is_string() ? vm["state"].get<std::string>() : "";
    return cli.Done(*r, state.empty() ? fmt::format("vm '{}' {}", a.name, c.done)
                                      : fmt::format("vm '{}' is {}", a.name, state));
  }
  return WaitSettled(cli, a.name, *r, until, std::chrono::seconds(a.wait_seconds), c.expected,
                     quiet);
}

const LifecycleCommand& LifecycleOf(std::string_view verb) {
  for (const LifecycleCommand& c : kLifecycleCommands) {
    if (verb == c.verb) return c;
  }
  std::abort();  // every verb asked for is in the table
}

// `vm restart`: a stop (unless nothing runs), waited for, then a start.
void AddRestart(CLI::App* vm, Cli& cli, int& rc) {
  auto a = std::make_shared<VmArgs>();
  auto* cmd = vm->add_subcommand(
      "restart",
      "stop a VM and boot it again (a suspended VM's saved state is discarded); a VM that is not "
      "running is just started");
  cmd->add_option("NAME", a->name, "VM name")->required();
  cmd->add_flag("--kill", a->flag, "kill the VMM at once instead of a guest shutdown");
  cmd->add_flag("--no-wait", a->no_wait, "return once the start is under way");
  cmd->add_option("--timeout", a->wait_seconds, "seconds to wait for each step")
      ->default_str("300");
  cmd->callback([a, &cli, &rc] {
    auto now = cli.Call("GET", VmPath(a->name));
    if (!now) return void(rc = kFailed);
    std::string state = json::parse(now->body, nullptr, false).value("state", "");
    if (state != "created" && state != "stopped" && state != "failed") {
      VmArgs stop = *a;
      stop.no_wait = false;
      rc = RunLifecycle(cli, LifecycleOf("stop"), stop, /*quiet=*/true);
      if (rc != kOk) return;
    }
    VmArgs start = *a;
    start.flag = false;  // --kill was the stop's
    rc = RunLifecycle(cli, LifecycleOf("start"), start);
  });
}

void AddLifecycle(CLI::App* vm, Cli& cli, int& rc) {
  for (const LifecycleCommand& c : kLifecycleCommands) {
    auto a = std::make_shared<VmArgs>();
    auto* cmd = vm->add_subcommand(c.verb, c.help);
    cmd->add_option("NAME", a->name, "VM name")->required()->check(VmNameCheck());
    cmd->footer(CommandFooter(
        fmt::format("  hearth vm {0} web\n  hearth vm {0} web --no-wait{1}", c.verb,
                    c.flag ? fmt::format("\n  hearth vm {} web {}", c.verb, c.flag) : "")));
    if (c.flag) cmd->add_flag(c.flag, a->flag, c.flag_help);
    cmd->add_flag("--no-wait", a->no_wait, "return at once, while the VM is still in transition");
    cmd->add_option("--timeout", a->wait_seconds, "seconds to wait for the VM to settle")
        ->default_str("300");
    cmd->callback([a, &c, &cli, &rc] { rc = RunLifecycle(cli, c, *a); });
  }
}

}  // namespace

void AddVmCommands(CLI::App& app, Cli& cli, int& rc) {
  auto* vm = app.add_subcommand("vm", "create, change and run VMs")->require_subcommand(1);
  for (auto add : {AddCreate, AddEdit, AddReads, AddRm, AddLifecycle, AddRestart}) {
    add(vm, cli, rc);
  }
  vm->footer(
      CommandFooter("  hearth vm create web --image default\n  hearth vm start web\n"
                    "  hearth vm ls\nEach subcommand has its own --help."));
}

}  // namespace hearth::cli

// `hearth apply -f FILE`: makes each VM of the file exist with the spec the file gives
// (PUT /v1/vms/NAME: created when missing, replaced when different, left alone when equal).
#include "cli/apply_command.h"

#include <fmt/format.h>

#include <cstdio>
#include <memory>
#include <string>

#include "cli/spec_file.h"
#include "common/text.h"

namespace hearth::cli {
namespace {

using nlohmann::json;

// The id the file was written from must be the VM's now: a VM deleted and created again under
// the same name is another VM. Nothing to compare when the VM does not exist (it is created).
bool SameVm(Cli& cli, const DeclaredVm& vm) {
  if (!vm.id) return true;
  auto r = cli.Request("GET", VmPath(vm.name));
  if (!r || r->status != 200) return true;  // missing, or the PUT will report the problem
  std::string now = json::parse(r->body, nullptr, false).value("id", "");
  if (now == *vm.id) return true;
  std::fprintf(stderr,
               "hearth: id: the file describes vm '%s' with id %s, but vm '%s' is now %s (deleted "
               "and created again); remove `id` from the file to apply it to this VM\n",
               vm.name.c_str(), EscapeText(*vm.id).c_str(), vm.name.c_str(),
               EscapeText(now).c_str());
  return false;
}

// Applies one VM; prints what happened. False when it failed (the error is printed).
bool ApplyOne(Cli& cli, const DeclaredVm& vm, bool discard_state) {
  if (!SameVm(cli, vm)) return false;
  json body = vm.spec;
  if (vm.generation) body["generation"] = *vm.generation;
  if (discard_state) body["discard_state"] = true;
  auto r = cli.Call("PUT", VmPath(vm.name), body.dump());
  if (!r) return false;
  json got = json::parse(r->body, nullptr, false);
  int64_t generation = got.is_object() ? got.value("generation", int64_t{0}) : 0;
  std::string what = r->status == 201                            ? "created"
                     : !HeaderOf(*r, "hearth-unchanged").empty() ? "unchanged"
                                                                 : "updated";
  cli.Done(*r, fmt::format("vm '{}' {} (generation {})", vm.name, what, generation));
  return true;
}

}  // namespace

void AddApplyCommand(CLI::App& app, Cli& cli, int& rc) {
  struct Args {
    std::string file;
    bool discard_state = false;
  };
  auto a = std::make_shared<Args>();
  auto* apply = app.add_subcommand(
      "apply", "create or update VMs to match a file (several VMs: \"---\" between them)");
  apply->add_option("-f,--file", a->file, "YAML or JSON file of VMs (- for stdin)")->required();
  apply->add_flag("--discard-state", a->discard_state,
                  "allow changes that invalidate a suspended VM's saved state (it cold-boots)");
  apply->footer(
      R"(Each VM in the file needs a name. Fields as in `hearth vm show NAME -o yaml`, whose
output can be applied as it is: state, version, ip and other fields about the record are ignored;
id and generation, when present, must still match the VM (else it is refused). A VM not in the
file is left alone. Fields a VM's file leaves out take their defaults.

Example file:
  name: web
  image: default
  memory: 256M           # or memory_mib: 256
  publish: ["8080:80"]
  idle_timeout: 5m       # or timers: {idle_timeout: 5m}
  ---
  name: worker
  image: default
  vcpus: 2

Examples:
  hearth apply -f vms.yaml
  hearth vm show web -o yaml > web.yaml && $EDITOR web.yaml && hearth apply -f web.yaml)");
  apply->callback([a, &cli, &rc] {
    auto vms = ParseVmFile(ReadFileArgument(a->file, "-f"));
    if (!vms) throw UsageError{fmt::format("-f {}: {}", a->file, vms.error().message)};
    for (size_t i = 0; i < vms->size(); ++i) {
      if ((*vms)[i].name.empty()) {
        throw UsageError{fmt::format("-f {}: vm {} of {} has no name; give each VM a `name:`",
                                     a->file, i + 1, vms->size())};
      }
    }
    rc = kOk;
    for (const DeclaredVm& vm : *vms) {
      if (!ApplyOne(cli, vm, a->discard_state)) rc = kFailed;
    }
  });
}

}  // namespace hearth::cli

#include "model/validator.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "common/text.h"
#include "model/lifecycle.h"

namespace hearth {
namespace {

tl::unexpected<Error> Invalid(std::string field, std::string message) {
  return Fail(Code::kInvalidArgument, fmt::format("{}: {}", field, message), field);
}

bool IsElf(const std::string& head) {
  return head.size() >= 4 && head.compare(0, 4,
                                          "\x7f"
                                          "ELF") == 0;
}
bool IsBzImage(const std::string& head) {
  return head.size() >= 0x206 && head.compare(0x202, 4, "HdrS") == 0;
}

std::string_view KindName(FileKind k) {
  switch (k) {
    case FileKind::kMissing:
      return "missing";
    case FileKind::kRegular:
      return "a regular file";
    case FileKind::kBlockDevice:
      return "a block device";
    case FileKind::kDirectory:
      return "a directory";
    case FileKind::kOther:
      return "neither a file nor a block device";
  }
  return "unknown";
}

std::string JoinPaths(const std::vector<std::filesystem::path>& paths) {
  std::string out;
  for (const auto& p : paths) out += (out.empty() ? "" : ", ") + p.string();
  return out.empty() ? "none" : out;
}

// Refuses what a caller must not hand to the VMM even when it exists and is readable: kernel
// interfaces (/proc, /sys), hearth's own files, and anything outside ctx.allowed_paths. Both the
// path as given and the path it resolves to are checked, so neither a symlink nor ".." helps.
Status CheckFilePolicy(std::string_view field_view, const std::string& path, const FileFacts& f,
                       const ValidationContext& ctx) {
  namespace fs = std::filesystem;
  std::string field(field_view);
  fs::path given = fs::path(path).lexically_normal();
  fs::path real = f.canonical.empty() ? given : fs::path(f.canonical);
  std::string shown = real == given ? fmt::format("'{}'", path)
                                    : fmt::format("'{}' (resolves to '{}')", path, real.string());
  for (const fs::path& p : {given, real}) {
    for (const char* kernel_dir : {"/proc", "/sys"}) {
      if (IsWithin(p, kernel_dir)) {
        return Invalid(field, fmt::format("{} is under {}, a kernel interface, not a guest file",
                                          shown, kernel_dir));
      }
    }
  }
  if (ctx.paths) {
    fs::path data = ctx.paths->data_dir().lexically_normal();
    std::vector<fs::path> data_dirs = {data};
    if (FileFacts d = ctx.files->Probe(data.string()); !d.canonical.empty()) {
      data_dirs.emplace_back(d.canonical);
    }
    for (const fs::path& p : {given, real}) {
      for (const fs::path& dir : data_dirs) {
        if (IsWithin(p, dir) && !IsWithin(p, dir / "images")) {
          return Invalid(field, fmt::format("{} is one of hearth's own files (under {}); guest "
                                            "files there may only be in {}",
                                            shown, data.string(), (data / "images").string()));
        }
      }
    }
  }
  if (!ctx.allowed_paths) return Ok();
  const auto& allowed = *ctx.allowed_paths;
  bool block = f.kind == FileKind::kBlockDevice;
  for (const fs::path& entry : allowed) {
    fs::path dir = entry.lexically_normal();
    if (block ? real == dir : IsWithin(real, dir)) return Ok();
  }
  if (block) {
    return Invalid(field, fmt::format("{} is a block device that hearthd's --allowed-paths ({}) "
                                      "does not list; block devices are used only when listed "
                                      "themselves",
                                      shown, JoinPaths(allowed)));
  }
  return Invalid(field, fmt::format("{} is outside the paths hearthd allows for guest files ({}); "
                                    "put the file there, or start hearthd with --allowed-paths "
                                    "that include it",
                                    shown, JoinPaths(allowed)));
}

// Checks that `path` is absolute, exists, is readable and of an allowed kind.
Result<FileFacts> CheckFile(std::string_view field, const std::string& path,
                            const ValidationContext& ctx, bool allow_block) {
  const FileProbe& files = *ctx.files;
  if (FindControl(path)) return Invalid(std::string(field), DescribeControl(path));
  if (path.empty() || path[0] != '/') {
    return Invalid(std::string(field), fmt::format("'{}' is not an absolute path", path));
  }
  FileFacts f = files.Probe(path);
  if (f.kind == FileKind::kMissing) {
    return Invalid(std::string(field), fmt::format("'{}' does not exist ({})", path, f.error));
  }
  bool kind_ok = f.kind == FileKind::kRegular || (allow_block && f.kind == FileKind::kBlockDevice);
  if (!kind_ok) {
    return Invalid(std::string(field),
                   fmt::format("'{}' is {}; expected a regular file{}", path, KindName(f.kind),
                               allow_block ? " or a block device" : ""));
  }
  if (!f.readable) {
    return Invalid(std::string(field), fmt::format("'{}' is not readable ({})", path, f.error));
  }
  if (auto s = CheckFilePolicy(field, path, f, ctx); !s) return Fail(s.error());
  return f;
}

Status CheckPort(const std::string& field, int port) {
  if (port < 1 || port > 65535) {
    return Invalid(field, fmt::format("port {} is out of range; allowed 1-65535", port));
  }
  return Ok();
}

Status CheckFiles(const VmSpec& spec, const ValidationContext& ctx) {
  const FileProbe& files = *ctx.files;
  if (!spec.image.empty()) {
    if (auto s = ValidateName(spec.image); !s) {
      return Invalid("image", fmt::format("'{}' is not a valid image name", Printable(spec.image)));
    }
    if (ctx.paths) {
      FileFacts f = files.Probe(ctx.paths->image_dir(spec.image).string());
      if (f.kind != FileKind::kDirectory) {
        return Invalid("image", fmt::format("no image named '{}' in {}; see `hearth image ls`",
                                            spec.image, ctx.paths->images_dir().string()));
      }
    }
  }
  if (spec.kernel.empty() && spec.image.empty()) {
    return Invalid("kernel", "required: give a kernel path or an image");
  }
  if (!spec.kernel.empty()) {
    auto f = CheckFile("kernel", spec.kernel, ctx, false);
    if (!f) return Fail(f.error());
    if (!IsElf(f->head) && !IsBzImage(f->head)) {
      return Invalid("kernel",
                     fmt::format("'{}' is neither an ELF vmlinux nor a bzImage", spec.kernel));
    }
  }
  if (!spec.initrd.empty()) {
    if (auto f = CheckFile("initrd", spec.initrd, ctx, false); !f) return Fail(f.error());
  }
  if (!spec.rootfs.empty()) {
    auto f = CheckFile("rootfs", spec.rootfs, ctx, true);
    if (!f) return Fail(f.error());
    for (const VmRecord* other : ctx.others) {
      if (other->spec.rootfs.empty()) continue;
      if (spec.rootfs_readonly && other->spec.rootfs_readonly) continue;
      FileFacts o = files.Probe(other->spec.rootfs);
      bool same = other->spec.rootfs == spec.rootfs ||
                  (o.kind != FileKind::kMissing && o.device == f->device && o.inode == f->inode);
      if (same) {
        return Invalid("rootfs",
                       fmt::format("'{}' is already used by vm '{}' and one of them opens it "
                                   "read-write; give each VM its own copy, or set "
                                   "rootfs_readonly on both",
                                   spec.rootfs, other->name));
      }
    }
  }
  return Ok();
}

// Whether `previous` already published `p` (its host socket was checked then, and hearth's own
// DNAT of it is not a holder): the same port on the same address, or on all addresses.
bool WasPublished(const PortMapping& p, const VmSpec* previous) {
  if (!previous) return false;
  return std::any_of(previous->publish.begin(), previous->publish.end(), [&](const PortMapping& q) {
    return PublishOverlaps(p, q) && (q.host_ip.empty() || q.host_ip == p.host_ip);
  });
}

// "8080/tcp", or "127.0.0.1:8080/tcp" for a port on one host address.
std::string HostSocket(const PortMapping& p) {
  return fmt::format("{}{}/{}", p.host_ip.empty() ? "" : p.host_ip + ":", p.host_port,
                     ToString(p.protocol));
}

// The checks of publish[i] against the host: its address is the host's, and no host process
// holds the port there.
Status CheckPublishOnHost(const PortMapping& p, const std::string& where,
                          const ValidationContext& ctx, const VmSpec* previous) {
  if (!ctx.ports) return Ok();
  // An address published before is not re-checked, so that an edit of another field still works
  // after the host lost that address (the rule then matches nothing until it is back).
  bool address_kept =
      previous &&
      std::any_of(previous->publish.begin(), previous->publish.end(), [&](const PortMapping& q) {
        return PublishOverlaps(p, q) && q.host_ip == p.host_ip;
      });
  if (!p.host_ip.empty() && !address_kept && !ctx.ports->IsHostAddress(p.host_ip)) {
    return Invalid(where + ".host_ip",
                   fmt::format("{} is not an address of this host; publish on one of its own "
                               "addresses (see `ip -4 addr`), on 127.0.0.1, or on all of them "
                               "(HOSTPORT:GUESTPORT)",
                               p.host_ip));
  }
  if (WasPublished(p, previous)) return Ok();
  if (auto holder = ctx.ports->Holder(p.host_ip, p.host_port, p.protocol)) {
    return Invalid(where + ".host_port",
                   fmt::format("host port {} is held on this host by {}; publishing it would "
                               "take it on {}: pick another host port{}",
                               HostSocket(p), Printable(*holder),
                               p.host_ip.empty() ? "every host address" : p.host_ip,
                               p.host_ip.empty() ? ", or publish it on one host address the "
                                                   "holder does not use (HOSTIP:HOSTPORT:GUESTPORT)"
                                                 : ""));
  }
  return Ok();
}

Status CheckNetwork(const VmSpec& spec, const ValidationContext& ctx, const VmSpec* previous) {
  for (size_t i = 0; i < spec.publish.size(); ++i) {
    const PortMapping& p = spec.publish[i];
    std::string where = fmt::format("publish[{}]", i);
    if (auto s = CheckPort(where + ".host_port", p.host_port); !s) return s;
    if (auto s = CheckPort(where + ".guest_port", p.guest_port); !s) return s;
    for (size_t j = 0; j < i; ++j) {
      if (PublishOverlaps(p, spec.publish[j])) {
        return Invalid(where + ".host_port",
                       fmt::format("{} is published twice (also publish[{}]: {})", HostSocket(p), j,
                                   FormatPortMapping(spec.publish[j])));
      }
    }
    for (const VmRecord* other : ctx.others) {
      for (const PortMapping& q : other->spec.publish) {
        if (PublishOverlaps(p, q)) {
          return Invalid(where + ".host_port",
                         fmt::format("host port {} is already published by vm '{}' ({})",
                                     HostSocket(p), other->name, FormatPortMapping(q)));
        }
      }
    }
    if (auto s = CheckPublishOnHost(p, where, ctx, previous); !s) return s;
  }
  std::set<std::pair<int, Protocol>> wake_seen;
  for (size_t i = 0; i < spec.wake_ports.size(); ++i) {
    const WakePort& w = spec.wake_ports[i];
    std::string where = fmt::format("wake_ports[{}]", i);
    if (auto s = CheckPort(where, w.port); !s) return s;
    if (!wake_seen.insert({w.port, w.protocol}).second) {
      return Invalid(where, fmt::format("{} is listed twice", FormatWakePort(w)));
    }
  }
  return Ok();
}

Status CheckTimers(const VmSpec& spec, const ValidationContext& ctx, const VmSpec* previous) {
  const Timers& t = spec.timers;
  bool stop_at_changed = !previous || previous->timers.stop_at != t.stop_at;
  if (t.stop_at && stop_at_changed && *t.stop_at <= ctx.now) {
    return Invalid("timers.stop_at",
                   fmt::format("{} is in the past (now is {}); give a future time",
                               FormatTime(*t.stop_at), FormatTime(ctx.now)));
  }
  for (auto [field, d] : {std::pair{"timers.stop_after", t.stop_after},
                          std::pair{"timers.idle_timeout", t.idle_timeout}}) {
    if (d && *d > kMaxTimerDuration) {
      return Invalid(field, fmt::format("{} is too long; the maximum is {} (100 years)",
                                        FormatDuration(*d), FormatDuration(kMaxTimerDuration)));
    }
  }
  if (t.stop_after && *t.stop_after < std::chrono::seconds(1)) {
    return Invalid("timers.stop_after", fmt::format("{} is too short; the minimum is 1s",
                                                    FormatDuration(*t.stop_after)));
  }
  if (t.idle_timeout && *t.idle_timeout < std::chrono::seconds(1)) {
    return Invalid("timers.idle_timeout", fmt::format("{} is too short; the minimum is 1s",
                                                      FormatDuration(*t.idle_timeout)));
  }
  return Ok();
}

}  // namespace

bool IsWithin(const std::filesystem::path& path, const std::filesystem::path& dir) {
  std::filesystem::path p = path.lexically_normal(), d = dir.lexically_normal();
  auto pi = p.begin();
  for (auto di = d.begin(); di != d.end(); ++di, ++pi) {
    if (di->empty() && std::next(di) == d.end()) break;  // "dir/" ends in an empty component
    if (pi == p.end() || *pi != *di) return false;
  }
  return true;
}

Status ValidateName(std::string_view name) {
  auto bad = [&](std::string_view why) {
    return Invalid("name", fmt::format("'{}' {}; a name is 1-63 characters of a-z, 0-9 and '-', "
                                       "starting with a letter",
                                       Printable(name), why));
  };
  if (name.empty()) return bad("is empty");
  if (name.size() > 63) return bad(fmt::format("is {} characters long", name.size()));
  if (!(name[0] >= 'a' && name[0] <= 'z')) return bad("does not start with a lowercase letter");
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    if (ok) continue;
    if (static_cast<unsigned char>(c) >= 0x80) return bad("contains a non-ASCII character");
    return bad(fmt::format("contains '{}'", Printable(std::string_view(&c, 1))));
  }
  if (name.back() == '-') return bad("ends with '-'");
  return Ok();
}

Status ValidateLabel(std::string_view key, std::string_view value) {
  auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  auto value_char = [&](char c) { return alnum(c) || c == '.' || c == '_' || c == '-'; };
  std::string field = fmt::format("labels.{}", Printable(key));
  if (key.empty() || key.size() > 63 || !alnum(key.front()) || !alnum(key.back()) ||
      !std::all_of(key.begin(), key.end(), [&](char c) { return value_char(c) || c == '/'; })) {
    return Invalid(field, fmt::format("'{}' is not a label key; a key is 1-63 characters of a-z, "
                                      "A-Z, 0-9, '.', '_', '-' and '/', starting and ending with a "
                                      "letter or digit",
                                      Printable(key)));
  }
  if (value.size() > 63 || !std::all_of(value.begin(), value.end(), value_char)) {
    return Invalid(field, fmt::format("'{}' is not a label value; a value is at most 63 "
                                      "characters of a-z, A-Z, 0-9, '.', '_' and '-'",
                                      Printable(value)));
  }
  return Ok();
}

Status ValidateSpec(const VmSpec& spec, const ValidationContext& ctx, const VmSpec* previous) {
  if (spec.labels.size() > kMaxLabels) {
    return Invalid("labels", fmt::format("{} labels; a VM has at most {}, remove some",
                                         spec.labels.size(), kMaxLabels));
  }
  for (const auto& [key, value] : spec.labels) {
    if (auto s = ValidateLabel(key, value); !s) return s;
  }
  int max_vcpus = std::min(kMaxVcpus, ctx.host.cpus);
  if (spec.vcpus < 1 || spec.vcpus > max_vcpus) {
    return Invalid("vcpus", fmt::format("{} is out of range; allowed 1-{} (this host has {} CPUs)",
                                        spec.vcpus, max_vcpus, ctx.host.cpus));
  }
  int64_t mem = spec.memory.value;
  if (mem < kMinMemoryMib) {
    return Invalid("memory_mib", fmt::format("{} is below the minimum of {}", mem, kMinMemoryMib));
  }
  if (mem > ctx.host.memory.value) {
    return Invalid("memory_mib", fmt::format("{} is more than this host's {} MiB of RAM", mem,
                                             ctx.host.memory.value));
  }
  if (mem % 2 != 0) {
    return Invalid("memory_mib", fmt::format("{} is not a multiple of 2 MiB; use {} or {}", mem,
                                             mem - 1, mem + 1));
  }
  if (spec.cmdline.size() > kMaxCmdline) {
    return Invalid("cmdline", fmt::format("is {} bytes; the kernel accepts at most {}",
                                          spec.cmdline.size(), kMaxCmdline));
  }
  if (FindControl(spec.cmdline)) return Invalid("cmdline", DescribeControl(spec.cmdline));
  if (auto s = CheckTimers(spec, ctx, previous); !s) return s;
  if (auto s = CheckNetwork(spec, ctx, previous); !s) return s;
  return CheckFiles(spec, ctx);
}

std::vector<std::string> ChangedFields(const VmSpec& a, const VmSpec& b) {
  std::vector<std::string> out;
  auto check = [&](bool differs, const char* name) {
    if (differs) out.emplace_back(name);
  };
  check(a.vcpus != b.vcpus, "vcpus");
  check(a.memory != b.memory, "memory_mib");
  check(a.kernel != b.kernel, "kernel");
  check(a.initrd != b.initrd, "initrd");
  check(a.rootfs != b.rootfs, "rootfs");
  check(a.rootfs_readonly != b.rootfs_readonly, "rootfs_readonly");
  check(a.image != b.image, "image");
  check(a.cmdline != b.cmdline, "cmdline");
  check(a.labels != b.labels, "labels");
  check(a.publish != b.publish, "publish");
  check(a.timers != b.timers, "timers");
  check(a.effective_wake() != b.effective_wake(), "wake");
  check(a.wake_ports != b.wake_ports, "wake_ports");
  check(a.restart != b.restart, "restart");
  return out;
}

Status CheckEditAllowed(const VmRecord& current, const VmSpec& next, bool discard_state) {
  std::vector<std::string> changed = ChangedFields(current.spec, next);
  if (changed.empty()) return Ok();
  std::string_view state = ToString(current.state);
  if (!Allows(current.state, VmEvent::kEdit)) {
    return Fail(Code::kFailedPrecondition,
                fmt::format("{}: vm '{}' is {}; retry when the transition is over", changed[0],
                            current.name, state),
                changed[0]);
  }
  static const std::set<std::string> kHardware = {"vcpus",  "memory_mib", "kernel",
                                                  "initrd", "rootfs",     "rootfs_readonly",
                                                  "image",  "cmdline",    "publish"};
  for (const std::string& field : changed) {
    if (!kHardware.count(field) || Allows(current.state, VmEvent::kEditHardware)) continue;
    if (discard_state && Allows(current.state, VmEvent::kDiscardState)) continue;
    if (!Allows(current.state, VmEvent::kDiscardState)) {
      return Fail(Code::kFailedPrecondition,
                  fmt::format("{}: cannot change while vm '{}' is {}; stop it first", field,
                              current.name, state),
                  field);
    }
    return Fail(Code::kFailedPrecondition,
                fmt::format("{}: vm '{}' is suspended and its saved state needs the current "
                            "value; edit with --discard-state to drop the saved state (the "
                            "next start cold-boots), or resume and stop it first",
                            field, current.name),
                field);
  }
  return Ok();
}

}  // namespace hearth

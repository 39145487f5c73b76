#include "image/image_builder.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <stdio.h>
#include <stdlib.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>

#include "common/clock.h"
#include "common/files.h"
#include "image/command.h"
#include "image/cpio_archive.h"
#include "image/guest_init.h"
#include "image/vmlinux.h"

namespace hearth::image {
namespace {

namespace fs = std::filesystem;

// Removes a directory tree when it goes away (the build directory, on every path out).
class ScopedRemove {
 public:
  explicit ScopedRemove(fs::path path) : path_(std::move(path)) {}
  ~ScopedRemove() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }

 private:
  fs::path path_;
};

Result<std::string> ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Fail(Code::kNotFound, fmt::format("cannot read {}", path.string()));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Status WriteFile(const fs::path& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  if (!out.flush()) return Fail(Code::kInternal, fmt::format("writing {}", path.string()));
  return Ok();
}

// apt-get fails like this when its package lists are missing or stale.
bool LooksLikeMissingLists(const Error& e) {
  for (const char* s : {"Unable to locate package", "has no installation candidate",
                        "Can't select candidate", "No packages found", "404"}) {
    if (e.message.find(s) != std::string::npos) return true;
  }
  return false;
}

// The versioned kernel package the metapackage depends on, from `apt-cache depends`.
Result<std::string> ResolveKernelPackage(const std::string& metapackage) {
  auto out = RunCommand({"apt-cache", "depends", metapackage});
  if (!out) return Fail(out.error());
  std::istringstream lines(out->out);
  for (std::string line; std::getline(lines, line);) {
    auto at = line.find("Depends: linux-image-");
    if (at != std::string::npos) return line.substr(at + std::strlen("Depends: "));
  }
  return Fail(Code::kUnavailable,
              fmt::format("`apt-cache depends {}` names no linux-image-* package", metapackage));
}

Result<std::string> DebField(const fs::path& deb, const char* field) {
  auto out = RunCommand({"dpkg-deb", "-f", deb.string(), field});
  if (!out) return Fail(out.error());
  std::string v = out->out;
  while (!v.empty() && (v.back() == '\n' || v.back() == ' ')) v.pop_back();
  return v;
}

Result<fs::path> FindDeb(const fs::path& dir, const std::string& package) {
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string f = e.path().filename().string();
    if (f.rfind(package + "_", 0) == 0 && e.path().extension() == ".deb") return e.path();
  }
  return Fail(Code::kInternal,
              fmt::format("apt-get download left no {}_*.deb in {}", package, dir.string()));
}

// The kernel module file, uncompressed (Debian 12's kernels ship plain .ko files; later ones
// compress them with xz, which busybox insmod cannot load).
Result<std::string> ReadModule(const fs::path& base, const fs::path& work) {
  fs::path plain = base;
  plain += ".ko";
  if (fs::exists(plain)) return ReadFile(plain);
  for (const auto& [ext, tool] :
       {std::pair{".ko.xz", "xz"}, std::pair{".ko.zst", "zstd"}, std::pair{".ko.gz", "gzip"}}) {
    fs::path packed = base;
    packed += ext;
    if (!fs::exists(packed)) continue;
    fs::path out = work / "module.ko";
    auto r = RunCommand({tool, "-d", "-c"}, FileToFile(packed, out));
    if (!r) return Fail(r.error());
    return ReadFile(out);
  }
  return Fail(Code::kNotFound, fmt::format("kernel module {}.ko not found", base.string()));
}

// The modules a .ko needs loaded first, from its "depends=" modinfo string.
std::vector<std::string> ModuleDepends(std::string_view ko) {
  std::vector<std::string> deps;
  constexpr std::string_view kKey{"\0depends=", 9};
  auto at = ko.find(kKey);
  if (at == std::string_view::npos) return deps;
  std::string_view list = ko.substr(at + kKey.size());
  list = list.substr(0, list.find('\0'));
  while (!list.empty()) {
    auto comma = list.find(',');
    if (!list.substr(0, comma).empty()) deps.emplace_back(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
  }
  return deps;
}

// Orders modules so that each comes after its dependencies (the order changes between kernel
// builds: in 6.1.192 virtio needs virtio_ring). Fails when a dependency is not in `modules`.
Result<std::vector<std::string>> LoadOrder(const std::map<std::string, std::string>& modules) {
  std::vector<std::string> order;
  std::map<std::string, int> state;  // 1 visiting, 2 done
  std::function<Status(const std::string&)> visit = [&](const std::string& name) -> Status {
    if (state[name] == 2) return Ok();
    if (state[name] == 1) return Fail(Code::kInternal, "module dependency cycle at " + name);
    auto it = modules.find(name);
    if (it == modules.end()) {
      return Fail(Code::kNotFound, fmt::format("module {} is needed but not packed", name));
    }
    state[name] = 1;
    for (const auto& dep : ModuleDepends(it->second)) {
      if (auto s = visit(dep); !s) return s;
    }
    state[name] = 2;
    order.push_back(name);
    return Ok();
  };
  for (const auto& [name, _] : modules) {
    if (auto s = visit(name); !s) return Fail(s.error());
  }
  return order;
}

// The packages of an image, downloaded into a build directory.
struct Downloaded {
  std::string kernel_package;
  fs::path kernel_deb, busybox_deb;
};

// Downloads the kernel and busybox packages into `debs`; refreshes the package lists once if
// they look missing or stale.
Result<Downloaded> DownloadPackages(const BuildOptions& options, const fs::path& debs,
                                    const ImageBuilder::Progress& say) {
  bool updated = false;
  auto update = [&]() -> Status {
    say("package lists look missing or stale: running apt-get update");
    updated = true;
    auto r = RunCommand({"apt-get", "update", "-q"});
    if (!r) return Fail(r.error().Wrap("updating package lists"));
    return Ok();
  };
  auto kernel_package = ResolveKernelPackage(options.kernel_metapackage);
  if (!kernel_package) {
    if (auto s = update(); !s) return Fail(s.error());
    kernel_package = ResolveKernelPackage(options.kernel_metapackage);
    if (!kernel_package) return Fail(kernel_package.error().Wrap("resolving the kernel package"));
  }
  std::vector<std::string> download = {"apt-get",
                                       "download",
                                       "-q",
                                       "-o",
                                       "APT::Sandbox::User=root",
                                       *kernel_package,
                                       options.busybox_package};
  say(fmt::format("downloading {} and {}", *kernel_package, options.busybox_package));
  auto got = RunCommand(download, InDirectory(debs));
  if (!got && !updated && LooksLikeMissingLists(got.error())) {
    if (auto s = update(); !s) return Fail(s.error());
    got = RunCommand(download, InDirectory(debs));
  }
  if (!got) return Fail(got.error().Wrap("downloading packages"));
  auto kernel_deb = FindDeb(debs, *kernel_package);
  auto busybox_deb = FindDeb(debs, options.busybox_package);
  if (!kernel_deb) return Fail(kernel_deb.error());
  if (!busybox_deb) return Fail(busybox_deb.error());
  return Downloaded{*kernel_package, *kernel_deb, *busybox_deb};
}

// Unpacks both packages into `root`; fills the manifest's package fields. Returns the kernel's
// bzImage.
Result<fs::path> UnpackPackages(const Downloaded& debs, const fs::path& root, ImageManifest& m,
                                const ImageBuilder::Progress& say) {
  m.kernel_package = debs.kernel_package;
  auto kver = DebField(debs.kernel_deb, "Version");
  auto bver = DebField(debs.busybox_deb, "Version");
  if (!kver) return Fail(kver.error());
  if (!bver) return Fail(bver.error());
  m.kernel_version = *kver;
  m.busybox_version = *bver;

  say(fmt::format("unpacking {} {}", m.kernel_package, m.kernel_version));
  for (const auto& deb : {debs.kernel_deb, debs.busybox_deb}) {
    auto x = RunCommand({"dpkg-deb", "-x", deb.string(), root.string()});
    if (!x) return Fail(x.error().Wrap("unpacking packages"));
  }
  m.kernel_release = m.kernel_package.substr(std::strlen("linux-image-"));
  fs::path vmlinuz = root / "boot" / ("vmlinuz-" + m.kernel_release);
  if (!fs::exists(vmlinuz)) {
    return Fail(Code::kInternal,
                fmt::format("{} has no /boot/vmlinuz-{}", m.kernel_package, m.kernel_release));
  }
  return vmlinuz;
}

// Packs the guest's kernel modules (from the unpacked `root`) and the list of the order to load
// them in.
Status AddModules(CpioArchive& cpio, const fs::path& root, const fs::path& build,
                  const ImageManifest& m) {
  fs::path modules = root / "lib" / "modules" / m.kernel_release / "kernel";
  std::map<std::string, std::string> packed;  // name -> .ko bytes
  for (const GuestModule& mod : GuestModules()) {
    auto ko = ReadModule(modules / mod.path, build);
    // virtio_pci_legacy_dev and friends do not exist in every kernel; the network ones must.
    if (!ko && (mod.name == "virtio_net" || mod.name == "virtio_mmio" || mod.name == "virtio")) {
      return Fail(ko.error().Wrap(m.kernel_package));
    }
    if (!ko) continue;
    cpio.AddFile(fmt::format("lib/modules/{}.ko", mod.name), *ko);
    packed[std::string(mod.name)] = std::move(*ko);
  }
  auto order = LoadOrder(packed);
  if (!order) return Fail(order.error().Wrap(m.kernel_package));
  std::string module_list;
  for (const auto& name : *order) module_list += name + "\n";
  cpio.AddFile("etc/hearth/modules", module_list);
  return Ok();
}

// Writes <out>/initrd.img: busybox and its applets, the modules, the init and helper scripts.
Status BuildInitrd(const fs::path& root, const fs::path& build, const fs::path& out,
                   const ImageManifest& m, const BuildOptions& options) {
  CpioArchive cpio;
  for (const char* d : {"bin", "dev", "etc", "etc/acpi", "etc/hearth", "lib", "lib/modules", "proc",
                        "run", "sys", "tmp"}) {
    cpio.AddDirectory(d, std::string_view(d) == "tmp" ? 01777 : 0755);
  }
  cpio.AddCharDevice("dev/console", 5, 1, 0600);
  cpio.AddCharDevice("dev/null", 1, 3, 0666);
  auto busybox = ReadFile(root / "bin" / "busybox");
  if (!busybox) return Fail(busybox.error().Wrap(options.busybox_package));
  cpio.AddFile("bin/busybox", *busybox, 0755);
  for (std::string_view applet : BusyboxApplets()) {
    cpio.AddSymlink(fmt::format("bin/{}", applet), "busybox");
  }
  if (auto s = AddModules(cpio, root, build, m); !s) return s;
  cpio.AddFile("init", InitScript(), 0755);
  cpio.AddFile("bin/hearth-http", HttpHandlerScript(), 0755);
  cpio.AddFile("bin/hearth-agent", GuestAgentBinary(), 0755);
  cpio.AddFile("etc/acpid.conf", kAcpidConf);
  cpio.AddFile("etc/acpi/power-off", PowerOffScript(), 0755);
  fs::path cpio_path = build / "initrd.cpio";
  if (auto s = WriteFile(cpio_path, cpio.Finish()); !s) return Fail(s.error());
  auto gz = RunCommand({"gzip", "-9", "-n", "-c"}, FileToFile(cpio_path, out / files::kInitrd));
  if (!gz) return Fail(gz.error().Wrap("compressing the initramfs"));
  return Ok();
}

// Checks that image `name` may be built into `target`, and makes its build directory next to it.
Result<fs::path> MakeBuildDir(std::string_view name, const fs::path& target,
                              const BuildOptions& options) {
  if (name != "default") {
    return Fail(Code::kInvalidArgument,
                fmt::format("unknown image '{}': only 'default' can be built", name));
  }
  std::error_code ec;
  if (fs::exists(target, ec) && !options.force) {
    return Fail(Code::kAlreadyExists,
                fmt::format("image '{}' already exists at {}; use --force to rebuild it", name,
                            target.string()));
  }
  fs::path images_dir = target.parent_path();
  fs::create_directories(images_dir, ec);
  if (ec) {
    return Fail(Code::kInternal, fmt::format("creating {}: {}", images_dir.string(), ec.message()));
  }
  std::string tmpl = (images_dir / fmt::format(".build-{}-XXXXXX", name)).string();
  if (mkdtemp(tmpl.data()) == nullptr) {
    return Fail(Code::kInternal, fmt::format("mkdtemp {}: {}", tmpl, std::strerror(errno)));
  }
  return fs::path(tmpl);
}

}  // namespace

ImageBuilder::ImageBuilder(Progress progress) : progress_(std::move(progress)) {}

void ImageBuilder::Say(std::string_view line) const {
  if (progress_) {
    progress_(line);
  } else {
    std::cerr << "hearth: image: " << line << std::endl;
  }
}

Result<ImageManifest> ImageBuilder::Build(std::string_view name, const fs::path& target,
                                          const BuildOptions& options) {
  auto build = MakeBuildDir(name, target, options);
  if (!build) return Fail(build.error());
  ScopedRemove cleanup(*build);
  fs::path debs = *build / "debs", root = *build / "root", out = *build / "image";
  for (const auto& d : {debs, root, out}) fs::create_directories(d);
  Progress say = [this](std::string_view line) { Say(line); };

  // 1. Download the packages.
  auto downloaded = DownloadPackages(options, debs, say);
  if (!downloaded) return Fail(downloaded.error());
  ImageManifest m;
  m.name = std::string(name);
  m.cmdline = std::string(kDefaultCmdline);

  // 2. Unpack them.
  auto vmlinuz = UnpackPackages(*downloaded, root, m, say);
  if (!vmlinuz) return Fail(vmlinuz.error());

  // 3. The kernel.
  Say("extracting the ELF vmlinux from the bzImage");
  if (auto s = ExtractVmlinux(*vmlinuz, out / files::kKernel, *build); !s) return Fail(s.error());

  // 4. The initramfs.
  Say("building initrd.img");
  if (auto s = BuildInitrd(root, *build, out, m, options); !s) return Fail(s.error());

  // 5. The manifest, last: an image directory with a manifest is complete.
  for (std::string_view f : {files::kKernel, files::kInitrd}) {
    auto sum = Sha256File(out / f);
    if (!sum) return Fail(sum.error());
    m.files[std::string(f)] = {*sum, fs::file_size(out / f)};
  }
  m.created_at = FormatTime(SystemClock().Now());
  if (auto s = WriteManifest(out, m); !s) return Fail(s.error());

  // 6. Into place.
  if (auto s = SwapIntoPlace(out, target); !s) return Fail(s.error());
  Say(fmt::format("image '{}' ready in {} (vmlinux {} MiB, initrd.img {} KiB)", name,
                  target.string(), m.files[std::string(files::kKernel)].size >> 20,
                  m.files[std::string(files::kInitrd)].size >> 10));
  return m;
}

}  // namespace hearth::image

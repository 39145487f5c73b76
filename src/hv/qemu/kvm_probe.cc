#include "hv/qemu/kvm_probe.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/paths.h"
#include "image/image_manifest.h"
#include "model/host.h"

namespace hearth::hv::qemu {
namespace {

namespace fs = std::filesystem;

std::optional<AccelChoice> ReadCache(const fs::path& path, const std::string& boot_id) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  auto j = nlohmann::json::parse(in, nullptr, false);
  if (!j.is_object() || j.value("boot_id", "") != boot_id) return std::nullopt;
  AccelChoice c;
  c.accel = j.value("kvm", false) ? Accel::kKvm : Accel::kTcg;
  c.note = j.value("note", "");
  return c;
}

void WriteCache(const fs::path& path, const std::string& boot_id, const AccelChoice& c) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  fs::path tmp = path;
  tmp += fmt::format(".{}", getpid());
  {
    std::ofstream out(tmp);
    out << nlohmann::json{{"boot_id", boot_id}, {"kvm", c.accel == Accel::kKvm}, {"note", c.note}}
               .dump()
        << "\n";
  }
  fs::rename(tmp, path, ec);
  if (ec) spdlog::warn("cannot cache the KVM probe in {}: {}", path.string(), ec.message());
}

}  // namespace

Result<AccelMode> ParseAccelMode(std::string_view text) {
  if (text == "auto") return AccelMode::kAuto;
  if (text == "kvm") return AccelMode::kKvm;
  if (text == "tcg") return AccelMode::kTcg;
  return Fail(Code::kInvalidArgument, fmt::format("accel: '{}' is not one of auto, kvm, tcg", text),
              "accel");
}

KvmProbe::KvmProbe(KvmProbeOptions options) : options_(std::move(options)) {}

KvmProbe::~KvmProbe() {
  if (thread_.joinable()) thread_.join();
}

void KvmProbe::Start() {
  std::lock_guard lock(mu_);
  if (started_) return;
  started_ = true;
  thread_ = std::thread([this] {
    AccelChoice c = Decide();
    spdlog::info("accelerator: {} ({})", c.accel == Accel::kKvm ? "kvm" : "tcg", c.note);
    std::lock_guard lock(mu_);
    choice_ = c;
    done_.notify_all();
  });
}

AccelChoice KvmProbe::Get() {
  Start();
  std::unique_lock lock(mu_);
  done_.wait(lock, [&] { return choice_.has_value(); });
  return *choice_;
}

std::optional<AccelChoice> KvmProbe::Peek() {
  std::lock_guard lock(mu_);
  return choice_;
}

AccelChoice KvmProbe::Decide() {
  if (options_.mode == AccelMode::kTcg) return {Accel::kTcg, "TCG chosen by --accel tcg"};
  if (options_.mode == AccelMode::kKvm) {
    return {Accel::kKvm, "KVM chosen by --accel kvm (not probed)"};
  }
  int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    return {Accel::kTcg, fmt::format("TCG: /dev/kvm cannot be opened ({})", strerror(errno))};
  }
  ::close(fd);
  std::string boot_id = ReadHostBootId();
  if (auto cached = ReadCache(options_.cache, boot_id)) return *cached;
  bool probed = false;
  AccelChoice c = BootUnderKvm(probed);
  if (probed) WriteCache(options_.cache, boot_id, c);
  return c;
}

AccelChoice KvmProbe::BootUnderKvm(bool& probed) {
  auto manifest = image::ReadManifest(options_.image_dir);
  if (!manifest) {
    return {Accel::kTcg, fmt::format("TCG: KVM not probed, no default image in {} to boot "
                                     "(run `hearth image build default`)",
                                     options_.image_dir.string())};
  }
  char dir_template[] = "/run/hearth/kvm-probe-XXXXXX";
  std::error_code ec;
  fs::create_directories("/run/hearth", ec);
  if (!mkdtemp(dir_template)) {
    return {Accel::kTcg, fmt::format("TCG: KVM not probed ({})", strerror(errno))};
  }
  fs::path dir = dir_template;
  MachineSpec spec;
  spec.vm_id = "kvm-probe";
  spec.name = "kvm-probe";
  spec.memory = MiB{128};
  spec.kernel = (options_.image_dir / files::kKernel).string();
  spec.initrd = (options_.image_dir / files::kInitrd).string();
  spec.cmdline =
      BuildKernelCmdline(manifest->cmdline, options_.tsc_khz, "kvm-probe", std::nullopt, "");
  UseLayout(spec, Paths(dir), spec.vm_id);
  QemuDriverOptions kvm_options;
  kvm_options.binary = options_.binary;
  kvm_options.accel = [] { return AccelChoice{Accel::kKvm, ""}; };
  QemuDriver kvm(kvm_options);
  auto started = std::chrono::steady_clock::now();
  AccelChoice c;
  auto process = kvm.Launch(spec);
  if (!process) {
    c = {Accel::kTcg,
         fmt::format("TCG: qemu failed to start under KVM: {}", process.error().message)};
  } else {
    probed = true;
    CancelFlag never{false};
    auto ready = kvm.WaitReady(spec, *process, started + options_.deadline, never);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - started)
                  .count();
    if (ready) {
      c = {Accel::kKvm, fmt::format("KVM: a probe guest booted in {} ms", ms)};
    } else {
      c = {Accel::kTcg,
           fmt::format("TCG: a probe guest did not boot under KVM (deadline {} ms): {}",
                       options_.deadline.count(), ready.error().message)};
    }
    kvm.Kill(*process);
    waitpid(static_cast<pid_t>(process->pid), nullptr, 0);
  }
  fs::remove_all(dir, ec);  // the whole probe data dir
  return c;
}

}  // namespace hearth::hv::qemu

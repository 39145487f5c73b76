// Builds the default guest image with the real CLI (`hearth image build default`) and boots it
// under QEMU's TCG (microvm, user-mode networking): the guest must answer HTTP on port 80 with
// its name, ok, its boot id and its clock, and print the ready marker on its console.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <thread>

#include "common/files.h"
#include "hv/qemu/qemu_command.h"
#include "hv/qemu/qmp_client.h"
#include "image/guest_init.h"
#include "image/image_manifest.h"
#include "model/host.h"
#include "support/daemon.h"
#include "support/temp_dir.h"
#include "support/vm_env.h"

namespace hearth {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::RunProgram;
using testing::TempDir;

std::string ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A TCP port on 127.0.0.1 that was free a moment ago.
uint16_t FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

using testing::HttpReply;

// One HTTP/1.0 GET through QEMU's user-mode forward on 127.0.0.1:port; nullopt without a
// complete answer (QEMU accepts the connection and closes it while nothing listens in the guest).
std::optional<HttpReply> HttpGet(uint16_t port, const std::string& path,
                                 std::chrono::milliseconds timeout = 5s) {
  return testing::HttpGet("127.0.0.1", port, path, timeout);
}

// qemu-system-x86_64, SIGKILLed and reaped when the object goes away (unless it has exited).
class QemuProcess {
 public:
  explicit QemuProcess(const std::vector<std::string>& argv) {
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> args;
      for (const auto& s : argv) args.push_back(const_cast<char*>(s.c_str()));
      args.push_back(nullptr);
      execvp(args[0], args.data());
      _exit(127);
    }
  }
  ~QemuProcess() {
    if (pid_ > 0 && !status_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  QemuProcess(const QemuProcess&) = delete;
  QemuProcess& operator=(const QemuProcess&) = delete;
  // True while the process has not exited.
  bool Running() { return pid_ > 0 && !Reaped(); }
  // Its wait status once it has exited by itself, or nullopt if it still runs after `timeout`.
  std::optional<int> WaitExit(std::chrono::milliseconds timeout) {
    for (auto until = std::chrono::steady_clock::now() + timeout; !Reaped();
         std::this_thread::sleep_for(10ms)) {
      if (std::chrono::steady_clock::now() >= until) return std::nullopt;
    }
    return status_;
  }

 private:
  bool Reaped() {
    int status = 0;
    if (!status_ && waitpid(pid_, &status, WNOHANG) == pid_) status_ = status;
    return status_.has_value();
  }

  pid_t pid_ = -1;
  std::optional<int> status_;
};

// The default image booted under TCG with user-mode networking (guest port 80 forwarded to
// `port` on 127.0.0.1) in place of a tap, so that the tests need no root networking.
struct BootedVm {
  TempDir run;
  fs::path log;  // the serial console
  uint16_t port = 0;
  hv::qemu::QemuConfig config;
  std::unique_ptr<QemuProcess> qemu;
  std::optional<HttpReply> root;  // the first answer to GET /
  double boot_seconds = 0;        // from exec to that answer
};

// The console log once it holds the ready marker, waiting up to `timeout` for it (the serial
// file may lag behind the guest a little).
std::string ConsoleWithMarker(const fs::path& log, std::chrono::seconds timeout = 5s) {
  std::string console;
  for (auto until = std::chrono::steady_clock::now() + timeout;
       std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(50ms)) {
    console = ReadText(log);
    if (console.find(image::kGuestReadyMarker) != std::string::npos) break;
  }
  return console;
}

class ImageBootTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    data_dir_ = new TempDir();
    auto start = std::chrono::steady_clock::now();
    build_ = new testing::RunResult(
        RunProgram({Cli(), "image", "build", "default", "--data-dir", data_dir_->path().string()}));
    build_seconds_ =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  static void TearDownTestSuite() {
    delete build_;
    delete data_dir_;
  }
  void SetUp() override { ASSERT_EQ(build_->exit_code, 0) << build_->err; }

  static std::string Cli() { return (testing::BuildDir() / "hearth").string(); }

  // Boots the image as `name` and waits (up to 60 s) for its first HTTP answer.
  static void Boot(const std::string& name, BootedVm& vm) {
    int64_t khz = ReadLinuxHostInfo()->tsc_khz;
    ASSERT_GT(khz, 0) << "no \"cpu MHz\" in /proc/cpuinfo";
    auto m = image::ReadManifest(ImageDir());
    ASSERT_TRUE(m);
    vm.log = vm.run / "console.log";
    vm.port = FreePort();
    // The command line hearth's QEMU driver uses, plus user-mode networking in place of a tap.
    vm.config.memory = MiB{128};
    vm.config.kernel = (ImageDir() / "vmlinux").string();
    vm.config.initrd = (ImageDir() / "initrd.img").string();
    vm.config.cmdline = hv::qemu::BuildKernelCmdline(
        m->cmdline, khz, name, hv::qemu::GuestNetwork{"10.0.2.15/24", "10.0.2.2"}, "");
    vm.config.memory_file = (vm.run / "memory").string();
    vm.config.qmp_socket = (vm.run / "qmp.sock").string();
    vm.config.console_output = vm.log.string();
    auto argv = hv::qemu::BuildQemuArgv(vm.config);
    ASSERT_TRUE(argv) << argv.error().message;
    argv->insert(argv->end(),
                 {"-netdev", fmt::format("user,id=n0,hostfwd=tcp:127.0.0.1:{}-:80", vm.port),
                  "-device", "virtio-net-device,netdev=n0"});
    auto start = std::chrono::steady_clock::now();
    vm.qemu = std::make_unique<QemuProcess>(*argv);
    auto deadline = start + 60s;
    while (std::chrono::steady_clock::now() < deadline && vm.qemu->Running()) {
      vm.root = HttpGet(vm.port, "/", 1s);
      if (vm.root) break;
      std::this_thread::sleep_for(100ms);
    }
    vm.boot_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_TRUE(vm.root) << "no HTTP answer within 60 s; console:\n" << ReadText(vm.log);
    std::cerr << "exec to first HTTP answer: " << vm.boot_seconds << " s\n";
  }
  static fs::path ImageDir() { return data_dir_->path() / "images" / "default"; }

  static inline TempDir* data_dir_ = nullptr;
  static inline testing::RunResult* build_ = nullptr;
  static inline double build_seconds_ = 0;
};

TEST_F(ImageBootTest, BuildWritesManifestAndKernelFiles) {
  std::cerr << "image build took " << build_seconds_ << " s\n";
  EXPECT_NE(build_->err.find("extracting the ELF vmlinux"), std::string::npos) << build_->err;
  auto m = image::ReadManifest(ImageDir());
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(m->name, "default");
  EXPECT_EQ(m->kernel_package.rfind("linux-image-", 0), 0u) << m->kernel_package;
  EXPECT_FALSE(m->kernel_version.empty());
  EXPECT_FALSE(m->created_at.empty());
  ASSERT_EQ(m->files.size(), 2u);
  for (const auto& [name, file] : m->files) {
    auto sum = Sha256File(ImageDir() / name);
    ASSERT_TRUE(sum) << name;
    EXPECT_EQ(*sum, file.sha256) << name;
    EXPECT_EQ(fs::file_size(ImageDir() / name), file.size) << name;
  }
  EXPECT_EQ(ReadText(ImageDir() / "vmlinux").substr(0, 4),
            "\x7f"
            "ELF");
  EXPECT_EQ(ReadText(ImageDir() / "initrd.img").substr(0, 2), "\x1f\x8b");
  // Only the finished image is left behind, no build directory.
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(ImageDir().parent_path())) ++entries;
  EXPECT_EQ(entries, 1);

  auto ls =
      RunProgram({Cli(), "image", "ls", "--data-dir", data_dir_->path().string(), "-o", "json"});
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  auto list = nlohmann::json::parse(ls.out);
  ASSERT_EQ(list.at("images").size(), 1u);
  EXPECT_EQ(list["images"][0]["kernel"]["version"], m->kernel_version);

  auto again =
      RunProgram({Cli(), "image", "build", "default", "--data-dir", data_dir_->path().string()});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("--force"), std::string::npos) << again.err;
  auto other =
      RunProgram({Cli(), "image", "build", "fedora", "--data-dir", data_dir_->path().string()});
  EXPECT_EQ(other.exit_code, 2);
}

TEST_F(ImageBootTest, BootsUnderTcgAndServesHttp) {
  BootedVm vm;
  ASSERT_NO_FATAL_FAILURE(Boot("testvm", vm));
  // QMP on the same VM: pause, see the STOP event and the paused state, resume.
  auto qmp = hv::qemu::QmpClient::Connect(vm.config.qmp_socket, 5s);
  ASSERT_TRUE(qmp) << qmp.error().message;
  EXPECT_EQ((*qmp->Execute("query-status"))["status"], "running");
  ASSERT_TRUE(qmp->Execute("stop"));
  EXPECT_EQ((*qmp->Execute("query-status"))["status"], "paused");
  auto events = qmp->TakeEvents();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back()["event"], "STOP");
  ASSERT_TRUE(qmp->Execute("cont"));
  EXPECT_EQ((*qmp->Execute("query-status"))["status"], "running");

  EXPECT_EQ(vm.root->status, 200);
  EXPECT_EQ(vm.root->body, "testvm\n");

  auto health = HttpGet(vm.port, "/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(health->body, "ok\n");

  auto bootid = HttpGet(vm.port, "/bootid");
  ASSERT_TRUE(bootid);
  EXPECT_TRUE(std::regex_match(bootid->body, std::regex("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-"
                                                        "[0-9a-f]{4}-[0-9a-f]{12}\n")))
      << bootid->body;

  auto time = HttpGet(vm.port, "/time");
  ASSERT_TRUE(time);
  double host =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  ASSERT_TRUE(std::regex_match(time->body, std::regex("[0-9]+\\.[0-9]+\n"))) << time->body;
  EXPECT_NEAR(std::stod(time->body), host, 3.0);

  auto missing = HttpGet(vm.port, "/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);

  // The marker is printed once the server listens, so it is in the log by now (give the serial
  // file a moment to be flushed).
  std::string console = ConsoleWithMarker(vm.log);
  EXPECT_NE(console.find(std::string(image::kGuestReadyMarker) + " name=testvm ip=10.0.2.15/24"),
            std::string::npos)
      << console;
  EXPECT_EQ(console.find("insmod"), std::string::npos) << console;
  EXPECT_EQ(console.find("no input device for the power button"), std::string::npos) << console;
}

// The host's request to shut down (QMP system_powerdown, the ACPI power button) makes the guest
// power off, and QEMU (-no-reboot) exits by itself: no SIGKILL needed.
TEST_F(ImageBootTest, PowersOffOnSystemPowerdown) {
  BootedVm vm;
  ASSERT_NO_FATAL_FAILURE(Boot("downvm", vm));
  // Once the guest has printed the ready marker, it acts on the power button.
  std::string console = ConsoleWithMarker(vm.log);
  ASSERT_NE(console.find(image::kGuestReadyMarker), std::string::npos) << console;
  auto qmp = hv::qemu::QmpClient::Connect(vm.config.qmp_socket, 5s);
  ASSERT_TRUE(qmp) << qmp.error().message;

  auto start = std::chrono::steady_clock::now();
  auto r = qmp->Execute("system_powerdown");
  ASSERT_TRUE(r) << r.error().message;
  auto status = vm.qemu->WaitExit(10s);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(status) << "QEMU still runs 10 s after system_powerdown; console:\n"
                      << ReadText(vm.log);
  std::cerr << "system_powerdown to QEMU exit: " << took << " s\n";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "wait status " << *status;
  console = ReadText(vm.log);
  EXPECT_NE(console.find("hearth: power button pressed, powering off"), std::string::npos)
      << console;
  EXPECT_NE(console.find("reboot: Power down"), std::string::npos) << console;
}

}  // namespace
}  // namespace hearth

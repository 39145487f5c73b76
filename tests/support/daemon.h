// Runs the real hearthd binary for integration tests and benchmarks: a fresh data directory,
// TCP on an ephemeral loopback port, the unix socket, and a VM network pool of its own. Stops it
// (SIGTERM, then SIGKILL) and removes its VMs' processes, taps and rules when the object goes
// away, so nothing outlives a failed test.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "http/client.h"

namespace hearth::testing {

// The build directory holding hearthd and hearth.
std::filesystem::path BuildDir();

class DaemonProcess {
 public:
  // Starts build/hearthd --data-dir DIR --listen 127.0.0.1:0 and waits (up to 20 s) for its
  // "listening on" line. `extra_args` are appended. Unless they set them, the VM network pool is
  // TestNetworkPool() and --allowed-paths is /usr/bin, /tmp and the build directory.
  static Result<std::unique_ptr<DaemonProcess>> Start(const std::filesystem::path& data_dir,
                                                      std::vector<std::string> extra_args = {});
  ~DaemonProcess();

  pid_t pid() const { return pid_; }
  uint16_t port() const { return port_; }
  const std::filesystem::path& data_dir() const { return data_dir_; }
  std::filesystem::path socket() const { return data_dir_ / "hearthd.sock"; }
  // The admin token hearthd wrote.
  std::string token() const;

  http::ClientOptions UnixClient() const;
  http::ClientOptions TcpClient(bool with_token = true) const;

  // SIGKILL and reap: the daemon gets no chance to clean up.
  void Kill();
  // By default the destructor also removes what the daemon left on the host (VMM processes,
  // taps, its nftables table); after this call it leaves them, for a successor daemon.
  void KeepHostState() { clean_up_host_ = false; }
  // SIGTERM and reap; returns the exit status (or -signal).
  int Terminate();
  // Waits up to `timeout_ms` for the daemon to exit by itself; its exit status (or -signal), or
  // nullopt if it still runs.
  std::optional<int> WaitForExit(int timeout_ms);
  bool running() const { return pid_ > 0; }

 private:
  DaemonProcess() = default;
  int Reap(int timeout_ms);
  pid_t pid_ = -1;
  bool clean_up_host_ = true;
  uint16_t port_ = 0;
  std::filesystem::path data_dir_;
};

// Runs a program (argv[0] searched in PATH) to completion; returns its exit code (or -signal) with
// stdout and stderr.
struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
RunResult RunProgram(const std::vector<std::string>& argv, const std::vector<std::string>& env = {},
                     const std::string& stdin_data = "");

// Runs `hearth ARGS...` (the build's CLI) against `daemon`'s unix socket.
RunResult HearthCli(const DaemonProcess& daemon, std::vector<std::string> args);
// The VM as the API shows it (`hearth vm show NAME -o json`). A failed command fails the current
// test (EXPECT); output that does not parse gives a discarded json value.
nlohmann::json ShowVm(const DaemonProcess& daemon, const std::string& name);

}  // namespace hearth::testing

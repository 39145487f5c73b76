// Helpers for tests that run the Firecracker test double (tests/firecracker_double/): where its
// binaries and the spec are, a process handle that starts it and cleans up, a one-shot HTTP call
// over its API socket, and a reader for its request journal (FC_DOUBLE_JOURNAL).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "common/result.h"

namespace hearth::testing {

struct FcDoublePaths {
  std::filesystem::path firecracker;  // <build>/tests/firecracker-double/firecracker
  std::filesystem::path jailer;       // <build>/tests/firecracker-double/jailer
  std::filesystem::path spec;         // third_party/firecracker/firecracker-api-v1.16.1.yaml
};
FcDoublePaths FirecrackerDoublePaths();

// One line of FC_DOUBLE_JOURNAL: "PUT /boot-source 204".
struct FcJournalEntry {
  std::string method;
  std::string path;
  int status = 0;
  std::string Text() const;  // "PUT /boot-source 204"
};
// The journal's entries in order; empty if the file does not exist.
std::vector<FcJournalEntry> ReadFcJournal(const std::filesystem::path& journal);

struct FcResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};
// One request on a new connection ("Connection: close"). unavailable when the socket cannot be
// reached or the answer is not HTTP.
Result<FcResponse> FcApiCall(const std::filesystem::path& socket, const std::string& method,
                             const std::string& path, const std::string& body = {},
                             std::chrono::milliseconds timeout = std::chrono::seconds(5));

// A running firecracker (or jailer) double. Started with `argv` (argv[0] is the binary) and
// `env` added to the current environment; stdout and stderr go to `output`. The destructor kills
// the process (SIGKILL) if it still runs.
class FcDoubleProcess {
 public:
  static Result<FcDoubleProcess> Start(const std::vector<std::string>& argv,
                                       const std::map<std::string, std::string>& env,
                                       const std::filesystem::path& output);
  FcDoubleProcess(FcDoubleProcess&& o) noexcept : pid_(o.pid_), status_(o.status_) { o.pid_ = -1; }
  FcDoubleProcess& operator=(FcDoubleProcess&&) = delete;
  ~FcDoubleProcess();

  pid_t pid() const { return pid_; }
  // Waits until `socket` accepts connections or the process exits; unavailable on timeout/exit.
  Status WaitForSocket(const std::filesystem::path& socket,
                       std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Waits for the process to exit and returns its exit code (128+signal when killed);
  // unavailable on timeout.
  Result<int> Wait(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  bool Running();

 private:
  explicit FcDoubleProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
  int status_ = -1;
};

}  // namespace hearth::testing

// A real ClickHouse server (Debian's clickhouse-server) for integration tests and benchmarks: its
// own temporary data directory, HTTP and native ports picked free on 127.0.0.1, run in the
// foreground as a child of the test process that the kernel kills if the test process dies
// (PR_SET_PDEATHSIG), and stopped, with its directory removed, when the object goes away.
// Stop and StartAgain take it away and bring it back with its data, on the same ports.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "common/result.h"
#include "support/temp_dir.h"

namespace hearth::testing {

class ClickHouseServer {
 public:
  // Fails (unavailable) when clickhouse-server is not installed (scripts/deps.sh installs it) or
  // does not answer within 30 s.
  static Result<std::unique_ptr<ClickHouseServer>> Start();
  ~ClickHouseServer();

  uint16_t http_port() const { return http_port_; }
  // The --clickhouse URL of `database` on this server.
  std::string Url(const std::string& database) const;

  // Ends the server: SIGTERM (or SIGKILL with `kill`), and waits for it.
  void Stop(bool kill = false);
  Status StartAgain();
  bool running() const { return pid_ > 0; }

  // Runs one statement over HTTP; the body of a 200 answer, else an error with ClickHouse's.
  Result<std::string> Query(const std::string& sql) const;

 private:
  ClickHouseServer() = default;
  Status Spawn();
  TempDir dir_;
  pid_t pid_ = -1;
  uint16_t http_port_ = 0, tcp_port_ = 0;
};

}  // namespace hearth::testing

// hearthd: the node daemon. Parses and checks its configuration, takes the data directory's
// lock, opens the store, and serves the API until SIGINT or SIGTERM.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include "config/daemon_config.h"
#include "daemon/daemon.h"
#include "daemon/flags.h"

int main(int argc, char** argv) {
  // Block the shutdown signals before any thread starts, so that only sigwait() sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  umask(077);  // state, tokens and sockets are root's alone
  spdlog::set_default_logger(spdlog::stderr_color_mt("hearthd"));

  hearth::config::DaemonConfig cfg;
  if (auto exit_code = hearth::daemon::ParseCommandLine(argc, argv, cfg)) return *exit_code;
  return hearth::daemon::Daemon(cfg).Run();
}

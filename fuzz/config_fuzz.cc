// config_fuzz: hearthd's YAML config file (--config FILE) through LoadConfigFile and Validate,
// as hearthd reads it at start. An input is the file's bytes. Findings besides the sanitizers':
// an exception escaping either function (hearthd would die with std::terminate instead of
// printing one line naming the key), or a config that validates with a listen address that does
// not parse.
#include <exception>

#include "config/daemon_config.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hearth;
  fuzz::MemFile file(fuzz::AsText(data, size));
  config::DaemonConfig config;
  try {
    if (!config::LoadConfigFile(file.path(), config)) return 0;
    if (!config::Validate(config)) return 0;
  } catch (const std::exception& e) {
    fuzz::Crash("the config loader threw", e.what());
  }
  if (!config::ParseListen(config.listen)) fuzz::Crash("a valid config's listen", config.listen);
  if (!config::SqlitePath(config.store)) fuzz::Crash("a valid config's store", config.store);
  (void)config::MeteringInterval(config);
  (void)config::MeteringRetention(config);
  return 0;
}

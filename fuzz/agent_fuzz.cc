// agent_fuzz: what hearthd reads from a guest's agent channel (AgentReader), which the guest
// writes freely. An input is: one byte choosing how much is discarded first (byte x 256 bytes, as
// stale answers), then what the guest wrote. The reader reads it from an in-memory file as it
// would from the FIFO.
// Findings besides the sanitizers': more read than kAgentReadBudget; a line handed on that is
// longer than kAgentLineBytes, holds a newline, or was not a whole line of the input; a first
// line longer than its bound.
#include <fcntl.h>

#include <string>

#include "fuzz_support.h"
#include "hv/qemu/agent_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hearth::hv::qemu;
  if (size == 0) return 0;
  size_t discard = size_t{data[0]} * 256;
  std::string_view text = hearth::fuzz::AsText(data + 1, size - 1);
  hearth::fuzz::MemFile file(text);
  int fd = open(file.path().c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) hearth::fuzz::Crash("opening the memfd", file.path());
  AgentReader reader(fd);
  if (discard > 0) reader.Discard(discard);
  auto on_line = [&](std::string_view line) {
    if (line.size() > kAgentLineBytes) hearth::fuzz::Crash("a line over the bound", line);
    if (line.find('\n') != std::string_view::npos) hearth::fuzz::Crash("a line with \\n", line);
    std::string whole = std::string(line) + "\n";
    bool at_start = text.substr(0, whole.size()) == whole;
    if (!at_start && text.find("\n" + whole) == std::string_view::npos) {
      hearth::fuzz::Crash("a line that the guest did not write whole", line);
    }
  };
  for (int i = 0; i < 1000 && !reader.spent(); ++i) {
    if (reader.Read(on_line) <= 0) break;
  }
  close(fd);
  if (reader.bytes_read() > kAgentReadBudget) {
    hearth::fuzz::Crash("read past the budget", std::to_string(reader.bytes_read()));
  }
  if (reader.first_line().size() > kAgentLineBytes + 3) {
    hearth::fuzz::Crash("a first line over the bound", reader.first_line());
  }
  return 0;
}

// firecracker_api_fuzz: what hearthd reads from Firecracker's API socket. An input is the raw
// bytes of one HTTP answer; its first byte says where the bytes are split into two reads, as
// UnixSocketTransport::Send feeds them to ParseResponse (incomplete, then complete, then the
// connection closed). A parsed answer then goes through Execute (the body as JSON, the
// fault_message of a refusal) with a transport that returns it, and a 2xx body through
// InstanceId (DescribeInstance's answer, read when a VM is adopted).
// Findings besides the sanitizers': an exception; an answer that parses from the first part but
// not from the whole; a body longer than the bytes after the head.
#include <exception>

#include "fuzz_support.h"
#include "hv/firecracker/api_calls.h"
#include "hv/firecracker/api_transport.h"

namespace {

using namespace hearth;
using namespace hearth::hv::firecracker;

class FixedTransport final : public ApiTransport {
 public:
  explicit FixedTransport(ApiResponse r) : response_(std::move(r)) {}
  Result<ApiResponse> Send(const ApiRequest&, std::chrono::milliseconds) override {
    return response_;
  }

 private:
  ApiResponse response_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view raw = fuzz::AsText(data + 1, size - 1);
  size_t split = raw.empty() ? 0 : data[0] % (raw.size() + 1);
  try {
    auto partial = ParseResponse(raw.substr(0, split), /*closed=*/false);
    auto open = ParseResponse(raw, /*closed=*/false);
    auto closed = ParseResponse(raw, /*closed=*/true);
    if (partial && *partial && !(open && *open)) {
      fuzz::Crash("an answer complete in its first part is not in the whole", raw);
    }
    if (!closed || !*closed) return 0;
    const ApiResponse& response = **closed;
    if (response.body.size() > raw.size()) fuzz::Crash("a body longer than the answer", raw);
    FixedTransport transport(response);
    auto body = Execute(transport, DescribeInstance(), "fuzz");
    if (body) (void)InstanceId(*body);
  } catch (const std::exception& e) {
    fuzz::Crash("reading a Firecracker answer threw", e.what());
  }
  return 0;
}

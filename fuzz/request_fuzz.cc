// request_fuzz: libFuzzer target for everything hearthd does with the bytes of a request before
// any I/O: HTTP/1.1 parsing (Boost.Beast, with the server's limits), routing, authentication,
// strict JSON parsing of create and edit bodies, and validation.
//
// An input is raw HTTP/1.1: one request, or several back to back (pipelined) so that a create can
// be followed by an edit of the same VM. Each request goes through an api::ApiHandler over a Node
// backed by the in-memory fakes of tests/fakes, rebuilt for every input so that runs are
// reproducible. A request carrying an Authorization header is treated as a TCP request (token
// "hth_fuzz" is valid); one without it as a trusted unix-socket request.
//
// Each body is also fed straight to the model functions (ParseJsonObject, ParseCreateRequest,
// ParseEditRequest, ValidateSpec, CheckEditAllowed).
//
// Besides the sanitizers' findings, these are crashes (they abort):
//   - an exception escaping ApiHandler::Handle: hearthd would answer 500 "internal" to a request
//     that is merely malformed;
//   - a response whose status is not 2xx-5xx, or whose JSON body does not parse, or an error
//     response without {"error": {"code", "message"}};
//   - a valid spec that does not survive the store's round trip (SpecToJson(spec, false) read back
//     with ApplySpecJson must give the same spec), since that is how SqliteStateStore persists it.
#include <spdlog/spdlog.h>

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "api/api_handler.h"
#include "api/auth.h"
#include "common/paths.h"
#include "fakes/fakes.h"
#include "http/beast_messages.h"
#include "model/validator.h"
#include "model/vm_json.h"
#include "node/node.h"

namespace hearth::fuzz {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using nlohmann::json;

// The server's limits (src/http/server.cc, http::ServerOptions).
constexpr uint32_t kHeaderLimit = 16 * 1024;
constexpr uint64_t kBodyLimit = 1 << 20;
// Requests taken from one input; more would only slow the fuzzer down.
constexpr int kMaxRequests = 8;
constexpr const char* kToken = "hth_fuzz";
constexpr const char* kDataDir = "/var/lib/hearth";

[[noreturn]] void Crash(std::string_view what, std::string_view detail) {
  std::fprintf(stderr, "request_fuzz: %.*s: %.*s\n", int(what.size()), what.data(),
               int(detail.size()), detail.data());
  std::abort();
}

// The files the fake host has; the dictionary names them so that valid specs are found.
void AddHostFiles(testing::FakeFileProbe& files) {
  files.AddKernel("/k/vmlinux");
  files.AddBzImage("/k/bzImage");
  files.AddFile("/k/initrd.img");
  files.AddFile("/r/rootfs.img");
  files.AddFile("/r/secret.img", "data", /*readable=*/false);
  files.AddLink("/r/alias.img", "/r/rootfs.img");
  files.AddBlockDevice("/dev/vdb");
  files.AddDirectory("/k");
  files.AddDirectory(std::string(kDataDir) + "/images/default");
}

// One node with a few VMs: "web" (created, publishing 8080), "db" (its rootfs read-write).
struct World {
  World()
      : node(store, testing::TestHost(), files, clock, Paths(kDataDir), {}),
        auth(api::Sha256Hex(kToken)),
        api(node, auth) {
    AddHostFiles(files);
    for (const char* body :
         {R"({"name":"web","kernel":"/k/vmlinux","publish":["8080:80"]})",
          R"({"name":"db","kernel":"/k/bzImage","rootfs":"/r/rootfs.img","memory_mib":512})"}) {
      auto create = ParseCreateRequest(*ParseJsonObject(body));
      if (!create || !node.Create(*create)) Crash("setting up the world", body);
    }
  }

  testing::FakeStateStore store;
  testing::FakeFileProbe files;
  testing::FakeClock clock;
  node::Node node;
  api::TokenAuthenticator auth;
  api::ApiHandler api;
};

// As http::Server builds it; requests without a token stand for the trusted unix socket.
api::HttpRequest ToApiRequest(bhttp::request<bhttp::string_body>&& request) {
  bool trusted = request.find(bhttp::field::authorization) == request.end();
  return http::ToApiRequest(std::move(request), trusted);
}

void CheckResponse(const api::HttpRequest& request, const api::HttpResponse& response) {
  std::string where = request.method + " " + request.target;
  if (response.status < 200 || response.status > 599) {
    Crash("status out of range", where + " -> " + std::to_string(response.status));
  }
  if (response.content_type != "application/json") return;
  json body = json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) Crash("response body is not JSON", where + " -> " + response.body);
  if (response.status >= 400) {
    const json* error = body.contains("error") ? &body["error"] : nullptr;
    if (!error || !error->is_object() || !(*error)["code"].is_string() ||
        !(*error)["message"].is_string()) {
      Crash("error response without error.code and error.message", where + " -> " + response.body);
    }
  }
}

void CheckRoundTrip(const VmSpec& spec) {
  json stored = SpecToJson(spec, /*resolve_wake=*/false);
  VmSpec loaded;
  auto s = ApplySpecJson(stored, loaded);
  if (!s) Crash("a stored spec does not load", stored.dump() + ": " + s.error().message);
  if (!(loaded == spec)) {
    Crash("a spec changes when stored and loaded",
          stored.dump() + " loads as " + SpecToJson(loaded, false).dump());
  }
}

ValidationContext MakeContext(const World& world, const std::vector<VmRecord>& vms,
                              const Paths& paths) {
  ValidationContext ctx;
  ctx.host = testing::TestHost();
  ctx.files = &world.files;
  ctx.paths = &paths;
  ctx.now = world.clock.Now();
  for (const auto& vm : vms) ctx.others.push_back(&vm);
  return ctx;
}

// The body through the model functions directly, as create and as edit.
void FuzzModel(const World& world, const std::string& text) {
  auto body = ParseJsonObject(text);
  if (!body) return;
  const Paths paths(kDataDir);
  const std::vector<VmRecord> vms = world.node.List();
  const ValidationContext ctx = MakeContext(world, vms, paths);

  if (auto create = ParseCreateRequest(*body)) {
    (void)ValidateName(create->name);
    if (ValidateSpec(create->spec, ctx)) CheckRoundTrip(create->spec);
  }
  if (auto edit = ParseEditRequest(*body)) {
    for (const VmRecord& current : vms) {
      VmSpec next = current.spec;
      if (!ApplySpecJson(edit->fields, next)) Crash("an edit that parsed does not apply", text);
      (void)ChangedFields(current.spec, next);
      for (VmState state : {VmState::kCreated, VmState::kRunning, VmState::kSuspended}) {
        VmRecord as = current;
        as.state = state;
        (void)CheckEditAllowed(as, next, edit->discard_state);
      }
      if (ValidateSpec(next, ctx, &current.spec)) CheckRoundTrip(next);
    }
  }
}

// Parses one request from the front of `input`; consumes what was parsed. Returns false when
// there is no complete, valid request (the server would answer 4xx or close the connection).
bool ParseRequest(std::string_view& input, bhttp::request<bhttp::string_body>& out) {
  bhttp::request_parser<bhttp::string_body> parser;
  parser.eager(true);
  parser.header_limit(kHeaderLimit);
  parser.body_limit(kBodyLimit);
  beast::error_code ec;
  size_t used = 0;
  while (!parser.is_done()) {
    size_t n = parser.put(boost::asio::buffer(input.data() + used, input.size() - used), ec);
    used += n;
    if (ec && ec != bhttp::error::need_more) return false;
    if (parser.is_done()) break;
    if (n == 0 || used == input.size()) {
      // All the input is there: the connection would end here.
      parser.put_eof(ec);
      if (ec || !parser.is_done()) return false;
      break;
    }
    ec = {};
  }
  input.remove_prefix(used);
  out = parser.release();
  return true;
}

}  // namespace
}  // namespace hearth::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Node logs every change at info; at fuzzing speed that is only noise.
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hearth::fuzz;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto world = std::make_unique<World>();
  for (int i = 0; i < kMaxRequests && !input.empty(); ++i) {
    bhttp::request<bhttp::string_body> parsed;
    if (!ParseRequest(input, parsed)) break;
    hearth::api::HttpRequest request = ToApiRequest(std::move(parsed));
    hearth::api::HttpResponse response;
    try {
      response = world->api.Handle(request);
    } catch (const std::exception& e) {
      Crash("ApiHandler::Handle threw (hearthd answers 500 internal)",
            request.method + " " + request.target + ": " + e.what());
    }
    CheckResponse(request, response);
    try {
      FuzzModel(*world, request.body);
    } catch (const std::exception& e) {
      Crash("a model function threw", request.body.substr(0, 2000) + ": " + e.what());
    }
  }
  return 0;
}

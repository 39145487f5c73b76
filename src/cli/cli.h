// The CLI's session with hearthd: the global flags, the requests it sends and how it prints
// their answers. Exit codes: 0 success, 1 the request failed, 2 the command line is wrong.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/http_types.h"
#include "common/result.h"
#include "http/client.h"

namespace hearth::cli {

inline constexpr int kOk = 0, kFailed = 1, kUsage = 2;

// Thrown from a command's callback when the command line is wrong: its message goes to stderr
// and the exit code is kUsage.
struct UsageError {
  std::string message;
};

// The flags every command takes.
struct Globals {
  std::string socket, host, output = "table";
};

class Cli {
 public:
  explicit Cli(Globals& g) : g_(g) {}

  // Sends a request; prints the API's error and returns nullopt on failure.
  std::optional<api::HttpResponse> Call(std::string_view method, const std::string& target,
                                        const std::string& body = "",
                                        std::vector<std::pair<std::string, std::string>> hdrs = {});

  // Sends a request and returns the answer whatever its status; prints nothing.
  Result<api::HttpResponse> Request(std::string_view method, const std::string& target,
                                    const std::string& body = "",
                                    std::vector<std::pair<std::string, std::string>> hdrs = {});

  // Prints the answer's body in the -o format; `table` renders the table form and `wide` the
  // -o wide one (lists only: without it, -o wide is a usage error).
  int Print(const api::HttpResponse& r, std::string (*table)(const nlohmann::json&),
            std::string (*wide)(const nlohmann::json&) = nullptr);

  // For actions: the object in json/yaml, a sentence in table mode.
  int Done(const api::HttpResponse& r, const std::string& sentence);

  // Where hearthd is asked: its socket, or the TCP host.
  std::string Where() const { return g_.host.empty() ? g_.socket : g_.host; }

  const Globals& globals() const { return g_; }
  // For the commands that register their own -o (bound to the same value as the global one).
  Globals& mutable_globals() { return g_; }

 private:
  http::ClientOptions Options() const;

  Globals& g_;
  std::unique_ptr<http::Client> client_;
};

// The value of header `name` (lower case) in an answer, or empty.
std::string HeaderOf(const api::HttpResponse& r, std::string_view name);

// A command's --help footer: its `examples` (lines of "  hearth ..."), then where the global
// flags are described.
std::string CommandFooter(std::string_view examples);

// Adds -o/--output to `cmd` (the global one, shown in the command's own --help), taking `formats`.
void AddOutputFlag(CLI::App* cmd, Cli& cli, const std::vector<std::string>& formats);

// A CLI11 check of a VM name given on the command line (model/validator.h's rule): a bad name is
// a usage error (exit 2) before any request.
CLI::Validator VmNameCheck();

// The API path of VM `name` (percent-encoded) followed by `suffix`.
std::string VmPath(const std::string& name, std::string_view suffix = "");
// `value` percent-encoded for a URL query.
std::string UrlQueryValue(const std::string& value);

}  // namespace hearth::cli

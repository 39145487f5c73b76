// The CLI's session with hearthd: the global flags, the requests it sends and how it prints
// their answers. Exit codes: 0 success, 1 the request failed, 2 the command line is wrong.
#pragma once

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

  // Prints the answer's body in the -o format; `table` renders the table form.
  int Print(const api::HttpResponse& r, std::string (*table)(const nlohmann::json&));

  // For actions: the object in json/yaml, a sentence in table mode.
  int Done(const api::HttpResponse& r, const std::string& sentence);

  const Globals& globals() const { return g_; }

 private:
  http::ClientOptions Options() const;

  Globals& g_;
  std::unique_ptr<http::Client> client_;
};

// The value of header `name` (lower case) in an answer, or empty.
std::string HeaderOf(const api::HttpResponse& r, std::string_view name);

// The API path of VM `name` (percent-encoded) followed by `suffix`.
std::string VmPath(const std::string& name, std::string_view suffix = "");
// `value` percent-encoded for a URL query.
std::string UrlQueryValue(const std::string& value);

}  // namespace hearth::cli

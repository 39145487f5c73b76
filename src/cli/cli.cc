#include "cli/cli.h"

#include <fmt/format.h>

#include <cctype>
#include <charconv>
#include <cstdio>
#include <cstdlib>

#include "cli/output.h"
#include "common/text.h"
#include "model/validator.h"

namespace hearth::cli {

using nlohmann::json;

std::optional<api::HttpResponse> Cli::Call(std::string_view method, const std::string& target,
                                           const std::string& body,
                                           std::vector<std::pair<std::string, std::string>> hdrs) {
  auto r = Request(method, target, body, std::move(hdrs));
  if (!r) {
    std::fprintf(stderr, "hearth: %s\n", EscapeText(r.error().message).c_str());
    return std::nullopt;
  }
  if (r->status >= 400) {
    json err = json::parse(r->body, nullptr, false);
    std::string msg = err.is_object() && err.contains("error")
                          ? err["error"].value("message", r->body)
                          : fmt::format("HTTP {}: {}", r->status, r->body);
    std::fprintf(stderr, "hearth: %s\n", EscapeText(msg).c_str());
    return std::nullopt;
  }
  return std::move(*r);
}

Result<api::HttpResponse> Cli::Request(std::string_view method, const std::string& target,
                                       const std::string& body,
                                       std::vector<std::pair<std::string, std::string>> hdrs) {
  if (!client_) client_ = std::make_unique<http::Client>(Options());
  return client_->Request(method, target, body, hdrs);
}

std::string HeaderOf(const api::HttpResponse& r, std::string_view name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return "";
}

int Cli::Print(const api::HttpResponse& r, std::string (*table)(const json&),
               std::string (*wide)(const json&)) {
  if (g_.output == "csv") throw UsageError{"-o csv: only `hearth usage` prints CSV"};
  auto format = ParseFormat(g_.output);
  if (!format) throw UsageError{format.error().message};
  if (*format == Format::kWide && !wide) {
    throw UsageError{
        "-o wide: only lists (`hearth vm ls`, `hearth image ls`) have a wide form; "
        "use table, json or yaml"};
  }
  json body = json::parse(r.body);
  std::fputs(Render(body, *format, *format == Format::kWide ? wide : table).c_str(), stdout);
  return kOk;
}

int Cli::Done(const api::HttpResponse& r, const std::string& sentence) {
  if (g_.output == "csv") throw UsageError{"-o csv: only `hearth usage` prints CSV"};
  auto format = ParseFormat(g_.output);
  if (format && *format != Format::kTable && *format != Format::kWide && !r.body.empty()) {
    return Print(r, nullptr);
  }
  std::printf("%s\n", sentence.c_str());
  return kOk;
}

http::ClientOptions Cli::Options() const {
  http::ClientOptions o;
  if (g_.host.empty()) {
    o.unix_socket = g_.socket;
    return o;
  }
  // HOST, HOST:PORT, [V6] or [V6]:PORT.
  std::string host = g_.host, port;
  if (!host.empty() && host.front() == '[') {
    auto close = host.find(']');
    if (close == std::string::npos) throw UsageError{fmt::format("--host: '{}' lacks ']'", host)};
    if (close + 1 < host.size() && host[close + 1] == ':') port = host.substr(close + 2);
    host = host.substr(1, close - 1);
  } else if (auto colon = host.find(':');
             colon != std::string::npos && host.find(':', colon + 1) == std::string::npos) {
    port = host.substr(colon + 1);
    host = host.substr(0, colon);
  }
  if (!port.empty()) {
    int p = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc{} || end != port.data() + port.size() || p < 1 || p > 65535) {
      throw UsageError{fmt::format("--host: port '{}' is not 1-65535", port)};
    }
    o.port = static_cast<uint16_t>(p);
  }
  o.host = host;
  const char* token = std::getenv("HEARTH_TOKEN");
  if (!token || !*token) {
    throw UsageError{
        "--host needs a token in HEARTH_TOKEN (the admin token is in "
        "<data-dir>/admin.token on the node)"};
  }
  o.token = token;
  return o;
}

std::string CommandFooter(std::string_view examples) {
  return fmt::format(
      "Examples:\n{}\nGlobal flags (before or after the command): --socket PATH, "
      "--host HOST[:PORT], -o table|json|yaml; see `hearth --help`.\n",
      examples);
}

void AddOutputFlag(CLI::App* cmd, Cli& cli, const std::vector<std::string>& formats) {
  std::string list;
  for (size_t i = 0; i < formats.size(); ++i) {
    list += (i == 0 ? "" : i + 1 == formats.size() ? " or " : ", ") + formats[i];
  }
  cmd->add_option("-o,--output", cli.mutable_globals().output,
                  fmt::format("output format: {} (default table)", list))
      ->check(CLI::IsMember(formats));
}

CLI::Validator VmNameCheck() {
  return CLI::Validator(
      [](std::string& name) -> std::string {
        auto s = ValidateName(name);
        if (s) return std::string();
        std::string_view msg = s.error().message;  // "name: 'Web' ...": CLI11 says "NAME: "
        return std::string(msg.starts_with("name: ") ? msg.substr(6) : msg);
      },
      "NAME");
}

std::string VmPath(const std::string& name, std::string_view suffix) {
  std::string out = "/v1/vms/";
  for (unsigned char c : name) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out + std::string(suffix);
}

std::string UrlQueryValue(const std::string& value) {
  std::string out;
  for (unsigned char c : value) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

}  // namespace hearth::cli

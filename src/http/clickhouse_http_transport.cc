#include "http/clickhouse_http_transport.h"

#include <fmt/format.h>

namespace hearth::http {
namespace {

ClientOptions Options(const metering::ClickHouseEndpoint& e, std::chrono::milliseconds timeout) {
  ClientOptions o;
  o.host = e.host;
  o.port = e.port;
  o.timeout = timeout;
  return o;
}

}  // namespace

std::string UrlEncode(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

ClickHouseHttpTransport::ClickHouseHttpTransport(metering::ClickHouseEndpoint endpoint,
                                                 std::chrono::milliseconds timeout)
    : endpoint_(std::move(endpoint)), client_(Options(endpoint_, timeout)) {}

Result<metering::ClickHouseReply> ClickHouseHttpTransport::Execute(std::string_view sql,
                                                                   std::string_view data) {
  std::string target = fmt::format(
      "/?date_time_input_format=best_effort&output_format_json_quote_64bit_integers=0&query={}",
      UrlEncode(sql));
  if (!endpoint_.user.empty()) {
    target += fmt::format("&user={}&password={}", UrlEncode(endpoint_.user),
                          UrlEncode(endpoint_.password));
  }
  std::lock_guard lock(mu_);
  auto r = client_.Request("POST", target, data);
  if (!r) {
    // The client's messages speak of the server as hearthd, its usual peer.
    std::string message = r.error().message;
    for (size_t at; (at = message.find("hearthd")) != std::string::npos;) {
      message.replace(at, 7, "ClickHouse");
    }
    return Fail(r.error().code, std::move(message));
  }
  return metering::ClickHouseReply{r->status, std::move(r->body)};
}

}  // namespace hearth::http

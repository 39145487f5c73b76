// Conversions between Boost.Beast messages and the API's plain request values. Includes Beast:
// for the .cc files of the network layer (and the request fuzzer) only, never for other headers.
#pragma once

#include <algorithm>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <string>
#include <string_view>

#include "api/http_types.h"

namespace hearth::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using asio::ip::tcp;
using UnixProtocol = asio::local::stream_protocol;
using ErrorCode = boost::system::error_code;

using BeastRequest = boost::beast::http::request<boost::beast::http::string_body>;
using BeastResponse = boost::beast::http::response<boost::beast::http::string_body>;

inline std::string ToLower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Everything but the body. Header names become lower case; a repeated header becomes one
// comma-separated list (RFC 9110, section 5.3).
inline api::HttpRequest ToApiHeaders(const BeastRequest& request, bool trusted) {
  api::HttpRequest out;
  out.method = std::string(request.method_string());
  out.target = std::string(request.target());
  for (const auto& field : request) {
    auto [it, inserted] =
        out.headers.try_emplace(ToLower(field.name_string()), std::string(field.value()));
    if (!inserted) it->second.append(", ").append(field.value());
  }
  out.trusted = trusted;
  return out;
}

inline api::HttpRequest ToApiRequest(BeastRequest&& request, bool trusted) {
  api::HttpRequest out = ToApiHeaders(request, trusted);
  out.body = std::move(request.body());
  return out;
}

}  // namespace hearth::http

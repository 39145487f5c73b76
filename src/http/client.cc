#include "http/client.h"

#include <fmt/format.h>
#include <sys/un.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <limits>
#include <optional>

#include "http/beast_messages.h"

#ifndef HEARTH_VERSION
#define HEARTH_VERSION "dev"
#endif

namespace hearth::http {
namespace {

constexpr uint32_t kResponseHeaderLimit = 64 * 1024;

// The connection ended before any byte of the response. On a reused keep-alive connection this
// means the server had closed it (e.g. at its idle timeout) before seeing the request.
bool IsClosedBeforeAnswer(const ErrorCode& ec) {
  return ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == asio::error::connection_aborted;
}

api::HttpResponse ToApiResponse(BeastResponse&& in) {
  api::HttpResponse out;
  out.status = static_cast<int>(in.result_int());
  out.content_type.clear();
  for (const auto& field : in) {
    std::string name = ToLower(field.name_string());
    if (name == "content-type") out.content_type = std::string(field.value());
    out.headers.emplace_back(std::move(name), std::string(field.value()));
  }
  out.body = std::move(in.body());
  return out;
}

}  // namespace

class Client::Impl {
 public:
  explicit Impl(ClientOptions options) : options_(std::move(options)) {}

  Result<api::HttpResponse> Request(
      std::string_view method, std::string_view target, std::string_view body,
      const std::vector<std::pair<std::string, std::string>>& headers);

  std::string Describe() const {
    if (!options_.unix_socket.empty()) return "unix:" + options_.unix_socket;
    if (options_.host.find(':') != std::string::npos) {
      return fmt::format("http://[{}]:{}", options_.host, options_.port);
    }
    return fmt::format("http://{}:{}", options_.host, options_.port);
  }

 private:
  // How one exchange on one connection ended.
  struct Outcome {
    Result<api::HttpResponse> response;
    bool retryable = false;   // the server had closed the connection before it saw the request
    bool keep_alive = false;  // the connection can carry the next request
  };

  template <class Stream>
  Result<api::HttpResponse> Send(std::optional<Stream>& stream, BeastRequest& request);
  Status Connect(std::optional<beast::tcp_stream>& stream);
  Status Connect(std::optional<beast::basic_stream<UnixProtocol>>& stream);
  template <class Stream>
  Outcome Exchange(Stream& stream, BeastRequest& request, bool reused);

  BeastRequest Build(std::string_view method, std::string_view target, std::string_view body,
                     const std::vector<std::pair<std::string, std::string>>& headers) const;
  Error Unreachable(const ErrorCode& ec) const;
  Error TimedOut() const {
    return Error{Code::kUnavailable,
                 fmt::format("hearthd at {} did not answer within {} ms; is it overloaded?",
                             Describe(), options_.timeout.count()),
                 {}};
  }

  // Runs the io_context until the operation that `start` initiates has completed, and returns its
  // error. Operations on a beast::basic_stream end with beast::error::timeout at its deadline.
  template <class Start>
  ErrorCode Run(Start&& start) {
    ErrorCode result;
    start([&result](ErrorCode ec, auto&&...) { result = ec; });
    io_.restart();
    io_.run();
    return result;
  }

  const ClientOptions options_;
  asio::io_context io_{1};
  std::chrono::steady_clock::time_point deadline_;  // of the current Request
  std::optional<beast::tcp_stream> tcp_;
  std::optional<beast::basic_stream<UnixProtocol>> unix_;
  beast::flat_buffer buffer_;  // bytes read past the last response on the open connection
};

Result<api::HttpResponse> Client::Impl::Request(
    std::string_view method, std::string_view target, std::string_view body,
    const std::vector<std::pair<std::string, std::string>>& headers) {
  deadline_ = std::chrono::steady_clock::now() + options_.timeout;
  BeastRequest request = Build(method, target, body, headers);
  if (!options_.unix_socket.empty()) return Send(unix_, request);
  return Send(tcp_, request);
}

BeastRequest Client::Impl::Build(
    std::string_view method, std::string_view target, std::string_view body,
    const std::vector<std::pair<std::string, std::string>>& headers) const {
  BeastRequest request;
  if (bhttp::verb verb = bhttp::string_to_verb(method); verb != bhttp::verb::unknown) {
    request.method(verb);
  } else {
    request.method_string(method);
  }
  request.target(target);
  request.version(11);
  request.set(bhttp::field::host, options_.unix_socket.empty()
                                      ? fmt::format("{}:{}", options_.host, options_.port)
                                      : std::string("localhost"));
  request.set(bhttp::field::user_agent, "hearth/" HEARTH_VERSION);
  if (!options_.token.empty()) request.set(bhttp::field::authorization, "Bearer " + options_.token);
  if (!body.empty()) request.set(bhttp::field::content_type, "application/json");
  for (const auto& [name, value] : headers) request.set(name, value);
  request.body() = std::string(body);
  request.keep_alive(true);
  request.prepare_payload();
  return request;
}

template <class Stream>
Result<api::HttpResponse> Client::Impl::Send(std::optional<Stream>& stream, BeastRequest& request) {
  for (int attempt = 0;; ++attempt) {
    const bool reused = stream.has_value();
    if (!reused) {
      buffer_.clear();
      if (Status connected = Connect(stream); !connected) return Fail(connected.error());
    }
    Outcome outcome = Exchange(*stream, request, reused);
    if (!outcome.keep_alive) stream.reset();
    if (outcome.response || !outcome.retryable || attempt > 0) return std::move(outcome.response);
  }
}

Status Client::Impl::Connect(std::optional<beast::tcp_stream>& stream) {
  ErrorCode ec;
  std::vector<tcp::endpoint> endpoints;
  if (auto address = asio::ip::make_address(options_.host, ec); !ec) {
    endpoints.emplace_back(address, options_.port);
  } else {
    tcp::resolver resolver(io_);
    auto results = resolver.resolve(options_.host, std::to_string(options_.port),
                                    tcp::resolver::numeric_service, ec);
    if (ec) {
      return Fail(Code::kUnavailable, fmt::format("cannot reach hearthd at {}: resolving '{}': {}",
                                                  Describe(), options_.host, ec.message()));
    }
    for (const auto& entry : results) endpoints.push_back(entry.endpoint());
  }
  stream.emplace(io_);
  stream->expires_at(deadline_);
  ec = Run([&](auto handler) { stream->async_connect(endpoints, std::move(handler)); });
  if (ec) {
    stream.reset();
    return Fail(Unreachable(ec));
  }
  ErrorCode ignored;
  stream->socket().set_option(tcp::no_delay(true), ignored);
  return Ok();
}

Status Client::Impl::Connect(std::optional<beast::basic_stream<UnixProtocol>>& stream) {
  if (options_.unix_socket.size() >= sizeof(sockaddr_un::sun_path)) {
    return Fail(Code::kInvalidArgument,
                fmt::format("cannot reach hearthd at {}: the path is longer than the {}-byte limit "
                            "of unix sockets",
                            Describe(), sizeof(sockaddr_un::sun_path) - 1));
  }
  stream.emplace(io_);
  stream->expires_at(deadline_);
  UnixProtocol::endpoint endpoint(options_.unix_socket);
  ErrorCode ec = Run([&](auto handler) { stream->async_connect(endpoint, std::move(handler)); });
  if (ec) {
    stream.reset();
    return Fail(Unreachable(ec));
  }
  return Ok();
}

Error Client::Impl::Unreachable(const ErrorCode& ec) const {
  if (ec == beast::error::timeout) {
    return Error{Code::kUnavailable,
                 fmt::format("cannot reach hearthd at {}: no connection within {} ms; is hearthd "
                             "running?",
                             Describe(), options_.timeout.count()),
                 {}};
  }
  std::string hint = "is hearthd running?";
  if (ec == asio::error::access_denied) {
    hint = "the socket is for root only: use sudo, or connect over TCP with a token";
  }
  return Error{Code::kUnavailable,
               fmt::format("cannot reach hearthd at {}: {}; {}", Describe(), ec.message(), hint),
               {}};
}

template <class Stream>
Client::Impl::Outcome Client::Impl::Exchange(Stream& stream, BeastRequest& request, bool reused) {
  stream.expires_at(deadline_);
  const ErrorCode write_ec =
      Run([&](auto handler) { bhttp::async_write(stream, request, std::move(handler)); });
  if (write_ec == beast::error::timeout) return {Fail(TimedOut())};
  // Even when sending failed, the server may have answered before closing (e.g. 413 for a body
  // over its limit), and that answer says more than "broken pipe".
  bhttp::response_parser<bhttp::string_body> parser;
  parser.header_limit(kResponseHeaderLimit);
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  parser.skip(request.method() == bhttp::verb::head);  // its answer announces a body it lacks
  const ErrorCode read_ec =
      Run([&](auto handler) { bhttp::async_read(stream, buffer_, parser, std::move(handler)); });
  if (!read_ec) {
    const bool keep_alive = parser.get().keep_alive() && !write_ec;
    return {ToApiResponse(parser.release()), /*retryable=*/false, keep_alive};
  }
  if (read_ec == beast::error::timeout) return {Fail(TimedOut())};
  if (!parser.got_some() && IsClosedBeforeAnswer(read_ec)) {
    const ErrorCode& ec = write_ec ? write_ec : read_ec;
    return {Fail(Code::kUnavailable, fmt::format("hearthd at {} closed the connection before "
                                                 "answering: {}",
                                                 Describe(), ec.message())),
            reused};
  }
  if (read_ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category() &&
      read_ec != bhttp::error::partial_message) {
    return {Fail(Code::kInternal, fmt::format("reading the answer of hearthd at {}: {}", Describe(),
                                              read_ec.message()))};
  }
  return {Fail(Code::kUnavailable, fmt::format("reading the answer of hearthd at {}: {}",
                                               Describe(), read_ec.message()))};
}

Client::Client(ClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Client::~Client() = default;

Result<api::HttpResponse> Client::Request(
    std::string_view method, std::string_view target, std::string_view body,
    const std::vector<std::pair<std::string, std::string>>& headers) {
  return impl_->Request(method, target, body, headers);
}

std::string Client::Describe() const { return impl_->Describe(); }

}  // namespace hearth::http

#include "http/server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/optional.hpp>
#include <cerrno>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "http/beast_messages.h"
#include "model/vm_json.h"

namespace hearth::http {
namespace {

using namespace std::string_view_literals;

// Asynchronous operations report errors as values instead of throwing.
constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);

constexpr uint32_t kHeaderLimit = 16 * 1024;
constexpr size_t kReadChunk = 16 * 1024;
// After an error answer, what the client still sends is read and dropped for this long (or up to
// kDrainLimit bytes) before closing: closing a socket with unread data makes the kernel send a
// reset, and the client's system may then drop the answer that explains why (RFC 9112, 9.6).
constexpr std::chrono::milliseconds kDrainTime{1000};
constexpr size_t kDrainLimit = 8 << 20;
// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
constexpr std::chrono::milliseconds kAcceptBackoff{100};

api::HttpResponse ErrorResponse(int status, Code code, std::string message) {
  api::HttpResponse response;
  response.status = status;
  response.body = ErrorToJson(Error{code, std::move(message), {}})
                      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return response;
}

// Throws std::exception when the handler's response cannot be sent as it is (e.g. a status out
// of range, or a body on a 204).
BeastResponse ToBeastResponse(api::HttpResponse&& in, unsigned version, bool keep_alive) {
  BeastResponse out;
  out.version(version);
  if (in.status < 100 || in.status > 999) {
    throw std::invalid_argument(fmt::format("HTTP status {} is out of range", in.status));
  }
  out.result(static_cast<unsigned>(in.status));
  out.set(bhttp::field::server, "hearthd");
  if (!in.content_type.empty()) out.set(bhttp::field::content_type, in.content_type);
  for (const auto& [name, value] : in.headers) {
    // Beast writes fields verbatim: a line break in a value would inject headers.
    if (name.empty() || name.find_first_of(" :\r\n\0"sv) != std::string::npos ||
        value.find_first_of("\r\n\0"sv) != std::string::npos) {
      throw std::invalid_argument(fmt::format("header {:?} is not a valid HTTP field", name));
    }
    out.insert(name, value);
  }
  out.body() = std::move(in.body);
  out.keep_alive(keep_alive);
  out.prepare_payload();  // throws on a body in a 1xx, 204 or 304 answer
  // Such answers have no content, so no Content-Length (RFC 9110, section 8.6; prepare_payload
  // sets 0) and no Content-Type (HttpResponse defaults to JSON).
  if (out.result_int() < 200 || out.result() == bhttp::status::no_content ||
      out.result() == bhttp::status::not_modified) {
    out.erase(bhttp::field::content_length);
    out.erase(bhttp::field::content_type);
  }
  return out;
}

// The answer to a request that could not be read, or nullopt when there is no one to answer
// (the client went away or timed out).
std::optional<api::HttpResponse> ReadErrorResponse(const ErrorCode& ec, size_t body_limit) {
  if (ec == bhttp::error::body_limit) {
    return ErrorResponse(413, Code::kInvalidArgument,
                         fmt::format("body: larger than the {}-byte limit", body_limit));
  }
  if (ec == bhttp::error::header_limit) {
    return ErrorResponse(431, Code::kInvalidArgument,
                         fmt::format("headers: larger than the {}-byte limit", kHeaderLimit));
  }
  // Running out of input is the client leaving (or being timed out), not a malformed request.
  if (ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message) return std::nullopt;
  if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category()) {
    return ErrorResponse(400, Code::kInvalidArgument,
                         fmt::format("malformed HTTP request: {}", ec.message()));
  }
  return std::nullopt;
}

// Counts the open connections of one listener, in total and by client address. Thread-safe:
// connections end on every io thread.
class ConnectionLimits {
 public:
  explicit ConnectionLimits(int max_per_address) : max_per_address_(max_per_address) {}

  // Takes a slot for a connection from `address`; false when `max_total` or the per-address cap
  // is reached.
  bool Acquire(const std::string& address, int max_total) {
    std::lock_guard lock(mu_);
    if (total_ >= max_total) return false;
    int& n = per_address_[address];
    if (n >= max_per_address_) return false;
    ++n;
    ++total_;
    return true;
  }

  void Release(const std::string& address) {
    std::lock_guard lock(mu_);
    --total_;
    auto it = per_address_.find(address);
    if (it != per_address_.end() && --it->second <= 0) per_address_.erase(it);
  }

 private:
  const int max_per_address_;
  std::mutex mu_;
  int total_ = 0;
  std::map<std::string, int> per_address_;  // no entry for an address without connections
};

// A connection's slot, given back when the connection's coroutine ends (or is destroyed by Stop).
class ConnectionSlot {
 public:
  ConnectionSlot(ConnectionLimits& limits, std::string address)
      : limits_(&limits), address_(std::move(address)) {}
  ConnectionSlot(ConnectionSlot&& other) noexcept
      : limits_(std::exchange(other.limits_, nullptr)), address_(std::move(other.address_)) {}
  ConnectionSlot& operator=(ConnectionSlot&&) = delete;
  ~ConnectionSlot() {
    if (limits_) limits_->Release(address_);
  }

 private:
  ConnectionLimits* limits_;
  std::string address_;
};

template <class Protocol>
std::string ClientAddress(const typename Protocol::socket& socket) {
  if constexpr (std::is_same_v<Protocol, tcp>) {
    ErrorCode ec;
    auto endpoint = socket.remote_endpoint(ec);
    if (ec) return "";
    auto address = endpoint.address();
    // An IPv4 client of a dual-stack listener is the same client as over IPv4.
    if (address.is_v6() && address.to_v6().is_v4_mapped()) {
      return asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()).to_string();
    }
    return address.to_string();
  } else {
    return "";  // every unix socket client is root: one address
  }
}

// The soft RLIMIT_NOFILE now (it may be changed while hearthd runs, e.g. with prlimit).
uint64_t FileLimit() {
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) != 0 || files.rlim_cur == RLIM_INFINITY) {
    return uint64_t{1} << 20;
  }
  return files.rlim_cur;
}

bool ExpectsContinue(const BeastRequest& request) {
  auto it = request.find(bhttp::field::expect);
  return it != request.end() && beast::iequals(it->value(), "100-continue");
}

}  // namespace

int TcpConnectionCap(int max_connections, uint64_t file_limit) {
  uint64_t cap =
      std::min<uint64_t>(static_cast<uint64_t>(std::max(1, max_connections)), file_limit / 2);
  return static_cast<int>(std::max<uint64_t>(1, cap));
}

class Server::Impl {
 public:
  Impl(api::HttpHandler& handler, ServerOptions options)
      : handler_(handler), options_(std::move(options)) {}
  ~Impl() { Stop(); }

  Status Start();
  void Stop();
  uint16_t tcp_port() const { return tcp_port_; }
  int tcp_connection_cap() const { return tcp_cap_; }

 private:
  Result<tcp::acceptor> ListenTcp();
  Result<UnixProtocol::acceptor> ListenUnix();

  template <class Protocol>
  asio::awaitable<void> Accept(typename Protocol::acceptor acceptor, bool trusted);
  template <class Protocol>
  asio::awaitable<void> Serve(beast::basic_stream<Protocol> stream, ConnectionSlot slot,
                              bool trusted);
  // The answer that refuses a request whose headers were read, or nullopt to read its body.
  std::optional<api::HttpResponse> Admit(const BeastRequest& request,
                                         const boost::optional<uint64_t>& content_length,
                                         bool trusted);
  template <class Protocol>
  asio::awaitable<void> AnswerAndClose(beast::basic_stream<Protocol>& stream,
                                       api::HttpResponse response);

  api::HttpResponse Call(const api::HttpRequest& request);

  api::HttpHandler& handler_;
  const ServerOptions options_;
  std::unique_ptr<asio::io_context> io_;
  std::vector<std::thread> threads_;
  uint16_t tcp_port_ = 0;
  int tcp_cap_ = 0;
  std::unique_ptr<ConnectionLimits> tcp_limits_;
  std::unique_ptr<ConnectionLimits> unix_limits_;
  bool started_ = false;
  bool stopped_ = false;
  // The unix socket file this server created, identified so that Stop removes only that one.
  std::optional<std::pair<dev_t, ino_t>> socket_file_;
};

Status Server::Impl::Start() {
  if (started_) return Fail(Code::kFailedPrecondition, "the HTTP server was already started");
  started_ = true;
  if (options_.tcp_host.empty() && options_.unix_socket.empty()) {
    return Fail(Code::kInvalidArgument,
                "the HTTP server has no TCP address and no unix socket to listen on");
  }
  int threads = std::max(1, options_.threads);
  io_ = std::make_unique<asio::io_context>(threads);
  tcp_cap_ = TcpConnectionCap(options_.max_connections, FileLimit());
  tcp_limits_ =
      std::make_unique<ConnectionLimits>(std::max(1, options_.max_connections_per_address));
  unix_limits_ = std::make_unique<ConnectionLimits>(std::max(1, options_.max_unix_connections));

  std::optional<tcp::acceptor> tcp_acceptor;
  if (!options_.tcp_host.empty()) {
    auto acceptor = ListenTcp();
    if (!acceptor) return Fail(acceptor.error());
    tcp_port_ = acceptor->local_endpoint().port();
    tcp_acceptor.emplace(std::move(*acceptor));
  }
  if (!options_.unix_socket.empty()) {
    auto acceptor = ListenUnix();
    if (!acceptor) {
      tcp_port_ = 0;  // the TCP acceptor closes on return
      return Fail(acceptor.error());
    }
    asio::co_spawn(*io_, Accept<UnixProtocol>(std::move(*acceptor), /*trusted=*/true),
                   asio::detached);
  }
  if (tcp_acceptor) {
    asio::co_spawn(*io_, Accept<tcp>(std::move(*tcp_acceptor), /*trusted=*/false), asio::detached);
  }

  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([io = io_.get()] {
      for (;;) {
        try {
          io->run();
          return;
        } catch (const std::exception& e) {
          // Completion handlers do not throw; this is only a last line of defence.
          spdlog::error("http: io thread: {}", e.what());
        }
      }
    });
  }
  return Ok();
}

void Server::Impl::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (!io_) return;
  io_->stop();
  for (auto& thread : threads_) thread.join();
  threads_.clear();
  // Destroying the io_context destroys every suspended coroutine, and with them the acceptors and
  // the connections they own.
  io_.reset();
  if (socket_file_) {
    struct stat st {};
    if (::lstat(options_.unix_socket.c_str(), &st) == 0 && st.st_dev == socket_file_->first &&
        st.st_ino == socket_file_->second) {
      ::unlink(options_.unix_socket.c_str());
    }
    socket_file_.reset();
  }
}

Result<tcp::acceptor> Server::Impl::ListenTcp() {
  const std::string& host = options_.tcp_host;
  const uint16_t port = options_.tcp_port;
  const std::string where = host.find(':') == std::string::npos
                                ? fmt::format("listening on {}:{}", host, port)
                                : fmt::format("listening on [{}]:{}", host, port);

  ErrorCode ec;
  tcp::endpoint endpoint;
  auto address = asio::ip::make_address(host, ec);
  if (!ec) {
    endpoint = tcp::endpoint(address, port);
  } else {
    tcp::resolver resolver(*io_);
    auto results = resolver.resolve(host, std::to_string(port),
                                    tcp::resolver::passive | tcp::resolver::numeric_service, ec);
    if (ec || results.empty()) {
      return Fail(Code::kInvalidArgument,
                  fmt::format("{}: cannot resolve '{}': {}; use --listen with an IP address", where,
                              host, ec ? ec.message() : "no address"));
    }
    endpoint = results.begin()->endpoint();
  }

  tcp::acceptor acceptor(*io_);
  if (acceptor.open(endpoint.protocol(), ec); ec) {
    return Fail(Code::kUnavailable, fmt::format("{}: {}", where, ec.message()));
  }
  // Lets a restarted hearthd bind while connections of the previous one are in TIME_WAIT; two
  // listeners on one port are still refused on Linux.
  acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (acceptor.bind(endpoint, ec); ec) {
    std::string hint;
    if (ec == asio::error::address_in_use) {
      hint = "; is another hearthd running? use --listen to pick another address";
    } else if (ec == asio::error::access_denied) {
      hint = "; ports below 1024 need root; use --listen to pick another address";
    } else if (ec == boost::system::errc::address_not_available) {
      hint = "; no local interface has this address; use --listen to pick another address";
    }
    return Fail(Code::kUnavailable, fmt::format("{}: {}{}", where, ec.message(), hint));
  }
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) {
    return Fail(Code::kUnavailable, fmt::format("{}: {}", where, ec.message()));
  }
  return acceptor;
}

Result<UnixProtocol::acceptor> Server::Impl::ListenUnix() {
  const std::string path = options_.unix_socket.string();
  const std::string where = fmt::format("listening on unix:{}", path);
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    return Fail(Code::kInvalidArgument,
                fmt::format("{}: the path is {} bytes, longer than the {}-byte limit of unix "
                            "sockets; use a shorter data dir",
                            where, path.size(), sizeof(sockaddr_un::sun_path) - 1));
  }
  // A socket file left by a hearthd that died; the caller holds the data dir lock, so no live
  // daemon is listening on it.
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Fail(Code::kFailedPrecondition,
                  fmt::format("{}: the path exists and is not a socket; move it away", where));
    }
    if (::unlink(path.c_str()) != 0) {
      return Fail(Code::kUnavailable,
                  fmt::format("{}: removing the stale socket: {}", where, std::strerror(errno)));
    }
  }

  ErrorCode ec;
  UnixProtocol::acceptor acceptor(*io_);
  if (acceptor.open(UnixProtocol(), ec); ec) {
    return Fail(Code::kUnavailable, fmt::format("{}: {}", where, ec.message()));
  }
  // bind() creates the file with the umask applied: never let it be accessible to others, not
  // even for the moment before chmod. The umask is process-wide, hence the short window.
  mode_t old_umask = ::umask(077);
  acceptor.bind(UnixProtocol::endpoint(path), ec);
  ::umask(old_umask);
  if (ec) return Fail(Code::kUnavailable, fmt::format("{}: {}", where, ec.message()));
  if (::chmod(path.c_str(), 0600) != 0 || ::lstat(path.c_str(), &st) != 0) {
    Error error{
        Code::kUnavailable, fmt::format("{}: chmod 0600: {}", where, std::strerror(errno)), {}};
    ::unlink(path.c_str());
    return Fail(std::move(error));
  }
  socket_file_.emplace(st.st_dev, st.st_ino);
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) {
    return Fail(Code::kUnavailable, fmt::format("{}: {}", where, ec.message()));
  }
  return acceptor;
}

template <class Protocol>
asio::awaitable<void> Server::Impl::Accept(typename Protocol::acceptor acceptor, bool trusted) {
  for (;;) {
    // Each connection gets its own strand: its coroutine and its stream's timer never run
    // concurrently, while different connections run on all io threads.
    auto [ec, socket] =
        co_await acceptor.async_accept(asio::any_io_executor(asio::make_strand(*io_)), kAwait);
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {
      spdlog::warn("http: accepting a connection: {}", ec.message());
      asio::steady_timer timer(acceptor.get_executor(), kAcceptBackoff);
      co_await timer.async_wait(kAwait);
      continue;
    }
    // Over a cap the connection is closed at once: its client learns, and no fd is held for it.
    std::string address = ClientAddress<Protocol>(socket);
    // The file limit is read at every accept: the cap follows a limit changed at run time.
    ConnectionLimits& limits = trusted ? *unix_limits_ : *tcp_limits_;
    const int cap = trusted ? std::max(1, options_.max_unix_connections)
                            : TcpConnectionCap(options_.max_connections, FileLimit());
    if (!limits.Acquire(address, cap)) {
      spdlog::debug("http: closing a connection from '{}': over the connection cap", address);
      ErrorCode ignored;
      socket.close(ignored);
      continue;
    }
    ConnectionSlot slot(limits, std::move(address));
    if constexpr (std::is_same_v<Protocol, tcp>) {
      ErrorCode ignored;
      socket.set_option(tcp::no_delay(true), ignored);  // answers go out in one write anyway
    }
    beast::basic_stream<Protocol> stream(std::move(socket));
    auto executor = stream.get_executor();
    asio::co_spawn(executor, Serve<Protocol>(std::move(stream), std::move(slot), trusted),
                   [](std::exception_ptr error) {
                     if (!error) return;
                     try {
                       std::rethrow_exception(error);
                     } catch (const std::exception& e) {
                       spdlog::error("http: connection failed: {}", e.what());
                     }
                   });
  }
}

template <class Protocol>
asio::awaitable<void> Server::Impl::Serve(beast::basic_stream<Protocol> stream, ConnectionSlot slot,
                                          bool trusted) {
  beast::flat_buffer buffer;
  for (bool first = true;; first = false) {
    // Before the first request of an untrusted connection the short first-byte timeout applies,
    // otherwise the idle timeout; the request timeout starts with the first byte.
    if (buffer.size() == 0) {
      stream.expires_after(first && !trusted
                               ? std::min(options_.first_byte_timeout, options_.idle_timeout)
                               : options_.idle_timeout);
      auto [ec, n] = co_await stream.async_read_some(buffer.prepare(kReadChunk), kAwait);
      if (ec) co_return;
      buffer.commit(n);
    }
    stream.expires_after(options_.request_timeout);
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(kHeaderLimit);
    // No body limit while reading the headers: Beast would answer a large Content-Length before
    // the handler could check who is asking. Admit checks it instead.
    parser.body_limit(boost::none);
    auto [ec, n] = co_await bhttp::async_read_header(stream, buffer, parser, kAwait);
    // Beast bounds only the part of the header not yet buffered, so check the whole section.
    if (!ec && n > kHeaderLimit) ec = bhttp::error::header_limit;
    if (!ec) {
      if (auto refusal = Admit(parser.get(), parser.content_length(), trusted)) {
        co_await AnswerAndClose(stream, std::move(*refusal));
        co_return;
      }
      parser.body_limit(options_.body_limit);
    }
    if (!ec && !parser.is_done()) {
      if (ExpectsContinue(parser.get())) {
        bhttp::response<bhttp::empty_body> go_on(bhttp::status::continue_, parser.get().version());
        std::tie(ec, n) = co_await bhttp::async_write(stream, go_on, kAwait);
      }
      if (!ec) std::tie(ec, n) = co_await bhttp::async_read(stream, buffer, parser, kAwait);
    }
    if (ec) {
      if (auto answer = ReadErrorResponse(ec, options_.body_limit)) {
        co_await AnswerAndClose(stream, std::move(*answer));
      }
      co_return;
    }

    const unsigned version = parser.get().version();
    const bool keep_alive = parser.get().keep_alive();
    api::HttpResponse answer = Call(ToApiRequest(parser.release(), trusted));
    BeastResponse response;
    try {
      response = ToBeastResponse(std::move(answer), version, keep_alive);
    } catch (const std::exception& e) {
      spdlog::error("http: cannot send the handler's response: {}", e.what());
      response = ToBeastResponse(
          ErrorResponse(500, Code::kInternal, "internal error: the response could not be sent"),
          version, keep_alive);
    }
    // A client that does not take its response is dropped like one that does not send.
    stream.expires_after(options_.request_timeout);
    std::tie(ec, n) = co_await bhttp::async_write(stream, response, kAwait);
    if (ec) co_return;
    if (response.need_eof()) {
      stream.socket().shutdown(asio::socket_base::shutdown_send, ec);
      co_return;
    }
  }
}

template <class Protocol>
asio::awaitable<void> Server::Impl::AnswerAndClose(beast::basic_stream<Protocol>& stream,
                                                   api::HttpResponse answer) {
  BeastResponse response = ToBeastResponse(std::move(answer), 11, /*keep_alive=*/false);
  stream.expires_after(options_.request_timeout);
  auto [ec, n] = co_await bhttp::async_write(stream, response, kAwait);
  if (ec) co_return;
  stream.socket().shutdown(asio::socket_base::shutdown_send, ec);
  if (ec) co_return;
  stream.expires_after(std::min<std::chrono::milliseconds>(kDrainTime, options_.request_timeout));
  std::vector<char> scratch(kReadChunk);
  for (size_t drained = 0; drained < kDrainLimit; drained += n) {
    std::tie(ec, n) = co_await stream.async_read_some(asio::buffer(scratch), kAwait);
    if (ec) break;
  }
}

std::optional<api::HttpResponse> Server::Impl::Admit(
    const BeastRequest& request, const boost::optional<uint64_t>& content_length, bool trusted) {
  api::HttpRequest headers = ToApiHeaders(request, trusted);
  try {
    if (auto refusal = handler_.Admit(headers)) return refusal;
  } catch (const std::exception& e) {
    spdlog::error("http: admitting {} {}: {}", headers.method, headers.target, e.what());
    return ErrorResponse(500, Code::kInternal,
                         "internal error while reading the request; the hearthd log has the "
                         "details");
  }
  if (content_length && *content_length > options_.body_limit) {
    return ReadErrorResponse(bhttp::error::body_limit, options_.body_limit);
  }
  return std::nullopt;
}

api::HttpResponse Server::Impl::Call(const api::HttpRequest& request) {
  try {
    return handler_.Handle(request);
  } catch (const std::exception& e) {
    spdlog::error("http: handling {} {}: {}", request.method, request.target, e.what());
  } catch (...) {
    spdlog::error("http: handling {} {}: unknown exception", request.method, request.target);
  }
  return ErrorResponse(
      500, Code::kInternal,
      fmt::format("internal error while handling {} {}; the hearthd log has the details",
                  request.method, request.target));
}

Server::Server(api::HttpHandler& handler, ServerOptions options)
    : impl_(std::make_unique<Impl>(handler, std::move(options))) {}

Server::~Server() = default;

Status Server::Start() { return impl_->Start(); }

uint16_t Server::tcp_port() const { return impl_->tcp_port(); }

int Server::tcp_connection_cap() const { return impl_->tcp_connection_cap(); }

void Server::Stop() { impl_->Stop(); }

}  // namespace hearth::http

// metering::ClickHouseTransport over ClickHouse's HTTP interface with hearth's HTTP client: the
// statement in the `query` URL parameter, its input as the POST body. Thread-safe (requests are
// serialised on one keep-alive connection).
#pragma once

#include <chrono>
#include <memory>
#include <mutex>

#include "http/client.h"
#include "metering/clickhouse_transport.h"

namespace hearth::http {

class ClickHouseHttpTransport final : public metering::ClickHouseTransport {
 public:
  ClickHouseHttpTransport(metering::ClickHouseEndpoint endpoint,
                          std::chrono::milliseconds timeout = std::chrono::seconds(10));
  Result<metering::ClickHouseReply> Execute(std::string_view sql, std::string_view data) override;
  std::string Describe() const override { return endpoint_.Describe(); }

 private:
  metering::ClickHouseEndpoint endpoint_;
  std::mutex mu_;
  Client client_;
};

// Percent-encodes `text` for a URL query value.
std::string UrlEncode(std::string_view text);

}  // namespace hearth::http

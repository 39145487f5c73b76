// The seam between metering and a ClickHouse server: its HTTP interface, one request at a time.
// The real transport is http/clickhouse_http_transport.h; unit tests use a fake.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace hearth::metering {

// --clickhouse http://[USER[:PASSWORD]@]HOST[:PORT][/DATABASE]; port 8123 and database "hearth"
// by default.
struct ClickHouseEndpoint {
  std::string host;
  uint16_t port = 8123;
  std::string database = "hearth";
  std::string user, password;
  // "http://HOST:PORT/DATABASE", without credentials (for messages).
  std::string Describe() const;
};
Result<ClickHouseEndpoint> ParseClickHouseUrl(std::string_view url);

struct ClickHouseReply {
  int status = 0;  // HTTP status; 200 when the statement succeeded
  std::string body;
};

class ClickHouseTransport {
 public:
  virtual ~ClickHouseTransport() = default;
  // Runs `sql` with `data` as the statement's input (an INSERT's rows), or `sql` alone. Every
  // request carries the settings hearth's statements assume (ISO timestamps in, 64-bit integers
  // out as JSON numbers). unavailable when no reply came: the statement may or may not have run.
  virtual Result<ClickHouseReply> Execute(std::string_view sql, std::string_view data = {}) = 0;
  virtual std::string Describe() const = 0;
};

}  // namespace hearth::metering

#include "hv/qemu/qmp_migration.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <utility>

namespace hearth::hv::qemu {

namespace fs = std::filesystem;

Status SetMigrationCapabilities(QmpClient& qmp) {
  auto r = qmp.Execute("migrate-set-capabilities",
                       {{"capabilities",
                         {{{"capability", "x-ignore-shared"}, {"state", true}},
                          {{"capability", "events"}, {"state", true}}}}});
  if (!r) return Fail(r.error().Wrap("migrate-set-capabilities x-ignore-shared, events"));
  return Ok();
}

Status PassStateFile(QmpClient& qmp, const fs::path& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Fail(Code::kInternal, fmt::format("opening {}: {}", path.string(), strerror(errno)));
  }
  auto r = qmp.ExecuteWithFd(fd, "getfd", {{"fdname", kStateFdName}});
  ::close(fd);
  if (!r) return Fail(r.error().Wrap(fmt::format("handing {} to qemu", path.string())));
  return Ok();
}

void ForgetStateFile(QmpClient& qmp) {
  (void)qmp.Execute("closefd", {{"fdname", kStateFdName}}, std::chrono::seconds(2));
}

namespace {

bool Ended(const nlohmann::json& data) {
  std::string status = data.value("status", "");
  return status == "completed" || status == "failed" || status == "cancelled";
}

}  // namespace

Result<std::string> WaitMigration(QmpClient& qmp, std::chrono::milliseconds limit) {
  auto ended = qmp.WaitEvent("MIGRATION", Ended, limit);
  if (!ended) return Fail(ended.error());
  return ended->value("status", "");
}

Status WaitMigrationFinalized(QmpClient& qmp, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  std::string state;
  do {
    auto r = qmp.Execute("query-status");
    if (!r) return Fail(r.error().Wrap("query-status"));
    state = r->value("status", "");
    if (state != "finish-migrate") return Ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  } while (std::chrono::steady_clock::now() < deadline);
  return Fail(Code::kUnavailable,
              fmt::format("qemu stayed in run state '{}' for {} ms after the migration", state,
                          limit.count()));
}

Status CancelMigration(QmpClient& qmp, std::chrono::milliseconds limit) {
  if (auto r = qmp.Execute("migrate_cancel"); !r) return Fail(r.error());
  auto ended = qmp.WaitEvent("MIGRATION", Ended, limit);
  if (!ended) return Fail(ended.error().Wrap("migrate_cancel"));
  return Ok();
}

Result<QmpListener> QmpListener::Open(const fs::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.string().size() >= sizeof(addr.sun_path)) {
    return Fail(Code::kInvalidArgument,
                fmt::format("the QMP socket path {} is longer than {} bytes; use a shorter "
                            "--data-dir",
                            path.string(), sizeof(addr.sun_path) - 1));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.string().size() + 1);
  std::error_code ec;
  fs::remove(path, ec);
  QmpListener l;
  l.fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (l.fd_ < 0 || ::bind(l.fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(l.fd_, 4) != 0) {
    return Fail(Code::kInternal,
                fmt::format("listening on {}: {}", path.string(), strerror(errno)));
  }
  return l;
}

QmpListener::QmpListener(QmpListener&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

void QmpListener::Close() {
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));
}

}  // namespace hearth::hv::qemu

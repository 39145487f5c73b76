#include "hv/qemu/qmp_migration.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "hv/qemu/qmp_message.h"

namespace hearth::hv::qemu {

namespace fs = std::filesystem;

Status SetMigrationCapabilities(QmpChannel& qmp) {
  if (auto r = RunCall(qmp, MigrationCapabilities()); !r) return Fail(r.error());
  return Ok();
}

Status PassStateFile(QmpChannel& qmp, const fs::path& path, int flags) {
  if (auto r = RunCall(qmp, PassState(path, flags)); !r) return Fail(r.error());
  return Ok();
}

void ForgetStateFile(QmpChannel& qmp) { (void)RunCall(qmp, CloseState()); }

Result<std::string> WaitMigration(QmpChannel& qmp, std::chrono::milliseconds limit) {
  auto ended = qmp.Await(MigrationEnded(limit));
  if (!ended) return Fail(ended.error());
  return MigrationStatus(*ended);
}

Status WaitMigrationFinalized(QmpChannel& qmp, std::chrono::milliseconds limit) {
  QmpCall call = WaitFinalized();
  call.poll->limit = limit;
  if (auto r = RunCall(qmp, call); !r) return Fail(r.error());
  return Ok();
}

Status CancelMigration(QmpChannel& qmp, std::chrono::milliseconds limit) {
  QmpCall call = MigrateCancel();
  call.then_wait->timeout = limit;
  if (auto r = RunCall(qmp, call); !r) return Fail(r.error());
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

#include "common/files.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

namespace hearth {

namespace fs = std::filesystem;

Result<std::string> Sha256File(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Fail(errno == ENOENT ? Code::kNotFound : Code::kInternal,
                fmt::format("cannot read {}: {}", path.string(), std::strerror(errno)));
  }
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 16);
  ssize_t n;
  while ((n = ::read(fd, buf.data(), buf.size())) > 0) {
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n));
  }
  int read_errno = errno;
  ::close(fd);
  if (n < 0) {
    return Fail(Code::kInternal,
                fmt::format("reading {}: {}", path.string(), std::strerror(read_errno)));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &len);
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

Status FsyncPath(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Fail(Code::kInternal,
                fmt::format("opening {}: {}", path.string(), std::strerror(errno)));
  }
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) {
    return Fail(Code::kInternal, fmt::format("fsync {}: {}", path.string(), std::strerror(err)));
  }
  return Ok();
}

namespace {

Status WriteThroughTemporary(const fs::path& path, std::string_view content, bool sync) {
  fs::path tmp = path;
  tmp += ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Fail(Code::kInternal,
                fmt::format("creating {}: {}", tmp.string(), std::strerror(errno)));
  }
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  bool ok = done == content.size();
  int err = ok ? 0 : (errno != 0 ? errno : EIO);
  if (ok && sync && ::fsync(fd) != 0) {
    ok = false;
    err = errno;
  }
  ::close(fd);
  if (!ok) {
    ::unlink(tmp.c_str());
    return Fail(Code::kInternal, fmt::format("writing {}: {}", tmp.string(), std::strerror(err)));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    ::unlink(tmp.c_str());
    return Fail(Code::kInternal, fmt::format("renaming {} to {}: {}", tmp.string(), path.string(),
                                             std::strerror(err)));
  }
  return sync ? FsyncPath(path.parent_path()) : Ok();
}

}  // namespace

Status WriteFileDurably(const fs::path& path, std::string_view content) {
  return WriteThroughTemporary(path, content, /*sync=*/true);
}

Status WriteFileAtomically(const fs::path& path, std::string_view content) {
  return WriteThroughTemporary(path, content, /*sync=*/false);
}

Status SwapIntoPlace(const fs::path& from, const fs::path& to, bool sync) {
  int rc = renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_EXCHANGE);
  if (rc != 0 && errno == ENOENT) rc = ::rename(from.c_str(), to.c_str());
  if (rc != 0) {
    return Fail(Code::kInternal, fmt::format("moving {} into place at {}: {}", from.string(),
                                             to.string(), std::strerror(errno)));
  }
  return sync ? FsyncPath(to.parent_path()) : Ok();
}

}  // namespace hearth

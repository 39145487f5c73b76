#include "api/auth.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

namespace hearth::api {
namespace {

constexpr std::string_view kAdminHashKey = "admin_token_sha256";

Status WriteFileAtomically(const std::filesystem::path& path, std::string_view content,
                           mode_t mode) {
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) {
    return Fail(Code::kInternal, fmt::format("writing {}: {}", tmp.string(), strerror(errno)));
  }
  fchmod(fd, mode);
  bool ok = write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()) &&
            fsync(fd) == 0;
  int err = errno;
  close(fd);
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
    if (ok) err = errno;
    unlink(tmp.c_str());
    return Fail(Code::kInternal, fmt::format("writing {}: {}", path.string(), strerror(err)));
  }
  int dir = open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    fsync(dir);
    close(dir);
  }
  return Ok();
}

}  // namespace

std::string Sha256Hex(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), digest, &len, EVP_sha256(), nullptr);
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) out += fmt::format("{:02x}", digest[i]);
  return out;
}

Result<TokenAuthenticator> TokenAuthenticator::Init(store::StateStore& store, const Paths& paths) {
  auto stored = store.GetSetting(kAdminHashKey);
  if (!stored) return Fail(stored.error().Wrap("reading the admin token hash"));
  std::ifstream in(paths.admin_token());
  std::string existing;
  if (in) std::getline(in, existing);
  if (*stored && !existing.empty() && Sha256Hex(existing) == **stored) {
    return TokenAuthenticator(**stored);
  }
  if (*stored) {
    spdlog::warn("{} is missing or does not match the stored token hash; writing a new admin token",
                 paths.admin_token().string());
  }
  unsigned char random[32];
  if (RAND_bytes(random, sizeof(random)) != 1) {
    return Fail(Code::kInternal, "generating the admin token: no randomness from OpenSSL");
  }
  std::string token = "hth_";
  for (unsigned char b : random) token += fmt::format("{:02x}", b);
  if (auto s = WriteFileAtomically(paths.admin_token(), token + "\n", 0600); !s)
    return Fail(s.error());
  std::string hash = Sha256Hex(token);
  if (auto s = store.PutSetting(kAdminHashKey, hash); !s) {
    return Fail(s.error().Wrap("storing the admin token hash"));
  }
  spdlog::info("wrote a new admin token to {}", paths.admin_token().string());
  return TokenAuthenticator(hash);
}

bool TokenAuthenticator::Check(std::string_view authorization) const {
  constexpr std::string_view kPrefix = "Bearer ";
  if (authorization.size() <= kPrefix.size() ||
      authorization.substr(0, kPrefix.size()) != kPrefix) {
    return false;
  }
  std::string hash = Sha256Hex(authorization.substr(kPrefix.size()));
  return hash.size() == admin_hash_.size() &&
         CRYPTO_memcmp(hash.data(), admin_hash_.data(), hash.size()) == 0;
}

}  // namespace hearth::api

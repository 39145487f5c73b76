// Bearer tokens for TCP clients. The admin token is written once to <data-dir>/admin.token (mode
// 0600) for the operator to read; the store keeps only its SHA-256. Unix-socket clients are
// trusted by the socket's permissions and need no token.
#pragma once

#include <string>
#include <string_view>

#include "common/paths.h"
#include "common/result.h"
#include "store/state_store.h"

namespace hearth::api {

// The lowercase hex SHA-256 of `text`.
std::string Sha256Hex(std::string_view text);

class TokenAuthenticator {
 public:
  // Makes sure an admin token exists. Reuses the one in admin.token when its hash is the stored
  // one; otherwise (first start, or the file was lost) makes a new one, writes the file
  // atomically with mode 0600 and stores its hash.
  static Result<TokenAuthenticator> Init(store::StateStore& store, const Paths& paths);

  explicit TokenAuthenticator(std::string admin_hash) : admin_hash_(std::move(admin_hash)) {}

  // True if `authorization` is "Bearer <token>" with a known token.
  bool Check(std::string_view authorization) const;

 private:
  std::string admin_hash_;
};

}  // namespace hearth::api

// Errors as values. Every fallible function returns Result<T> (or Status for no value); an Error
// carries a canonical code, a message that names the bad value and the fix, and, for validation
// errors, the field it is about. One table (HttpStatus) maps codes to HTTP statuses.
#pragma once

#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <utility>

namespace hearth {

enum class Code {
  kInvalidArgument,
  kUnauthenticated,
  kPermissionDenied,
  kNotFound,
  kAlreadyExists,
  kFailedPrecondition,
  kResourceExhausted,
  kUnavailable,
  kInternal,
};

// The wire name of a code, e.g. "invalid_argument".
std::string_view CodeName(Code code);
// The HTTP status a code is answered with.
int HttpStatus(Code code);

struct Error {
  Code code = Code::kInternal;
  std::string message;
  std::string field;  // empty unless the error is about one request field

  // Returns a copy whose message is "context: message", for adding context on the way up.
  Error Wrap(std::string_view context) const;
};

template <class T>
using Result = tl::expected<T, Error>;
using Status = tl::expected<void, Error>;

inline tl::unexpected<Error> Fail(Code code, std::string message, std::string field = {}) {
  return tl::unexpected<Error>(Error{code, std::move(message), std::move(field)});
}
inline tl::unexpected<Error> Fail(Error error) { return tl::unexpected<Error>(std::move(error)); }

inline Status Ok() { return {}; }

}  // namespace hearth

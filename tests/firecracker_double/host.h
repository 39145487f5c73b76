// What the Firecracker double touches on the host: paths (resolved inside FC_DOUBLE_ROOT when run
// by the jailer double), tap devices, the vsock socket and the files it keeps open.
#pragma once

#include <string>

#include "common/result.h"

namespace hearth::fcdouble {

// An owned file descriptor, closed on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd();
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  // Gives up ownership: returns the descriptor, which is no longer closed by this object.
  int Release();
  void Reset();

 private:
  int fd_ = -1;
};

// Maps an API path to a host path. With a root (FC_DOUBLE_ROOT) every path is taken inside it as
// a chroot would: "/x/y" and "x/y" both become "<root>/x/y" (the jailed process's working
// directory is the chroot's "/"); without a root paths are used as given.
class PathResolver {
 public:
  explicit PathResolver(std::string root = {}) : root_(std::move(root)) {}
  std::string Resolve(const std::string& path) const;
  const std::string& root() const { return root_; }

 private:
  std::string root_;
};

// Opens a file as Firecracker opens kernels, initrds and drives; the error reads like
// "No such file or directory (os error 2)".
Result<Fd> OpenFile(const std::string& host_path, bool writable);

// Opens the tap `name` through `tun_path` (/dev/net/tun, or the jail's copy) with TUNSETIFF and
// IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, as Firecracker does. A tap already attached to another
// open file fails with EBUSY ("Resource busy (os error 16)").
Result<Fd> OpenTap(const std::string& tun_path, const std::string& name);

// Binds and listens with `backlog` on a unix socket at `host_path` (the vsock device's uds_path,
// the API socket); an existing path fails with EADDRINUSE. The error is internal when the socket
// cannot be created and failed_precondition when bind or listen fails; `os_error`, when given, is
// then set to the errno.
Result<Fd> ListenUnix(const std::string& host_path, int backlog = 16, int* os_error = nullptr);

// "Resource busy (os error 16)": the OS error as Rust's io::Error prints it.
std::string OsError(int err);

}  // namespace hearth::fcdouble

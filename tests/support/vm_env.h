// What e2e tests that boot VMs through hearthd share: the default guest image (built once per
// build tree and reused), plain HTTP GETs to any IPv4 address, a client network namespace, and a
// guard that removes every process, tap and nftables table a test's hearthd created.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>

#include "support/daemon.h"

namespace hearth::testing {

// <build>/e2e-image-<key>/images/default (the key changes with the guest's contents), built with
// `hearth image build default` the first time any test asks (serialised across test processes with
// a lock file). Fails the calling test if the build fails.
std::filesystem::path SharedDefaultImage();
// Links the shared default image into `data_dir`/images/default.
void LinkDefaultImage(const std::filesystem::path& data_dir);

struct HttpReply {
  int status = 0;
  std::string body;
};
// One HTTP/1.0 GET to host:port; nullopt without a complete answer within `timeout`.
std::optional<HttpReply> HttpGet(const std::string& host, uint16_t port, const std::string& path,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(5));
// Retries HttpGet until it answers 200 or `limit` passes.
std::optional<HttpReply> HttpGetEventually(const std::string& host, uint16_t port,
                                           const std::string& path,
                                           std::chrono::milliseconds limit);

// A network namespace joined to the host by a veth pair: host side `host_ip`/30, namespace
// side `ns_ip`/30 with a default route to the host. Removed (with its veth) on destruction.
class ClientNamespace {
 public:
  // `index` picks 10.251.<index>.0/30; use a value unique among concurrent tests.
  explicit ClientNamespace(int index);
  ~ClientNamespace();
  const std::string& name() const { return name_; }
  const std::string& host_ip() const { return host_ip_; }
  const std::string& ns_ip() const { return ns_ip_; }
  // Runs argv inside the namespace.
  RunResult Run(std::vector<std::string> argv) const;
  // The namespace's own TCP counters: SYNs retransmitted (TcpExt TCPSynRetrans) and segments
  // retransmitted (Tcp RetransSegs); -1 if unreadable.
  int64_t SynRetransmissions() const;
  int64_t SegmentsRetransmitted() const;

 private:
  std::string name_, veth_, host_ip_, ns_ip_;
};

// Everything hearthd may have left on the host for `data_dir`: VMM processes, its taps, its
// nftables table. Run in TearDown so a failed test leaves nothing behind.
void CleanUpHost(const std::filesystem::path& data_dir);

// The hypervisor e2e tests run VMs on: $HEARTH_E2E_HYPERVISOR ("qemu" when unset).
std::string E2eHypervisor();
// Empty when this host can run the e2e tests on Firecracker: a `firecracker` binary
// ($HEARTH_E2E_FIRECRACKER, else in PATH) and KVM that really boots a guest (the same probe as
// hearthd's, cached per host boot); otherwise why not.
std::string FirecrackerUnavailable();

// A /24 of 172.31.0.0/16 for one test process's VMs (from the pid), so concurrent tests and a
// production hearthd on 172.30.0.0/16 never share addresses.
std::string TestNetworkPool();

}  // namespace hearth::testing

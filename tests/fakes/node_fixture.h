// The fixture of the node's unit tests: a Node over a fake store, clock, file probe, driver (real
// `sleep` processes as VMMs) and network, in a temporary data directory.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>

#include "fakes/fake_machinery.h"
#include "fakes/fakes.h"
#include "node/node.h"
#include "support/temp_dir.h"

namespace hearth::testing {

class NodeFixture : public ::testing::Test {
 protected:
  // Derived fixtures adjust options_ and then call NewNode().
  NodeFixture() : paths_(dir_.path()) {
    files_.AddKernel("/k/vmlinux");
    options_.stop_timeout = std::chrono::seconds(2);
    options_.boot_timeout = std::chrono::seconds(5);
  }
  ~NodeFixture() override {
    node_.reset();
    KillFakeVmms(dir_.path().string());
  }

  // A node over the same store and host as the previous one: a restarted hearthd.
  void NewNode() {
    node_.reset();
    node::Machinery m;
    m.driver = &driver_;
    m.network = &network_;
    m.waker = &waker_;
    m.pool = *net::AddressPool::Parse("172.30.0.0/24");
    node_ = std::make_unique<node::Node>(store_, TestHost(), files_, clock_, paths_, options_, m);
    ASSERT_TRUE(node_->Load());
    ASSERT_TRUE(node_->Recover());
  }

  // Waits, without polling, until `pred` (which may read the node) holds: it is checked again
  // each time a record write or a job of the node ends. False if it still fails after `limit`.
  template <class Pred>
  bool Eventually(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(5)) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (true) {
      uint64_t seen = node_->Changes();
      if (pred()) return true;
      if (!node_->WaitForChange(seen, deadline)) return pred();
    }
  }

  TempDir dir_;
  Paths paths_;
  FakeStateStore store_;
  FakeFileProbe files_;
  FakeClock clock_;
  node::NodeOptions options_;
  FakeDriver driver_;
  FakeNetwork network_;
  FakeWaker waker_;
  std::unique_ptr<node::Node> node_;
};

}  // namespace hearth::testing

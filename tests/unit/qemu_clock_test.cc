// QemuDriver::SyncClock against a stand-in for the guest agent on the channel's FIFO pair (what
// QEMU's pipe chardev connects to the virtio-serial port): the request and answer lines, and a
// later sync taking over from one still waiting for an answer that will not come.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "hv/qemu/qemu_driver.h"
#include "support/temp_dir.h"

namespace hearth::hv::qemu {
namespace {

using namespace std::chrono_literals;

class QemuClockTest : public ::testing::Test {
 protected:
  QemuClockTest() : driver_(QemuDriverOptions{}) {
    spec_.vm_id = "vm1";
    spec_.name = "web";
    spec_.agent_pipe = dir_ / "agent";
    for (const char* end : {".in", ".out"}) {
      EXPECT_EQ(mkfifo((spec_.agent_pipe.string() + end).c_str(), 0600), 0);
    }
    // Held the way QEMU holds them: read-write, so neither side blocks on open.
    requests_ = open((spec_.agent_pipe.string() + ".in").c_str(), O_RDWR | O_CLOEXEC);
    answers_ = open((spec_.agent_pipe.string() + ".out").c_str(), O_RDWR | O_CLOEXEC);
  }
  ~QemuClockTest() override {
    close(requests_);
    close(answers_);
  }

  // The next request line the host wrote, or "" after 5 s.
  std::string NextRequest() {
    std::string line;
    auto until = std::chrono::steady_clock::now() + 5s;
    while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < until) {
      pollfd p{requests_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      char c;
      if (read(requests_, &c, 1) == 1) line += c;
    }
    return line;
  }
  void Answer(const std::string& line) {
    ASSERT_EQ(write(answers_, line.data(), line.size()), static_cast<ssize_t>(line.size()));
  }

  testing::TempDir dir_;
  MachineSpec spec_;
  QemuDriver driver_;
  int requests_ = -1;
  int answers_ = -1;
};

TEST_F(QemuClockTest, TheAgentConfirmsTheTimeItWasSent) {
  Status synced = Fail(Code::kInternal, "not run");
  std::thread sync([&] { synced = driver_.SyncClock(spec_, {}); });
  std::string request = NextRequest();
  ASSERT_EQ(request.rfind("settime ", 0), 0u) << request;
  std::string sent = request.substr(8, request.size() - 9);
  ASSERT_NE(sent.find('.'), std::string::npos) << "to a fraction of a second: " << sent;
  double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_LT(std::abs(std::stod(sent) - now), 0.1);
  Answer("ok " + std::to_string(std::stoll(sent) - 1) + "\n");  // a stale answer does not count
  Answer("ok " + sent + "\n");
  sync.join();
  EXPECT_TRUE(synced) << synced.error().message;
}

// An agent from an image built before fractions were taken refuses one: it gets whole seconds.
TEST_F(QemuClockTest, AnOlderAgentIsAskedForTheNearestWholeSecond) {
  Status synced = Fail(Code::kInternal, "not run");
  std::thread sync([&] { synced = driver_.SyncClock(spec_, {}); });
  std::string request = NextRequest();
  std::string sent = request.substr(8, request.size() - 9);
  Answer("error " + sent + "\n");
  std::string again = NextRequest();
  std::string whole = again.substr(8, again.size() - 9);
  EXPECT_EQ(whole.find('.'), std::string::npos) << again;
  EXPECT_LE(std::abs(std::stod(whole) - std::stod(sent)), 0.5);
  Answer("ok " + whole + "\n");
  sync.join();
  EXPECT_TRUE(synced) << synced.error().message;
}

TEST_F(QemuClockTest, ALaterSyncTakesOverFromOneStillWaiting) {
  // The first request is lost (the VM was suspended before its agent read it); the VM is resumed
  // and synced again. Both calls end at once, and neither takes the other's answer.
  Status first = Fail(Code::kInternal, "not run"), second = first;
  auto t0 = std::chrono::steady_clock::now();
  std::thread one([&] { first = driver_.SyncClock(spec_, {}); });
  ASSERT_NE(NextRequest(), "");
  std::thread two([&] { second = driver_.SyncClock(spec_, {}); });
  std::string request = NextRequest();
  ASSERT_EQ(request.rfind("settime ", 0), 0u) << request;
  Answer("ok " + request.substr(8));
  one.join();
  two.join();
  EXPECT_TRUE(first) << first.error().message;
  EXPECT_TRUE(second) << second.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1500ms) << "nobody waited for the timeout";
}

TEST_F(QemuClockTest, AnAgentThatFloodsAndNeverAnswersIsReadBoundedAndTimesOut) {
  // The guest sends junk as fast as the channel takes it (long lines with escape codes) and never
  // the answer. The flood ends by itself after 8 s.
  ASSERT_EQ(fcntl(answers_, F_SETFL, fcntl(answers_, F_GETFL) | O_NONBLOCK), 0);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> written{0};
  std::thread flood([&] {
    std::string junk = "\x1b[2J\x1b]0;owned\x07" + std::string(4000, 'x') + "\n";
    auto until = std::chrono::steady_clock::now() + 8s;
    while (!stop && std::chrono::steady_clock::now() < until) {
      pollfd p{answers_, POLLOUT, 0};
      if (poll(&p, 1, 10) <= 0) continue;
      ssize_t n = write(answers_, junk.data(), junk.size());
      if (n > 0) written += n;
    }
  });
  // Let the junk pile up before the sync: part of it is "stale" when the sync starts.
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (written < 32 << 10 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  auto t0 = std::chrono::steady_clock::now();
  Status synced = driver_.SyncClock(spec_, {});
  auto took = std::chrono::steady_clock::now() - t0;
  stop = true;
  flood.join();
  int64_t left = 0;  // what the host did not read
  char buf[65536];
  for (ssize_t n; (n = read(answers_, buf, sizeof(buf))) > 0;) left += n;
  int64_t consumed = written - left;

  ASSERT_FALSE(synced);
  EXPECT_LT(took, 2500ms) << "the sync's own timeout is 2 s";
  EXPECT_LE(consumed, 64 << 10) << "bytes the host read from the guest";
  const std::string& message = synced.error().message;
  EXPECT_LE(message.size(), 512u) << message;
  EXPECT_NE(message.find("\\x1b[2J\\x1b]0;owned\\x07xxx"), std::string::npos) << message;
  EXPECT_TRUE(std::none_of(message.begin(), message.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20;
  })) << message;
}

TEST_F(QemuClockTest, AnAnswerAfterLongJunkLinesStillCounts) {
  Status synced = Fail(Code::kInternal, "not run");
  std::thread sync([&] { synced = driver_.SyncClock(spec_, {}); });
  std::string request = NextRequest();
  ASSERT_EQ(request.rfind("settime ", 0), 0u) << request;
  std::string second = request.substr(8, request.size() - 9);
  // A long line that ends in the answer is not the answer; the whole line after it is.
  Answer(std::string(5000, 'x') + "ok " + second + "\n");
  Answer("ok " + second + "\r\n");
  sync.join();
  EXPECT_TRUE(synced) << synced.error().message;
}

}  // namespace
}  // namespace hearth::hv::qemu

// The console log as hearth reads it back: the tail quoted in events and errors (escaped,
// bounded), and the wait for the guest's ready line while the log is capped under a flood.
#include "hv/console_log.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "support/temp_dir.h"

namespace hearth::hv {
namespace {

using namespace std::chrono_literals;

void Append(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::app | std::ios::binary) << bytes;
}

TEST(ConsoleLogTest, LastLinesAreEscapedAndBoundedWhateverTheGuestPrinted) {
  testing::TempDir dir;
  auto path = dir / "console.log";
  Append(path,
         "boot ok\r\n\x1b]0;owned\x07\x1b[2J\xff\xc2\x9b"
         "done\r\n");
  EXPECT_EQ(LastLines(path, 3), "boot ok | \\x1b]0;owned\\x07\\x1b[2J\\xff\\u009bdone");
  Append(path, std::string(10 << 20, 'A') + "\x1b[0m\r\n");  // one 10 MB line
  std::string tail = LastLines(path, 3);
  EXPECT_LE(tail.size(), kMaxTailLineBytes) << "the long line is the only one in the tail read";
  EXPECT_EQ(tail.rfind("AAAA", 0), 0u) << tail;
  EXPECT_NE(tail.find("bytes cut]"), std::string::npos) << tail;
}

TEST(ConsoleLogTest, LastLinesAreThoseOfTheLatestRunWithoutItsLaunchMarker) {
  testing::TempDir dir;
  auto console = dir / "console.log";
  ASSERT_TRUE(StampLaunch(console, dir / "vmm.log", "web"));
  Append(console, "first run\n");
  ASSERT_TRUE(StampLaunch(console, dir / "vmm.log", "web"));
  EXPECT_EQ(LastLines(console, 3), "") << "a run that printed nothing has nothing to say";
  EXPECT_EQ(LastLines(dir / "vmm.log", 3), "");
  Append(console, "second run\n");
  EXPECT_EQ(LastLines(console, 3), "second run");
}

TEST(ConsoleLogTest, TheReadyLineIsSeenAfterTheLogWasCappedDuringTheWait) {
  testing::TempDir dir;
  auto console = dir / "console.log";
  ASSERT_TRUE(StampLaunch(console, dir / "vmm.log", "web"));
  auto self = ProcessStartTime(getpid());
  ASSERT_TRUE(self);
  ConsoleWatch watch{console, "guest ready", "web", "qemu", {getpid(), *self}, nullptr};
  std::atomic<bool> cancel{false};
  // Each read of the console that returns bytes is an IN_ACCESS event.
  int reads = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  ASSERT_GE(reads, 0);
  ASSERT_GE(inotify_add_watch(reads, console.c_str(), IN_ACCESS), 0);
  // The guest floods its console while booting; the supervisor's tick caps the log (its head is
  // cut off and the rest moves up), then the guest prints its ready line.
  std::thread guest([&] {
    std::string line = std::string(1000, '#') + "\n";
    std::string flood;
    for (int i = 0; i < 3000; ++i) flood += line;
    Append(console, flood);
    // The cap comes once the wait has read (some of) the flood: forget the reads before it, then
    // wait for the next one.
    char events[4096];
    while (read(reads, events, sizeof(events)) > 0) {
    }
    pollfd next{reads, POLLIN, 0};
    EXPECT_EQ(poll(&next, 1, 5000), 1) << "the wait reads the flood";
    EXPECT_TRUE(CapLog(console, 1 << 20));
    EXPECT_LT(std::filesystem::file_size(console), 2u << 20) << "the cap applies here";
    Append(console, "guest ready\n");
  });
  auto t0 = std::chrono::steady_clock::now();
  Status up = WaitForConsole(watch, t0 + 5s, cancel);
  guest.join();
  close(reads);
  EXPECT_TRUE(up) << up.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s);
}

}  // namespace
}  // namespace hearth::hv

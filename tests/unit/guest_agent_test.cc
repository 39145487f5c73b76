// The guest agent the default image carries (src/agent/hearth_agent.c), run on the host from the
// bytes embedded in hearth: a pseudo-terminal in raw mode stands in for the virtio-serial port.
// Setting the clock is not tried here (it would set the host's); the e2e tests check a resumed
// guest's clock.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "common/files.h"
#include "hv/process.h"
#include "image/guest_init.h"
#include "support/daemon.h"
#include "support/scope_guard.h"
#include "support/temp_dir.h"

namespace hearth {
namespace {

using namespace std::chrono_literals;

std::string WrittenAgent(const testing::TempDir& dir) {
  std::string path = (dir / "hearth-agent").string();
  EXPECT_TRUE(WriteFileAtomically(path, image::GuestAgentBinary()));
  chmod(path.c_str(), 0755);
  return path;
}

// Reads from `fd` until `lines` newlines arrived or 5 s passed.
std::string ReadLines(int fd, int lines) {
  std::string out;
  auto until = std::chrono::steady_clock::now() + 5s;
  while (std::count(out.begin(), out.end(), '\n') < lines &&
         std::chrono::steady_clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buf[256];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0) out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

TEST(GuestAgentTest, AnswersEachRequestLineAndRefusesWhatItDoesNotKnow) {
  testing::TempDir dir;
  std::string agent = WrittenAgent(dir);
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  ASSERT_GE(master, 0);
  ASSERT_EQ(grantpt(master), 0);
  ASSERT_EQ(unlockpt(master), 0);
  std::string port = ptsname(master);
  int tty = open(port.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);  // kept open: raw stays set
  ASSERT_GE(tty, 0);
  termios raw{};
  tcgetattr(tty, &raw);
  cfmakeraw(&raw);
  tcsetattr(tty, TCSANOW, &raw);
  auto process = hv::Spawn({agent, port}, {});
  ASSERT_TRUE(process) << process.error().message;
  testing::Guard end([&] {
    hv::SignalProcess(*process, SIGKILL);
    hv::WaitForExit(*process, 5s);
    close(tty);
    close(master);
  });

  // Requests may arrive split or several at once; a line longer than any request is refused.
  std::string requests = "pi";
  ASSERT_EQ(write(master, requests.data(), requests.size()), 2);
  // A long line is refused once, even when it ends like a request.
  requests =
      "ng\nsettime 12x\nsettime\nsettime 99999999999999999999\nsettime 1.\n"
      "settime .5\nsettime 1.2.3\nsettime 1.1234567890\n" +
      std::string(300, 'a') + "ping\nreboot\nping\n";
  ASSERT_EQ(write(master, requests.data(), requests.size()), static_cast<ssize_t>(requests.size()));
  EXPECT_EQ(ReadLines(master, 11),
            "pong\nerror 12x\nerror unknown request\nerror 99999999999999999999\nerror 1.\n"
            "error .5\nerror 1.2.3\nerror 1.1234567890\n"
            "error unknown request\nerror unknown request\npong\n");
}

TEST(GuestAgentTest, WithoutAPortItSaysHowToRunIt) {
  testing::TempDir dir;
  auto r = testing::RunProgram({WrittenAgent(dir)});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err, "usage: hearth-agent PORT\n");
}

}  // namespace
}  // namespace hearth

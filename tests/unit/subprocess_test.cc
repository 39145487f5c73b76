// The single fork/exec (common/subprocess.h): what RunCommand captures and reports, and that the
// detached Spawn confines and reports each failed step as it did before it moved here.
#include "common/subprocess.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <sstream>

#include "support/temp_dir.h"

namespace hearth {
namespace {

using namespace std::chrono_literals;

std::string ReadAll(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(RunCommandTest, CapturesStdoutAndStderr) {
  auto r = RunCommand({"sh", "-c", "echo out; echo err >&2"});
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->out, "out\n");
  EXPECT_EQ(r->err, "err\n");
}

TEST(RunCommandTest, FailureNamesTheCommandAndEndsWithItsStderr) {
  auto r = RunCommand({"sh", "-c", "echo broken >&2; exit 3"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kInternal);
  EXPECT_EQ(r.error().message, "`sh -c 'echo broken >&2; exit 3'` exited with status 3: broken");
  auto killed = RunCommand({"sh", "-c", "kill -9 $$"});
  ASSERT_FALSE(killed);
  EXPECT_EQ(killed.error().message, "`sh -c 'kill -9 $$'` was killed by signal 9");
}

TEST(RunCommandTest, AMissingProgramIsUnavailable) {
  auto r = RunCommand({"hearth-no-such-tool", "x"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kUnavailable);
  EXPECT_EQ(r.error().message,
            "cannot run `hearth-no-such-tool x`: No such file or directory (is it installed?)");
}

TEST(RunCommandTest, FilesAndDirectory) {
  testing::TempDir dir;
  std::ofstream(dir / "in") << "hello\n";
  auto r = RunCommand({"cat"}, FileToFile(dir / "in", dir / "out"));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->out, "");
  EXPECT_EQ(ReadAll(dir / "out"), "hello\n");
  auto pwd = RunCommand({"pwd"}, InDirectory(dir.path()));
  ASSERT_TRUE(pwd);
  EXPECT_EQ(pwd->out, std::filesystem::canonical(dir.path()).string() + "\n");
  auto stdin_is_empty = RunCommand({"cat"});
  ASSERT_TRUE(stdin_is_empty);
  EXPECT_EQ(stdin_is_empty->out, "");
  // What the child cannot open or enter ends it with status 126, as before.
  auto no_input = RunCommand({"cat"}, FileToFile(dir / "missing", dir / "out"));
  ASSERT_FALSE(no_input);
  EXPECT_EQ(no_input.error().message, "`cat` exited with status 126");
  auto no_dir = RunCommand({"pwd"}, InDirectory(dir / "missing"));
  ASSERT_FALSE(no_dir);
  EXPECT_EQ(no_dir.error().message, "`pwd` exited with status 126");
}

TEST(SpawnTest, RunsDetachedWithOutputAppendedAndOnlyKeptDescriptors) {
  testing::TempDir dir;
  std::ofstream(dir / "log") << "before\n";
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  // Not close-on-exec, and numbered above what the shell opens itself.
  int kept[2] = {fcntl(pipe_fds[0], F_DUPFD, 200), fcntl(pipe_fds[1], F_DUPFD, 200)};
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  SpawnOptions o;
  o.output = dir / "log";
  o.keep_fds = {kept[1]};
  o.umask = 027;
  auto p = Spawn({"sh", "-c",
                  "echo sid=$(($(cut -d' ' -f6 /proc/$$/stat) == $$)) kept=$(test -e /proc/$$/fd/" +
                      std::to_string(kept[1]) + " && echo y) other=$(test -e /proc/$$/fd/" +
                      std::to_string(kept[0]) + " && echo y) umask=$(umask); echo err >&2"},
                 o);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_TRUE(WaitForExit(*p, 5s));
  close(kept[0]);
  close(kept[1]);
  EXPECT_EQ(ReadAll(dir / "log"), "before\nsid=1 kept=y other= umask=0027\nerr\n");
}

TEST(SpawnTest, EachFailedStepIsNamed) {
  auto missing = Spawn({"/nonexistent/vmm"}, {});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Code::kUnavailable);
  EXPECT_EQ(missing.error().message, "cannot run /nonexistent/vmm: No such file or directory");

  SpawnOptions o;
  o.must_access = {{"/nonexistent/disk.img", R_OK}};
  auto access = Spawn({"true"}, o);
  ASSERT_FALSE(access);
  EXPECT_EQ(access.error().code, Code::kFailedPrecondition);
  EXPECT_NE(access.error().message.find("cannot read /nonexistent/disk.img"), std::string::npos)
      << access.error().message;

  SpawnOptions bad_cgroup;
  bad_cgroup.cgroup_procs = {-1};
  auto cgroup = Spawn({"true"}, bad_cgroup);
  ASSERT_FALSE(cgroup);
  EXPECT_EQ(cgroup.error().message,
            "true: joining its cgroup (cgroup.procs #0): Bad file descriptor");

  SpawnOptions no_log;
  no_log.output = "/nonexistent/dir/log";
  auto log = Spawn({"true"}, no_log);
  ASSERT_FALSE(log);
  EXPECT_EQ(log.error().message, "opening /nonexistent/dir/log: No such file or directory");
}

TEST(StartChildTest, ReportsTheStepThatFailedAndReapsTheChild) {
  ChildSpec spec;
  spec.argv = {"true"};
  spec.cwd = "/nonexistent";
  StartedChild child = StartChild(spec);
  ASSERT_TRUE(child.failure);
  EXPECT_EQ(child.failure->step, ChildStep::kChdir);
  EXPECT_EQ(child.failure->err, ENOENT);
}

}  // namespace
}  // namespace hearth

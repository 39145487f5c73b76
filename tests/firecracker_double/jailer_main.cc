// jailer (test double): a stand-in for Firecracker's v1.16.1 jailer, used with the firecracker
// double. It parses and validates the jailer's CLI as the real one does and lays out the jail the
// same way, so a driver that builds the wrong command line or puts files in the wrong place fails.
//
//   jailer --id <1-64 alphanumerics or '-'> --exec-file <path, name contains "firecracker">
//          --uid <u32> --gid <u32> [--chroot-base-dir /srv/jailer] [--cgroup-version 1|2]
//          [--cgroup file=value]... [--parent-cgroup P] [--netns /var/run/netns/X]
//          [--resource-limit fsize=N|no-file=N]... [--daemonize] [--new-pid-ns]
//          [-- <firecracker args>]
//
// Emulated, in the real jailer's order:
//   1. validates the arguments (bad ones exit 1 with "Jailer error: ...");
//   2. creates <base>/<basename(exec-file)>/<id>/root and copies the exec file into it, owned by
//      uid:gid with the source's mode;
//   3. joins --netns (setns; needs root), sets RLIMIT_NOFILE (2048 unless given) and
//      RLIMIT_FSIZE, closes inherited file descriptors above 2;
//   4. creates <root>/dev/net and <root>/run (mode 0700, owned by uid:gid) and, when root, makes
//      <root>/dev/net/tun and <root>/dev/kvm (mknod, owned by uid:gid);
//   5. --daemonize: setsid and stdio to /dev/null; --new-pid-ns: forks (into a new PID namespace
//      when root) and the parent exits after writing the child's pid;
//   6. writes the pid into <root>/<exec name>.pid (created exclusively: a stale one is an error);
//   7. really drops to gid/uid (setgroups, setgid, setuid), so every file the driver hands to the
//      VMM must be accessible to that uid, and execs <root>/<exec name> with
//      --id <id> --start-time-us <t> --start-time-cpu-us <t> --parent-cpu-time-us <t> <args>.
// Not emulated: chroot and pivot_root (the double is dynamically linked): instead FC_DOUBLE_ROOT is
// set to the root directory and the firecracker double resolves every path inside it; cgroups
// (--cgroup, --cgroup-version, --parent-cgroup are only validated); the mount namespace. The
// environment is cleared like the real jailer's except FC_DOUBLE_* (the test hooks); the
// FC_DOUBLE_JOURNAL file is created if needed and given to uid:gid so the jailed double can
// append to it.
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

namespace fs = std::filesystem;

extern char** environ;

namespace {

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "Jailer error: %s\n", message.c_str());
  std::exit(1);
}

bool ValidId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
  }
  return true;
}

bool ParseU32(const std::string& s, unsigned& out) {
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos || s.size() > 10) {
    return false;
  }
  unsigned long v = std::stoul(s);
  if (v > 0xffffffffUL) return false;
  out = static_cast<unsigned>(v);
  return true;
}

uint64_t NowUs(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

void MakeOwnedDir(const fs::path& dir, unsigned uid, unsigned gid) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) Die("Failed to create directory " + dir.string() + ": " + ec.message());
  if (::chmod(dir.c_str(), 0700) != 0 || ::chown(dir.c_str(), uid, gid) != 0) {
    Die("Failed to change owner for " + dir.string() + ": " + std::strerror(errno));
  }
}

void Mknod(const fs::path& path, unsigned major, unsigned minor, unsigned uid, unsigned gid) {
  if (::mknod(path.c_str(), S_IFCHR | S_IRUSR | S_IWUSR, makedev(major, minor)) != 0 &&
      errno != EEXIST) {
    Die("Failed to create " + path.string() +
        " via mknod inside the jail: " + std::strerror(errno));
  }
  if (::chown(path.c_str(), uid, gid) != 0) {
    Die("Failed to change owner for " + path.string() + ": " + std::strerror(errno));
  }
}

void CloseInheritedFds() {
  std::vector<int> fds;
  for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
    int fd = std::atoi(e.path().filename().c_str());
    if (fd > 2) fds.push_back(fd);
  }
  for (int fd : fds) ::close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t start_us = NowUs(CLOCK_REALTIME);
  const uint64_t start_cpu_us = NowUs(CLOCK_PROCESS_CPUTIME_ID);
  std::string id, exec_file, uid_s, gid_s, base = "/srv/jailer", netns, cgroup_version = "1",
                                           parent_cgroup;
  std::vector<std::string> cgroups, limits, extra;
  bool daemonize = false, new_pid_ns = false, have[4] = {};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") {
      for (int j = i + 1; j < argc; ++j) extra.emplace_back(argv[j]);
      break;
    }
    if (a == "--version") {
      std::printf("Jailer v1.16.1\n\n");
      return 0;
    }
    if (a == "--daemonize") {
      daemonize = true;
      continue;
    }
    if (a == "--new-pid-ns") {
      new_pid_ns = true;
      continue;
    }
    std::string name = a, value;
    if (auto eq = a.find('='); a.starts_with("--") && eq != std::string::npos) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      Die("Arguments parsing error: The argument '" + a + "' requires a value.");
    }
    if (name == "--id")
      id = value, have[0] = true;
    else if (name == "--exec-file")
      exec_file = value, have[1] = true;
    else if (name == "--uid")
      uid_s = value, have[2] = true;
    else if (name == "--gid")
      gid_s = value, have[3] = true;
    else if (name == "--chroot-base-dir")
      base = value;
    else if (name == "--netns")
      netns = value;
    else if (name == "--cgroup")
      cgroups.push_back(value);
    else if (name == "--cgroup-version")
      cgroup_version = value;
    else if (name == "--parent-cgroup")
      parent_cgroup = value;
    else if (name == "--resource-limit")
      limits.push_back(value);
    else
      Die("Arguments parsing error: Found argument '" + a + "' which wasn't expected.");
  }
  const char* names[] = {"id", "exec-file", "uid", "gid"};
  for (int k = 0; k < 4; ++k) {
    if (!have[k])
      Die(std::string("Arguments parsing error: Missing mandatory argument: ") + names[k]);
  }
  if (!ValidId(id)) Die("Invalid instance ID: " + id);
  unsigned uid = 0, gid = 0;
  if (!ParseU32(uid_s, uid)) Die("Invalid uid: " + uid_s);
  if (!ParseU32(gid_s, gid)) Die("Invalid gid: " + gid_s);
  std::error_code ec;
  fs::path exec = fs::canonical(exec_file, ec);
  if (ec || !fs::is_regular_file(exec)) Die("Failed to canonicalize path " + exec_file);
  const std::string exec_name = exec.filename().string();
  if (exec_name.find("firecracker") == std::string::npos) {
    Die("Invalid filename. The filename of `--exec-file` option must contain \"firecracker\": " +
        exec_name);
  }
  if (cgroup_version != "1" && cgroup_version != "2") {
    Die("Cgroups version not supported: " + cgroup_version);
  }
  for (const auto& cg : cgroups) {
    auto eq = cg.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == cg.size() ||
        cg.substr(0, eq).find('.') == std::string::npos) {
      Die("Invalid format for cgroups: " + cg);
    }
  }
  rlim_t no_file = 2048, fsize = RLIM_INFINITY;
  for (const auto& l : limits) {
    auto eq = l.find('=');
    unsigned v = 0;
    if (eq == std::string::npos || !ParseU32(l.substr(eq + 1), v)) {
      Die("Invalid format for resource limits: " + l);
    }
    std::string res = l.substr(0, eq);
    if (res == "no-file")
      no_file = v;
    else if (res == "fsize")
      fsize = v;
    else
      Die("Invalid resource argument: " + res);
  }

  const fs::path root = fs::path(base) / exec_name / id / "root";
  fs::create_directories(root, ec);
  if (ec) Die("Failed to create directory " + root.string() + ": " + ec.message());
  const fs::path jailed_exec = root / exec_name;
  {
    struct stat st {};
    ::stat(exec.c_str(), &st);
    int src = ::open(exec.c_str(), O_RDONLY | O_CLOEXEC);
    int dst = ::open(jailed_exec.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
                     st.st_mode & 07777);
    if (src < 0 || dst < 0)
      Die("Failed to copy " + exec.string() + " into the jail: " + std::strerror(errno));
    char buf[1 << 16];
    ssize_t n;
    while ((n = ::read(src, buf, sizeof(buf))) > 0) {
      if (::write(dst, buf, static_cast<size_t>(n)) != n) Die("Failed to copy the exec file");
    }
    if (::fchown(dst, uid, gid) != 0 || ::fchmod(dst, st.st_mode & 07777) != 0) {
      Die("Failed to change owner for " + jailed_exec.string() + ": " + std::strerror(errno));
    }
    ::close(src);
    ::close(dst);
  }
  if (!netns.empty()) {
    int fd = ::open(netns.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) Die("Failed to open " + netns + ": " + std::strerror(errno));
    if (::setns(fd, CLONE_NEWNET) != 0)
      Die(std::string("Failed to join netns: ") + std::strerror(errno));
    ::close(fd);
  }
  rlimit rl{no_file, no_file};
  if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) Die("Failed to set the no-file resource limit");
  if (fsize != RLIM_INFINITY) {
    rlimit fl{fsize, fsize};
    if (::setrlimit(RLIMIT_FSIZE, &fl) != 0) Die("Failed to set the fsize resource limit");
  }
  CloseInheritedFds();
  MakeOwnedDir(root / "dev" / "net", uid, gid);
  MakeOwnedDir(root / "run", uid, gid);
  if (::geteuid() == 0) {
    Mknod(root / "dev" / "net" / "tun", 10, 200, uid, gid);
    if (fs::exists("/dev/kvm")) Mknod(root / "dev" / "kvm", 10, 232, uid, gid);
  }
  if (daemonize) {
    if (::setsid() < 0) Die(std::string("Failed to daemonize: setsid: ") + std::strerror(errno));
    int null = ::open("/dev/null", O_RDWR);
    if (null < 0) Die("Failed to open /dev/null");
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(null, 2);
    if (null > 2) ::close(null);
  }
  // The journal is a test hook on the host: make sure the dropped uid can append to it.
  if (const char* journal = std::getenv("FC_DOUBLE_JOURNAL"); journal != nullptr && *journal) {
    int fd = ::open(journal, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    if (fd >= 0) {
      if (::fchown(fd, uid, gid) != 0) (void)::fchmod(fd, 0666);
      ::close(fd);
    }
  }
  const fs::path pid_file = root / (exec_name + ".pid");
  auto write_pid = [&](pid_t pid) {
    int fd = ::open(pid_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) Die("Failed to open " + pid_file.string() + ": " + std::strerror(errno));
    std::string text = std::to_string(pid);
    if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
      Die("Failed to write the pid file");
    }
    ::close(fd);
  };
  if (new_pid_ns) {
    if (::geteuid() == 0 && ::unshare(CLONE_NEWPID) != 0) {
      Die(std::string("Failed to create a new PID namespace: ") + std::strerror(errno));
    }
    pid_t child = ::fork();
    if (child < 0) Die("Failed to fork");
    if (child > 0) {
      write_pid(child);
      std::_Exit(0);
    }
  } else {
    write_pid(::getpid());
  }

  // The environment is cleared; the double's hooks survive, and FC_DOUBLE_ROOT stands in for the
  // chroot.
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "FC_DOUBLE_", 10) == 0 && std::strncmp(*e, "FC_DOUBLE_ROOT=", 15) != 0) {
      env.emplace_back(*e);
    }
  }
  env.push_back("FC_DOUBLE_ROOT=" + root.string());
  if (::chdir(root.c_str()) != 0) Die("Failed to chdir into the jail");
  if (::getuid() == 0 && ::setgroups(0, nullptr) != 0) Die("Failed to drop supplementary groups");
  if (::setgid(gid) != 0) Die(std::string("Failed to setgid: ") + std::strerror(errno));
  if (::setuid(uid) != 0) Die(std::string("Failed to setuid: ") + std::strerror(errno));

  const uint64_t cpu_us = NowUs(CLOCK_PROCESS_CPUTIME_ID);
  std::vector<std::string> args = {jailed_exec.string(),
                                   "--id",
                                   id,
                                   "--start-time-us",
                                   std::to_string(start_us),
                                   "--start-time-cpu-us",
                                   std::to_string(cpu_us),
                                   "--parent-cpu-time-us",
                                   std::to_string(cpu_us - start_cpu_us)};
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<char*> cargv, cenv;
  for (auto& a : args) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  for (auto& e : env) cenv.push_back(e.data());
  cenv.push_back(nullptr);
  ::execve(jailed_exec.c_str(), cargv.data(), cenv.data());
  Die("Failed to exec into Firecracker: " + std::string(std::strerror(errno)));
}

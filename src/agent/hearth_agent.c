// hearth's guest agent in the default image: answers the host's requests on the virtio-serial port
// org.hearth.agent, one line each.
//   settime SECONDS[.FRACTION]  sets the wall clock to SECONDS since the epoch (FRACTION: up to
//                     9 decimal digits); "ok SECONDS[.FRACTION]" or "error SECONDS[.FRACTION]"
//   ping              "pong"
//   anything else     "error unknown request"
// The host sends `settime` right after a resume, when the guest should be answering its first
// packet. A shell agent forks `date` for it, which costs a TCG guest tens of milliseconds; this
// program makes two system calls.
//
// It is freestanding (no libc: the image has none) and x86-64 only, like the image's kernel.
//   hearth-agent /dev/vportNpM
// When the host end is not there (read returns 0 or fails) it reopens the port 200 ms later.

typedef long i64;

enum {
  kSysRead = 0,
  kSysWrite = 1,
  kSysOpen = 2,
  kSysClose = 3,
  kSysNanosleep = 35,
  kSysClockSettime = 227,
};
enum { kOpenReadWrite = 02, kOpenNoCtty = 0400, kOpenCloexec = 02000000 };
enum { kEintr = 4, kClockRealtime = 0 };

struct KernelTimespec {
  i64 sec;
  i64 nsec;
};

static i64 Syscall(i64 number, i64 a, i64 b, i64 c) {
  i64 result;
  __asm__ volatile("syscall"
                   : "=a"(result)
                   : "a"(number), "D"(a), "S"(b), "d"(c)
                   : "rcx", "r11", "memory");
  return result;
}

static void Sleep(i64 ms) {
  struct KernelTimespec t = {ms / 1000, (ms % 1000) * 1000000};
  Syscall(kSysNanosleep, (i64)&t, 0, 0);
}

static void WriteAll(i64 fd, const char* s, i64 n) {
  while (n > 0) {
    i64 w = Syscall(kSysWrite, fd, (i64)s, n);
    if (w == -kEintr) continue;
    if (w <= 0) return;
    s += w;
    n -= w;
  }
}

static i64 Length(const char* s) {
  i64 n = 0;
  while (s[n]) ++n;
  return n;
}

// True when line[0, n) begins with `prefix`.
static int HasPrefix(const char* line, i64 n, const char* prefix) {
  i64 k = Length(prefix);
  if (n < k) return 0;
  for (i64 i = 0; i < k; ++i) {
    if (line[i] != prefix[i]) return 0;
  }
  return 1;
}

// Sets the wall clock to the decimal seconds in arg[0, n) ("1764756000" or "1764756000.25");
// false for anything else.
static int SetTime(const char* arg, i64 n) {
  i64 seconds = 0, nanos = 0, digits = 0, fraction = -1;  // fraction: digits after the point
  for (i64 i = 0; i < n; ++i) {
    if (arg[i] == '.' && fraction < 0 && digits > 0) {
      fraction = 0;
      continue;
    }
    if (arg[i] < '0' || arg[i] > '9') return 0;
    if (fraction < 0) {
      if (++digits > 18) return 0;
      seconds = seconds * 10 + (arg[i] - '0');
    } else {
      if (++fraction > 9) return 0;
      nanos = nanos * 10 + (arg[i] - '0');
    }
  }
  if (digits == 0 || fraction == 0) return 0;
  for (i64 f = fraction; f >= 0 && f < 9; ++f) nanos *= 10;
  struct KernelTimespec t = {seconds, nanos};
  return Syscall(kSysClockSettime, kClockRealtime, (i64)&t, 0) == 0;
}

// Answers one request, line[0, n) without its newline.
static void Answer(i64 fd, const char* line, i64 n) {
  if (n == 4 && HasPrefix(line, n, "ping")) {
    WriteAll(fd, "pong\n", 5);
    return;
  }
  if (HasPrefix(line, n, "settime ")) {
    const char* arg = line + 8;
    i64 k = n - 8;
    char reply[64];
    const char* head = SetTime(arg, k) ? "ok " : "error ";
    i64 len = 0;
    for (const char* p = head; *p; ++p) reply[len++] = *p;
    for (i64 i = 0; i < k && len < (i64)sizeof(reply) - 1; ++i) reply[len++] = arg[i];
    reply[len++] = '\n';
    WriteAll(fd, reply, len);
    return;
  }
  static const char kUnknown[] = "error unknown request\n";
  WriteAll(fd, kUnknown, sizeof(kUnknown) - 1);
}

// Serves the port until its host end goes away.
static void Serve(i64 fd) {
  char buffer[256];
  i64 have = 0;
  int discarding = 0;  // inside a line longer than any request, up to its newline
  for (;;) {
    i64 n = Syscall(kSysRead, fd, (i64)(buffer + have), (i64)sizeof(buffer) - have);
    if (n == -kEintr) continue;
    if (n <= 0) return;
    have += n;
    i64 start = 0;
    for (i64 i = 0; i < have; ++i) {
      if (buffer[i] != '\n') continue;
      if (discarding) {
        discarding = 0;
      } else {
        Answer(fd, buffer + start, i - start);
      }
      start = i + 1;
    }
    for (i64 i = start; i < have; ++i) buffer[i - start] = buffer[i];
    have -= start;
    if (have == (i64)sizeof(buffer)) {  // too long for a request: refused once, then skipped
      if (!discarding) Answer(fd, "", 0);
      discarding = 1;
      have = 0;
    }
  }
}

int AgentMain(i64 argc, char** argv) {
  if (argc != 2) {
    static const char kUsage[] = "usage: hearth-agent PORT\n";
    WriteAll(2, kUsage, sizeof(kUsage) - 1);
    return 2;
  }
  for (;;) {
    i64 fd = Syscall(kSysOpen, (i64)argv[1], kOpenReadWrite | kOpenNoCtty | kOpenCloexec, 0);
    if (fd >= 0) {
      Serve(fd);
      Syscall(kSysClose, fd, 0, 0);
    }
    Sleep(200);
  }
}

// The process entry: argc and argv from the initial stack, AgentMain's result to exit(2).
__asm__(
    ".text\n"
    ".global _start\n"
    "_start:\n"
    "  xor %ebp, %ebp\n"
    "  mov (%rsp), %rdi\n"
    "  lea 8(%rsp), %rsi\n"
    "  and $-16, %rsp\n"
    "  call AgentMain\n"
    "  mov %eax, %edi\n"
    "  mov $60, %eax\n"
    "  syscall\n");

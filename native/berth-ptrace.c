/*
 * berth-ptrace: the small native helper behind `berth patch lib`. Node decides what to do (which
 * library, which addresses, which bytes); this program only does what Node cannot: stop every thread
 * of a process with ptrace, make one thread call a function (dlopen) and return, check that no thread
 * is executing or about to return into bytes that will change, read and write the process's memory,
 * and let it run again. It speaks a line protocol on stdin/stdout so one helper serves many processes.
 *
 *   attach PID                    -> ok THREADS          every thread stopped (PTRACE_SEIZE+INTERRUPT)
 *   check DEPTH N LO HI ...        -> ok | busy TID ADDR  no rip, and no stack word among DEPTH, in [LO,HI);
 *                                                         a thread whose rip is inside is single-stepped out
 *   swap PID DEPTH N LO HI ... M ADDR OLD NEW ...         attach, check, verify OLD, write NEW, detach: the
 *                                 -> ok PAUSE_NS | busy | mismatch ADDR   whole critical section at once
 *   call FUNC ARG1 HEXSTRING      -> ok RESULT           FUNC(string, ARG1) on the main thread
 *   read ADDR LEN                 -> ok HEX
 *   write ADDR HEX                -> ok
 *   kill                          -> ok                  SIGKILL the target (fault injection in tests)
 *   detach                        -> ok PAUSE_NS         every thread resumed; time it was stopped
 *   quit
 * Errors answer "err MESSAGE" and leave the target as it was (detached if attach failed).
 * x86-64 Linux only. Built statically during npm install (scripts/build-native.sh).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 4096
#define MAX_RANGES 8192

static pid_t target = 0;
static pid_t tids[MAX_THREADS];
static int ntids = 0;
static int memfd = -1;
static struct timespec stopped_at;

static void reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void reply(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
  fflush(stdout);
}

static int attached(pid_t t) {
  for (int i = 0; i < ntids; i++)
    if (tids[i] == t) return 1;
  return 0;
}

static void detach_all(void) {
  for (int i = 0; i < ntids; i++) ptrace(PTRACE_DETACH, tids[i], 0, 0);
  ntids = 0;
  if (memfd >= 0) close(memfd);
  memfd = -1;
  target = 0;
}

/* Waits for a seized, interrupted thread to report its stop. */
static int wait_stop(pid_t t) {
  int status;
  for (;;) {
    pid_t r = waitpid(t, &status, __WALL);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (WIFEXITED(status) || WIFSIGNALED(status)) return -1;
    if (WIFSTOPPED(status)) return 0;
  }
}

/* Seizes and stops every thread; loops until no new thread appears (threads may be spawning). */
static int do_attach(pid_t pid) {
  target = pid;
  ntids = 0;
  clock_gettime(CLOCK_MONOTONIC, &stopped_at);
  int added;
  do {
    added = 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *d = opendir(path);
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
      pid_t t = (pid_t)atoi(e->d_name);
      if (t <= 0 || attached(t)) continue;
      if (ntids >= MAX_THREADS) {
        closedir(d);
        errno = E2BIG;
        return -1;
      }
      if (ptrace(PTRACE_SEIZE, t, 0, 0) < 0) {
        if (errno == ESRCH) continue; /* the thread just exited */
        closedir(d);
        return -1;
      }
      if (ptrace(PTRACE_INTERRUPT, t, 0, 0) < 0 || wait_stop(t) < 0) {
        ptrace(PTRACE_DETACH, t, 0, 0);
        continue;
      }
      tids[ntids++] = t;
      added = 1;
    }
    closedir(d);
  } while (added);
  if (ntids == 0) {
    errno = ESRCH;
    return -1;
  }
  char mem[64];
  snprintf(mem, sizeof mem, "/proc/%d/mem", pid);
  memfd = open(mem, O_RDWR);
  return memfd < 0 ? -1 : 0;
}

static int mem_read(uint64_t addr, void *buf, size_t len) {
  return pread(memfd, buf, len, (off_t)addr) == (ssize_t)len ? 0 : -1;
}

static int mem_write(uint64_t addr, const void *buf, size_t len) {
  return pwrite(memfd, buf, len, (off_t)addr) == (ssize_t)len ? 0 : -1;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static ssize_t unhex(const char *s, unsigned char *out, size_t cap) {
  size_t n = strlen(s);
  if (n % 2 || n / 2 > cap) return -1;
  for (size_t i = 0; i < n / 2; i++) {
    int a = hexval(s[2 * i]), b = hexval(s[2 * i + 1]);
    if (a < 0 || b < 0) return -1;
    out[i] = (unsigned char)(a << 4 | b);
  }
  return (ssize_t)(n / 2);
}

static uint64_t ranges[MAX_RANGES][2];

static int in_ranges(uint64_t v, int n) {
  for (int k = 0; k < n; k++)
    if (v >= ranges[k][0] && v < ranges[k][1]) return 1;
  return 0;
}

/* 0 when no thread is (or is about to return) inside the ranges; else 1 with a "busy TID ADDR" message. */
static int check_threads(int n, long depth, char *msg, size_t msglen) {
  uint64_t *stack = malloc((size_t)depth * 8 + 8);
  for (int i = 0; i < ntids; i++) {
    struct user_regs_struct r;
    if (ptrace(PTRACE_GETREGS, tids[i], 0, &r) < 0) {
      snprintf(msg, msglen, "err getregs %d: %s", tids[i], strerror(errno));
      free(stack);
      return 1;
    }
    /* A thread executing the bytes to change is single-stepped out of them (a few instructions). */
    for (int step = 0; in_ranges(r.rip, n); step++) {
      int status;
      if (step >= 256 || ptrace(PTRACE_SINGLESTEP, tids[i], 0, 0) < 0 || waitpid(tids[i], &status, __WALL) < 0 ||
          !WIFSTOPPED(status) || ptrace(PTRACE_GETREGS, tids[i], 0, &r) < 0) {
        snprintf(msg, msglen, "busy %d 0x%llx", tids[i], (unsigned long long)r.rip);
        free(stack);
        return 1;
      }
    }
    /* Return addresses near the top of the stack: a thread that will return into changed bytes. */
    long words = depth;
    while (words > 0 && mem_read(r.rsp, stack, (size_t)words * 8) < 0) words /= 2;
    for (long w = 0; w < words; w++)
      if (in_ranges(stack[w], n)) {
        snprintf(msg, msglen, "busy %d 0x%llx", tids[i], (unsigned long long)stack[w]);
        free(stack);
        return 1;
      }
  }
  free(stack);
  return 0;
}

static int parse_ranges(char **save, int *n) {
  char *tok = strtok_r(NULL, " ", save);
  long count = tok ? strtol(tok, NULL, 10) : -1;
  if (count < 0 || count > MAX_RANGES) return -1;
  for (int k = 0; k < count; k++) {
    char *lo = strtok_r(NULL, " ", save), *hi = strtok_r(NULL, " ", save);
    if (!lo || !hi) return -1;
    ranges[k][0] = strtoull(lo, NULL, 16);
    ranges[k][1] = strtoull(hi, NULL, 16);
  }
  *n = (int)count;
  return 0;
}

static void do_check(char *args) {
  char *save = NULL;
  char *tok = strtok_r(args, " ", &save);
  long depth = tok ? strtol(tok, NULL, 10) : -1;
  int n = 0;
  if (depth < 0 || depth > 65536 || parse_ranges(&save, &n) < 0) return reply("err check DEPTH N LO HI...");
  char msg[160];
  if (check_threads(n, depth, msg, sizeof msg)) return reply("%s", msg);
  reply("ok");
}

/*
 * The whole critical section in one request: stop every thread, make sure none is in the ranges, check
 * that every ADDR still holds OLD, write NEW everywhere, resume. Nothing is written unless all checks pass.
 *   swap PID DEPTH N LO HI ... M ADDR OLDHEX NEWHEX ...  -> ok PAUSE_NS | busy ... | mismatch ADDR | err ...
 */
static void do_swap(char *args) {
  char *save = NULL;
  char *tok = strtok_r(args, " ", &save);
  pid_t pid = tok ? (pid_t)atoi(tok) : 0;
  tok = strtok_r(NULL, " ", &save);
  long depth = tok ? strtol(tok, NULL, 10) : -1;
  int n = 0;
  if (pid <= 0 || depth < 0 || depth > 65536 || parse_ranges(&save, &n) < 0) return reply("err swap PID DEPTH N ranges M writes");
  tok = strtok_r(NULL, " ", &save);
  long m = tok ? strtol(tok, NULL, 10) : -1;
  if (m < 0 || m > MAX_RANGES) return reply("err bad write count");
  static uint64_t addrs[MAX_RANGES];
  static char *olds[MAX_RANGES], *news[MAX_RANGES];
  for (long i = 0; i < m; i++) {
    char *a = strtok_r(NULL, " ", &save), *o = strtok_r(NULL, " ", &save), *w = strtok_r(NULL, " ", &save);
    if (!a || !o || !w || strlen(o) != strlen(w) || strlen(o) > 64) return reply("err bad write %ld", i);
    addrs[i] = strtoull(a, NULL, 16);
    olds[i] = o;
    news[i] = w;
  }
  if (target) detach_all();
  if (do_attach(pid) < 0) {
    int e = errno;
    detach_all();
    return reply("err attach %d: %s", pid, strerror(e));
  }
  char msg[160];
  if (check_threads(n, depth, msg, sizeof msg)) {
    detach_all();
    return reply("%s", msg);
  }
  for (long i = 0; i < m; i++) {
    unsigned char want[32], now[32];
    ssize_t len = unhex(olds[i], want, sizeof want);
    if (len <= 0 || mem_read(addrs[i], now, (size_t)len) < 0 || memcmp(want, now, (size_t)len)) {
      detach_all();
      return reply("mismatch 0x%llx", (unsigned long long)addrs[i]);
    }
  }
  for (long i = 0; i < m; i++) {
    unsigned char buf[32];
    ssize_t len = unhex(news[i], buf, sizeof buf);
    if (mem_write(addrs[i], buf, (size_t)len) < 0) {
      /* Put back what was already written, then give up. */
      for (long k = 0; k < i; k++) {
        ssize_t l = unhex(olds[k], buf, sizeof buf);
        mem_write(addrs[k], buf, (size_t)l);
      }
      int e = errno;
      detach_all();
      return reply("err write 0x%llx: %s", (unsigned long long)addrs[i], strerror(e));
    }
  }
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  long long ns = (now.tv_sec - stopped_at.tv_sec) * 1000000000LL + (now.tv_nsec - stopped_at.tv_nsec);
  detach_all();
  reply("ok %lld", ns);
}

/* Runs FUNC(string, arg1) on the main thread and restores its registers exactly afterwards. */
static void do_call(char *args) {
  unsigned long long func, arg1;
  char hex[8192];
  if (sscanf(args, "%llx %llx %8191s", &func, &arg1, hex) != 3) return reply("err call FUNC ARG1 HEXSTRING");
  unsigned char str[4096];
  ssize_t len = unhex(hex, str, sizeof str - 1);
  if (len < 0) return reply("err bad hex string");
  str[len] = 0;
  pid_t t = tids[0];
  for (int i = 0; i < ntids; i++)
    if (tids[i] == target) t = target;
  struct user_regs_struct saved, r;
  if (ptrace(PTRACE_GETREGS, t, 0, &saved) < 0) return reply("err getregs: %s", strerror(errno));
  r = saved;
  /* Below the red zone, 16-byte aligned; the string, then a return address of 0 to trap the return. */
  uint64_t sp = (saved.rsp - 512) & ~0xfULL;
  sp -= ((uint64_t)len + 1 + 15) & ~0xfULL;
  uint64_t straddr = sp;
  if (mem_write(straddr, str, (size_t)len + 1) < 0) return reply("err write string: %s", strerror(errno));
  sp -= 8;
  uint64_t zero = 0;
  if (mem_write(sp, &zero, 8) < 0) return reply("err write return address: %s", strerror(errno));
  r.rsp = sp;
  r.rip = func;
  r.rdi = straddr;
  r.rsi = arg1;
  r.rax = 0;
  r.orig_rax = (unsigned long long)-1; /* not in a syscall: no restart on resume */
  if (ptrace(PTRACE_SETREGS, t, 0, &r) < 0) return reply("err setregs: %s", strerror(errno));
  int status;
  for (;;) {
    if (ptrace(PTRACE_CONT, t, 0, 0) < 0) return reply("err cont: %s", strerror(errno));
    if (waitpid(t, &status, __WALL) < 0) return reply("err wait: %s", strerror(errno));
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      ntids = 0;
      return reply("err process exited during the call");
    }
    if (WIFSTOPPED(status) && WSTOPSIG(status) == SIGSEGV) break;
    /* Another stop (a signal arriving): keep going; the signal is left pending for later. */
  }
  if (ptrace(PTRACE_GETREGS, t, 0, &r) < 0) return reply("err getregs: %s", strerror(errno));
  unsigned long long result = r.rax;
  int clean = r.rip == 0;
  /* Restoring the saved registers also restores a pending syscall restart (orig_rax, rax). */
  if (ptrace(PTRACE_SETREGS, t, 0, &saved) < 0) return reply("err restore regs: %s", strerror(errno));
  if (!clean) return reply("err the call faulted at 0x%llx", (unsigned long long)r.rip);
  reply("ok 0x%llx", result);
}

static void do_read(char *args) {
  unsigned long long addr;
  unsigned long len;
  if (sscanf(args, "%llx %lu", &addr, &len) != 2 || len > 65536) return reply("err read ADDR LEN");
  unsigned char *buf = malloc(len ? len : 1);
  if (mem_read(addr, buf, len) < 0) {
    free(buf);
    return reply("err read 0x%llx: %s", addr, strerror(errno));
  }
  char *out = malloc(len * 2 + 1);
  for (unsigned long i = 0; i < len; i++) sprintf(out + 2 * i, "%02x", buf[i]);
  out[len * 2] = 0;
  reply("ok %s", out);
  free(buf);
  free(out);
}

static void do_write(char *args) {
  unsigned long long addr;
  static char hex[131072];
  if (sscanf(args, "%llx %131071s", &addr, hex) != 2) return reply("err write ADDR HEX");
  static unsigned char buf[65536];
  ssize_t len = unhex(hex, buf, sizeof buf);
  if (len <= 0) return reply("err bad hex");
  if (mem_write(addr, buf, (size_t)len) < 0) return reply("err write 0x%llx: %s", addr, strerror(errno));
  reply("ok");
}

int main(void) {
  static char line[262144];
  signal(SIGPIPE, SIG_IGN);
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\n")] = 0;
    char *sp = strchr(line, ' ');
    char *args = sp ? sp + 1 : line + strlen(line);
    if (sp) *sp = 0;
    if (!strcmp(line, "attach")) {
      if (target) detach_all();
      pid_t pid = (pid_t)atoi(args);
      if (pid <= 0) {
        reply("err attach PID");
        continue;
      }
      if (do_attach(pid) < 0) {
        int e = errno;
        detach_all();
        reply("err attach %d: %s", pid, strerror(e));
      } else
        reply("ok %d", ntids);
    } else if (!strcmp(line, "swap")) {
      do_swap(args);
    } else if (!target && strcmp(line, "quit")) {
      reply("err not attached");
    } else if (!strcmp(line, "check")) {
      do_check(args);
    } else if (!strcmp(line, "call")) {
      do_call(args);
    } else if (!strcmp(line, "read")) {
      do_read(args);
    } else if (!strcmp(line, "write")) {
      do_write(args);

    } else if (!strcmp(line, "kill")) {
      kill(target, SIGKILL);
      reply("ok");
    } else if (!strcmp(line, "detach")) {
      struct timespec now;
      clock_gettime(CLOCK_MONOTONIC, &now);
      long long ns = (now.tv_sec - stopped_at.tv_sec) * 1000000000LL + (now.tv_nsec - stopped_at.tv_nsec);
      detach_all();
      reply("ok %lld", ns);
    } else if (!strcmp(line, "quit")) {
      break;
    } else {
      reply("err unknown command %s", line);
    }
  }
  if (target) detach_all();
  return 0;
}

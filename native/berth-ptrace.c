/*
 * berth-ptrace: the small native helper behind `berth patch lib`. Node decides what to do (which
 * library, which addresses, which bytes); this program only does what Node cannot: stop every thread
 * of a process with ptrace, make one thread call a function (dlopen) and return, check that no thread
 * is executing or about to return into bytes that will change, read and write the process's memory,
 * and let it run again. It speaks a line protocol on stdin/stdout so one helper serves many processes.
 *
 *   attach PID                    -> ok THREADS          every thread stopped (PTRACE_SEIZE+INTERRUPT)
 *   check DEPTH LO HI [LO HI ...]  -> ok | busy TID ADDR  no rip, and no stack word among DEPTH, in [LO,HI);
 *                                                         a thread whose rip is inside is single-stepped out
 *   call FUNC ARG1 HEXSTRING      -> ok RESULT           FUNC(string, ARG1) on the main thread
 *   read ADDR LEN                 -> ok HEX
 *   write ADDR HEX                -> ok
 *   readv ADDR LEN [ADDR LEN ...]  -> ok HEX [HEX ...]    several reads in one round trip
 *   writev ADDR HEX [ADDR HEX ...] -> ok                  several writes in one round trip, in order
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

static void do_check(char *args) {
  char *save = NULL;
  char *tok = strtok_r(args, " ", &save);
  if (!tok) return reply("err check needs DEPTH");
  long depth = strtol(tok, NULL, 10);
  if (depth < 0 || depth > 65536) return reply("err bad depth");
  int n = 0;
  while ((tok = strtok_r(NULL, " ", &save)) && n < MAX_RANGES) {
    char *hi = strtok_r(NULL, " ", &save);
    if (!hi) return reply("err odd range list");
    ranges[n][0] = strtoull(tok, NULL, 0);
    ranges[n][1] = strtoull(hi, NULL, 0);
    n++;
  }
  uint64_t *stack = malloc((size_t)depth * 8 + 8);
  for (int i = 0; i < ntids; i++) {
    struct user_regs_struct r;
    if (ptrace(PTRACE_GETREGS, tids[i], 0, &r) < 0) {
      free(stack);
      return reply("err getregs %d: %s", tids[i], strerror(errno));
    }
    /* A thread executing the bytes to change is single-stepped out of them (a few instructions). */
    for (int step = 0; in_ranges(r.rip, n); step++) {
      int status;
      if (step >= 256 || ptrace(PTRACE_SINGLESTEP, tids[i], 0, 0) < 0 || waitpid(tids[i], &status, __WALL) < 0 ||
          !WIFSTOPPED(status) || ptrace(PTRACE_GETREGS, tids[i], 0, &r) < 0) {
        free(stack);
        return reply("busy %d 0x%llx", tids[i], (unsigned long long)r.rip);
      }
    }
    /* Return addresses near the top of the stack: a thread that will return into changed bytes. */
    long words = depth;
    while (words > 0 && mem_read(r.rsp, stack, (size_t)words * 8) < 0) words /= 2;
    for (long w = 0; w < words; w++)
      for (int k = 0; k < n; k++)
        if (stack[w] >= ranges[k][0] && stack[w] < ranges[k][1]) {
          free(stack);
          return reply("busy %d 0x%llx", tids[i], (unsigned long long)stack[w]);
        }
  }
  free(stack);
  reply("ok");
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

static void do_readv(char *args) {
  static char out[262144];
  size_t used = 0;
  char *save = NULL;
  for (char *a = strtok_r(args, " ", &save); a; a = strtok_r(NULL, " ", &save)) {
    char *l = strtok_r(NULL, " ", &save);
    if (!l) return reply("err readv ADDR LEN pairs");
    unsigned long long addr = strtoull(a, NULL, 16);
    unsigned long len = strtoul(l, NULL, 10);
    unsigned char buf[4096];
    if (len > sizeof buf || used + len * 2 + 2 > sizeof out) return reply("err readv too long");
    if (mem_read(addr, buf, len) < 0) return reply("err read 0x%llx: %s", addr, strerror(errno));
    if (used) out[used++] = ' ';
    for (unsigned long i = 0; i < len; i++) used += (size_t)sprintf(out + used, "%02x", buf[i]);
  }
  out[used] = 0;
  reply("ok %s", out);
}

static void do_writev(char *args) {
  char *save = NULL;
  for (char *a = strtok_r(args, " ", &save); a; a = strtok_r(NULL, " ", &save)) {
    char *h = strtok_r(NULL, " ", &save);
    if (!h) return reply("err writev ADDR HEX pairs");
    unsigned long long addr = strtoull(a, NULL, 16);
    unsigned char buf[4096];
    ssize_t len = unhex(h, buf, sizeof buf);
    if (len <= 0) return reply("err bad hex");
    if (mem_write(addr, buf, (size_t)len) < 0) return reply("err write 0x%llx: %s", addr, strerror(errno));
  }
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
    } else if (!strcmp(line, "readv")) {
      do_readv(args);
    } else if (!strcmp(line, "writev")) {
      do_writev(args);
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

/*
 * berth-ptrace: the small native helper behind `berth patch lib`. Node decides what to do (which
 * addresses, which bytes, whether a thread's stack allows it); this program only does what Node cannot:
 * stop every thread of a process with ptrace, report their registers, single-step one, run a system call
 * inside the process (mmap, open, munmap), write memory only where it still holds the expected bytes,
 * and let the process run again. It speaks a line protocol on stdin/stdout so one helper serves many
 * processes, one at a time.
 *
 *   stop PID                      -> ok N TID R0..R16;...   every thread stopped; DWARF register order
 *                                                            (rax rdx rcx rbx rsi rdi rbp rsp r8..r15 rip)
 *   step TID MAX N LO HI ...      -> ok R0..R16 | busy ADDR  single-step TID until rip leaves [LO,HI)
 *   writes M ADDR OLD NEW ...     -> ok | mismatch ADDR      check every OLD, then write every NEW
 *   commit M ADDR OLD NEW ...     -> ok PAUSE_NS | mismatch  the same writes, then resume at once
 *   syscall NR A1..A6 INSN        -> ok RESULT               run syscall NR on the first thread, through
 *                                                            the `syscall` instruction at INSN
 *   mapimage INSN BASE SIZE PATHAT PATH N ADDR LEN PROT OFF ...   -> ok   map a patch image (reserve, open,
 *                                                            map each segment of the file, close)
 *   call FUNC                     -> ok RESULT               FUNC() on the first thread (an IFUNC resolver)
 *   read ADDR LEN                 -> ok HEX
 *   write ADDR HEX                -> ok
 *   kill                          -> ok                      SIGKILL the target (fault injection in tests)
 *   resume | detach               -> ok PAUSE_NS             every thread resumed; how long they were stopped
 *   quit
 * Errors answer "err MESSAGE" and leave the target as it was (detached if the stop failed).
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
#include <sys/resource.h>
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

/* A signal that arrived while a thread was stopped for us, delivered again when it resumes. */
static int pending[MAX_THREADS];

static int attached(pid_t t) {
  for (int i = 0; i < ntids; i++)
    if (tids[i] == t) return 1;
  return 0;
}

static void detach_all(void) {
  for (int i = 0; i < ntids; i++) ptrace(PTRACE_DETACH, tids[i], 0, (void *)(long)pending[i]);
  ntids = 0;
  if (memfd >= 0) close(memfd);
  memfd = -1;
  target = 0;
}

/*
 * Waits for a seized thread to report a stop. A signal-delivery stop (a signal arrived first) is
 * remembered in *sig so that the signal is delivered when the thread resumes, not lost.
 */
static int wait_stop_sig(pid_t t, int *sig) {
  int status;
  for (;;) {
    pid_t r = waitpid(t, &status, __WALL);
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (WIFEXITED(status) || WIFSIGNALED(status)) return -1;
    if (!WIFSTOPPED(status)) continue;
    if (status >> 16 == 0 && WSTOPSIG(status) != SIGTRAP && sig) *sig = WSTOPSIG(status);
    return 0;
  }
}

static int wait_stop(pid_t t) {
  int i;
  for (i = 0; i < ntids && tids[i] != t; i++) {
  }
  return wait_stop_sig(t, i < ntids ? &pending[i] : NULL);
}

/*
 * Seizes and stops every thread; loops until no new thread appears (threads may be spawning). All
 * threads of one pass are seized and interrupted before any is waited for, so the threads that are
 * running on other CPUs stop together instead of one after another (issue 9: with three threads
 * spinning in the library, waiting for each in turn made the stop take up to 8 ms on two cores).
 */
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
    int first = ntids;
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
      pending[ntids] = 0;
      tids[ntids++] = t;
    }
    closedir(d);
    for (int i = first; i < ntids; i++) ptrace(PTRACE_INTERRUPT, tids[i], 0, 0);
    for (int i = first; i < ntids; i++) {
      if (wait_stop(tids[i]) < 0) {
        /* The thread exited while stopping: forget it. */
        ptrace(PTRACE_DETACH, tids[i], 0, 0);
        --ntids;
        tids[i] = tids[ntids];
        pending[i] = pending[ntids];
        i--;
        continue;
      }
      added = 1;
    }
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

/* Registers in DWARF order: rax rdx rcx rbx rsi rdi rbp rsp r8-r15, then rip (the return address column). */
static int print_regs(char *out, size_t cap, const struct user_regs_struct *r) {
  const unsigned long long v[17] = {r->rax, r->rdx, r->rcx, r->rbx, r->rsi, r->rdi, r->rbp, r->rsp, r->r8,
                                    r->r9,  r->r10, r->r11, r->r12, r->r13, r->r14, r->r15, r->rip};
  int n = 0;
  for (int i = 0; i < 17 && (size_t)n < cap; i++) n += snprintf(out + n, cap - (size_t)n, "%s%llx", i ? " " : "", v[i]);
  return n;
}

/* stop PID: every thread stopped; one line with each thread's id and registers. */
static void do_stop(char *args) {
  pid_t pid = (pid_t)atoi(args);
  if (pid <= 0) return reply("err stop PID");
  if (target) detach_all();
  if (do_attach(pid) < 0) {
    int e = errno;
    detach_all();
    return reply("err attach %d: %s", pid, strerror(e));
  }
  static char out[MAX_THREADS * 320];
  size_t n = (size_t)snprintf(out, sizeof out, "ok %d", ntids);
  for (int i = 0; i < ntids; i++) {
    struct user_regs_struct r;
    if (ptrace(PTRACE_GETREGS, tids[i], 0, &r) < 0) {
      int e = errno;
      detach_all();
      return reply("err getregs %d: %s", tids[i], strerror(e));
    }
    n += (size_t)snprintf(out + n, sizeof out - n, "%s%d ", i ? ";" : " ", tids[i]);
    n += (size_t)print_regs(out + n, sizeof out - n, &r);
  }
  reply("%s", out);
}

/* step TID MAX N LO HI ...: single-steps a stopped thread until its rip leaves the ranges. */
static void do_step(char *args) {
  char *save = NULL;
  char *tok = strtok_r(args, " ", &save);
  pid_t t = tok ? (pid_t)atoi(tok) : 0;
  tok = strtok_r(NULL, " ", &save);
  long max = tok ? strtol(tok, NULL, 10) : -1;
  int n = 0;
  int i;
  for (i = 0; i < ntids && tids[i] != t; i++) {
  }
  if (i == ntids || max < 0 || max > 4096 || parse_ranges(&save, &n) < 0) return reply("err step TID MAX N LO HI...");
  struct user_regs_struct r;
  if (ptrace(PTRACE_GETREGS, t, 0, &r) < 0) return reply("err getregs: %s", strerror(errno));
  /* A thread stopped in a system call would resume the call, and might block in it: never step it. */
  if ((long long)r.orig_rax >= 0 && in_ranges(r.rip, n)) return reply("busy 0x%llx", (unsigned long long)r.rip);
  for (long step = 0; in_ranges(r.rip, n); step++) {
    if (step >= max) return reply("busy 0x%llx", (unsigned long long)r.rip);
    if (ptrace(PTRACE_SINGLESTEP, t, 0, 0) < 0 || wait_stop_sig(t, &pending[i]) < 0 ||
        ptrace(PTRACE_GETREGS, t, 0, &r) < 0)
      return reply("err step %d: %s", t, strerror(errno));
  }
  char out[400];
  print_regs(out, sizeof out, &r);
  reply("ok %s", out);
}

/*
 * writes M ADDR OLDHEX NEWHEX ...: checks that every ADDR still holds OLD, then writes every NEW.
 * Nothing is written unless every check passes; a failed write puts back what was written. Returns 0
 * when everything was written, else 1 with the reply already sent.
 */
static int apply_writes(char *args) {
  char *save = NULL;
  char *tok = strtok_r(args, " ", &save);
  long m = tok ? strtol(tok, NULL, 10) : -1;
  if (m < 0 || m > MAX_RANGES) return reply("err bad write count"), 1;
  static uint64_t addrs[MAX_RANGES];
  static char *olds[MAX_RANGES], *news[MAX_RANGES];
  for (long i = 0; i < m; i++) {
    char *a = strtok_r(NULL, " ", &save), *o = strtok_r(NULL, " ", &save), *w = strtok_r(NULL, " ", &save);
    if (!a || !o || !w || strlen(o) != strlen(w) || strlen(o) > 64) return reply("err bad write %ld", i), 1;
    addrs[i] = strtoull(a, NULL, 16);
    olds[i] = o;
    news[i] = w;
  }
  for (long i = 0; i < m; i++) {
    unsigned char want[32], now[32];
    ssize_t len = unhex(olds[i], want, sizeof want);
    if (len <= 0 || mem_read(addrs[i], now, (size_t)len) < 0 || memcmp(want, now, (size_t)len))
      return reply("mismatch 0x%llx", (unsigned long long)addrs[i]), 1;
  }
  for (long i = 0; i < m; i++) {
    unsigned char buf[32];
    ssize_t len = unhex(news[i], buf, sizeof buf);
    if (mem_write(addrs[i], buf, (size_t)len) < 0) {
      int e = errno;
      for (long k = 0; k < i; k++) {
        ssize_t l = unhex(olds[k], buf, sizeof buf);
        mem_write(addrs[k], buf, (size_t)l);
      }
      return reply("err write 0x%llx: %s", (unsigned long long)addrs[i], strerror(e)), 1;
    }
  }
  return 0;
}

static long long paused_ns(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - stopped_at.tv_sec) * 1000000000LL + (now.tv_nsec - stopped_at.tv_nsec);
}

static void do_writes(char *args) {
  if (!apply_writes(args)) reply("ok");
}

/* commit M ADDR OLD NEW ...: the writes, then resume at once (one round trip less in the stop). */
static void do_commit(char *args) {
  if (apply_writes(args)) return;
  long long ns = paused_ns();
  detach_all();
  reply("ok %lld", ns);
}

/*
 * Makes the first stopped thread execute the `syscall` instruction at INSN with these arguments (one
 * single-step), then restores its registers exactly. Setting orig_rax to -1 keeps the kernel from
 * restarting a system call the thread was interrupted in; restoring the saved registers afterwards
 * restores that restart. 0 with *res set, or -1 with msg filled in.
 */
static int run_syscall(unsigned long long nr, const unsigned long long a[6], unsigned long long insn, long long *res,
                       char *msg, size_t msglen) {
  pid_t t = tids[0];
  struct user_regs_struct saved, r;
  if (ptrace(PTRACE_GETREGS, t, 0, &saved) < 0) return snprintf(msg, msglen, "getregs: %s", strerror(errno)), -1;
  unsigned char code[2];
  if (mem_read(insn, code, 2) < 0 || code[0] != 0x0f || code[1] != 0x05)
    return snprintf(msg, msglen, "no syscall instruction at 0x%llx", insn), -1;
  r = saved;
  r.rax = nr;
  r.orig_rax = (unsigned long long)-1;
  r.rdi = a[0];
  r.rsi = a[1];
  r.rdx = a[2];
  r.r10 = a[3];
  r.r8 = a[4];
  r.r9 = a[5];
  r.rip = insn;
  if (ptrace(PTRACE_SETREGS, t, 0, &r) < 0) return snprintf(msg, msglen, "setregs: %s", strerror(errno)), -1;
  int i;
  for (i = 0; i < ntids && tids[i] != t; i++) {
  }
  for (int tries = 0;; tries++) {
    if (ptrace(PTRACE_SINGLESTEP, t, 0, 0) < 0 || wait_stop_sig(t, &pending[i]) < 0) {
      ntids = 0;
      return snprintf(msg, msglen, "the process exited during the system call"), -1;
    }
    if (ptrace(PTRACE_GETREGS, t, 0, &r) < 0) return snprintf(msg, msglen, "getregs: %s", strerror(errno)), -1;
    if (r.rip == insn + 2 || tries > 8) break;
    /* A signal stop before the instruction ran: the registers are unchanged, step again. */
  }
  long long result = (long long)r.rax;
  int ran = r.rip == insn + 2;
  if (ptrace(PTRACE_SETREGS, t, 0, &saved) < 0) return snprintf(msg, msglen, "restore regs: %s", strerror(errno)), -1;
  if (!ran) return snprintf(msg, msglen, "the system call did not run"), -1;
  *res = result;
  return 0;
}

/* syscall NR A1 A2 A3 A4 A5 A6 INSN -> ok RESULT */
static void do_syscall(char *args) {
  unsigned long long nr, a[6], insn;
  if (sscanf(args, "%llx %llx %llx %llx %llx %llx %llx %llx", &nr, &a[0], &a[1], &a[2], &a[3], &a[4], &a[5], &insn) != 8)
    return reply("err syscall NR A1..A6 INSN");
  long long res;
  char msg[160];
  if (run_syscall(nr, a, insn, &res, msg, sizeof msg) < 0) return reply("err %s", msg);
  reply("ok %lld", res);
}

/*
 * mapimage INSN BASE SIZE PATHAT PATHHEX N ADDR LEN PROT OFFSET ...: the whole mapping of a patch image
 * in one request — reserve [BASE, BASE+SIZE) readable and executable where nothing is mapped, write the
 * file's path at PATHAT, open it, map each piece of it at ADDR (MAP_FIXED over the reservation), close
 * it. On any failure the reservation is unmapped again.
 */
static void do_mapimage(char *args) {
  char *save = NULL;
  unsigned long long v[4];
  char *tok;
  for (int k = 0; k < 4; k++) {
    tok = strtok_r(k ? NULL : args, " ", &save);
    if (!tok) return reply("err mapimage INSN BASE SIZE PATHAT PATHHEX N ...");
    v[k] = strtoull(tok, NULL, 16);
  }
  unsigned long long insn = v[0], base = v[1], size = v[2], pathat = v[3];
  char *hex = strtok_r(NULL, " ", &save);
  unsigned char path[4096];
  ssize_t plen = hex ? unhex(hex, path, sizeof path - 1) : -1;
  tok = strtok_r(NULL, " ", &save);
  long n = tok ? strtol(tok, NULL, 10) : -1;
  if (plen <= 0 || n < 0 || n > 64) return reply("err mapimage: bad path or segment count");
  path[plen] = 0;
  unsigned long long seg[64][4];
  for (long i = 0; i < n; i++)
    for (int k = 0; k < 4; k++) {
      tok = strtok_r(NULL, " ", &save);
      if (!tok) return reply("err mapimage: segment %ld", i);
      seg[i][k] = strtoull(tok, NULL, 16);
    }
  char msg[160];
  long long res;
  const unsigned long long reserve[6] = {base, size, 5 /* PROT_READ|PROT_EXEC */, 0x100022 /* MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE */, (unsigned long long)-1, 0};
  if (run_syscall(9, reserve, insn, &res, msg, sizeof msg) < 0) return reply("err %s", msg);
  if ((unsigned long long)res != base) {
    if (res > 0) {
      const unsigned long long un[6] = {(unsigned long long)res, size, 0, 0, 0, 0};
      run_syscall(11, un, insn, &res, msg, sizeof msg);
    }
    return reply("err the patch memory could not be mapped at 0x%llx (%lld)", base, res);
  }
  const char *failed = NULL;
  long long fd = -1;
  if (mem_write(pathat, path, (size_t)plen + 1) < 0) failed = "writing the path";
  const unsigned long long op[6] = {(unsigned long long)-100 /* AT_FDCWD */, pathat, 0x80000 /* O_RDONLY|O_CLOEXEC */, 0, 0, 0};
  if (!failed && (run_syscall(257, op, insn, &fd, msg, sizeof msg) < 0 || fd < 0)) failed = "opening the new build";
  for (long i = 0; !failed && i < n; i++) {
    const unsigned long long mm[6] = {seg[i][0], seg[i][1], seg[i][2], 0x12 /* MAP_PRIVATE|MAP_FIXED */, (unsigned long long)fd, seg[i][3]};
    if (run_syscall(9, mm, insn, &res, msg, sizeof msg) < 0 || (unsigned long long)res != seg[i][0]) failed = "mapping the new build";
  }
  if (fd >= 0) {
    const unsigned long long cl[6] = {(unsigned long long)fd, 0, 0, 0, 0, 0};
    run_syscall(3, cl, insn, &res, msg, sizeof msg);
  }
  if (failed) {
    const unsigned long long un[6] = {base, size, 0, 0, 0, 0};
    run_syscall(11, un, insn, &res, msg, sizeof msg);
    return reply("err %s failed (%lld)", failed, fd < 0 ? fd : res);
  }
  reply("ok");
}

/*
 * call FUNC: runs FUNC() on the first stopped thread and returns its rax: an IFUNC resolver, which only
 * reads the CPU features the dynamic loader recorded. The thread gets a stack frame below its red zone
 * with a return address of 0; the fault at 0 brings control back, and its registers are restored.
 */
static void do_call(char *args) {
  unsigned long long func;
  if (sscanf(args, "%llx", &func) != 1) return reply("err call FUNC");
  pid_t t = tids[0];
  struct user_regs_struct saved, r;
  if (ptrace(PTRACE_GETREGS, t, 0, &saved) < 0) return reply("err getregs: %s", strerror(errno));
  r = saved;
  uint64_t sp = ((saved.rsp - 512) & ~0xfULL) - 8;
  uint64_t zero = 0;
  if (mem_write(sp, &zero, 8) < 0) return reply("err write return address: %s", strerror(errno));
  r.rsp = sp;
  r.rip = func;
  r.rax = 0;
  r.orig_rax = (unsigned long long)-1;
  if (ptrace(PTRACE_SETREGS, t, 0, &r) < 0) return reply("err setregs: %s", strerror(errno));
  int i;
  for (i = 0; i < ntids && tids[i] != t; i++) {
  }
  for (int stops = 0;; stops++) {
    int status;
    if (ptrace(PTRACE_CONT, t, 0, 0) < 0) return reply("err cont: %s", strerror(errno));
    if (waitpid(t, &status, __WALL) < 0) return reply("err wait: %s", strerror(errno));
    if (WIFEXITED(status) || WIFSIGNALED(status)) {
      ntids = 0;
      return reply("err the process exited during the call");
    }
    if (WIFSTOPPED(status) && WSTOPSIG(status) == SIGSEGV) break;
    /* Another signal arriving: remember it for the resume, keep going. */
    if (WIFSTOPPED(status) && status >> 16 == 0 && WSTOPSIG(status) != SIGTRAP) pending[i] = WSTOPSIG(status);
    if (stops > 64) {
      ptrace(PTRACE_SETREGS, t, 0, &saved);
      return reply("err the call did not return");
    }
  }
  if (ptrace(PTRACE_GETREGS, t, 0, &r) < 0) return reply("err getregs: %s", strerror(errno));
  unsigned long long result = r.rax;
  int clean = r.rip == 0;
  if (ptrace(PTRACE_SETREGS, t, 0, &saved) < 0) return reply("err restore regs: %s", strerror(errno));
  if (!clean) return reply("err the call faulted at 0x%llx", (unsigned long long)r.rip);
  reply("ok %llu", result);
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
  static char line[1 << 20];
  signal(SIGPIPE, SIG_IGN);
  /* While it holds a process stopped, the helper should not wait behind the host's other work. */
  setpriority(PRIO_PROCESS, 0, -10);
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\n")] = 0;
    char *sp = strchr(line, ' ');
    char *args = sp ? sp + 1 : line + strlen(line);
    if (sp) *sp = 0;
    if (!strcmp(line, "stop")) {
      do_stop(args);
    } else if (!strcmp(line, "quit")) {
      break;
    } else if (!target) {
      reply("err not attached");
    } else if (!strcmp(line, "step")) {
      do_step(args);
    } else if (!strcmp(line, "writes")) {
      do_writes(args);
    } else if (!strcmp(line, "syscall")) {
      do_syscall(args);
    } else if (!strcmp(line, "mapimage")) {
      do_mapimage(args);
    } else if (!strcmp(line, "call")) {
      do_call(args);
    } else if (!strcmp(line, "read")) {
      do_read(args);
    } else if (!strcmp(line, "write")) {
      do_write(args);
    } else if (!strcmp(line, "kill")) {
      kill(target, SIGKILL);
      reply("ok");
    } else if (!strcmp(line, "commit")) {
      do_commit(args);
    } else if (!strcmp(line, "resume") || !strcmp(line, "detach")) {
      long long ns = paused_ns();
      detach_all();
      reply("ok %lld", ns);
    } else {
      reply("err unknown command %s", line);
    }
  }
  if (target) detach_all();
  return 0;
}

/* The exec shim: how the supervisor starts a program that is not Python (a compiled binary,
 * bash, node, java...) without fork(2)ing its own ~37 MB Python process.
 *
 * The supervisor posix_spawn()s this small static binary (vfork: nothing is copied) with the
 * program's stdio on 0/1/2, its own process group and default signals already set; this
 * does, in the same order and with the same meaning, what supervisor.Supervisor._enter and
 * children.enter do in a forked child, then execs the program. Any step that fails ends it
 * with a message on stderr and status 126 (fail closed: nothing runs unconfined).
 *
 * Arguments, then "--", then the program's argv (looked up on the environment's PATH as
 * os.execvpe does; the environment is the program's):
 *   ns=FD:TYPE     setns(FD, TYPE), in the order given (ipc, net, mnt)
 *   root=PATH      then chroot(PATH) and chdir("/") (the jail, as seen from the family's mnt ns)
 *   cg=DIRFD:REL   join a cgroup: write our pid to REL (".../cgroup.procs") under DIRFD
 *   cwd=PATH       the working directory
 *   then=PATH      (bash) once confined, chdir(PATH) when it is a directory, else chdir(cwd)
 *   trace=1        PR_SET_DUMPABLE, PTRACE_TRACEME and SIGSTOP ourselves (the supervisor sets
 *                  its ptrace options at that stop)
 *   as= fsize= nofile= cpu=   resource limits (RLIMIT_CORE is always 0)
 *   nproc=N        RLIMIT_NPROC (only when given, and only with the uid change)
 *   uid=N          the family's uid and gid (when we are root and N != 0)
 *   seccomp=FD:LEN the BPF program (LEN bytes at offset 0 of FD, a sealed memfd)
 * Every descriptor but 0/1/2 is closed before the program runs.
 *
 * Built with -DTF_LIBRARY -shared, the same source is libconfine: ``tf_confine(words, len)``
 * takes the same words (NUL-ended, no "--", no program) in a process the fork server cloned
 * from the Python template, which then runs the model's code in its own interpreter (shim.py
 * says why). Its processes are not spawned, so it does what posix_spawn does for the shim:
 *   stdio=A:B:C    dup2 A, B, C onto 0, 1, 2
 *   pgid=1         a process group of its own
 *   keep=FD        a descriptor (above 2) left open (a kernel's channel)
 *   status=N       the exit status of a failure (126 by default) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_NS 3
#define MAX_CG 8
#define MAX_SECCOMP (4096 * 8) /* BPF_MAXINSNS instructions */

static int fail_status = 126;

static void fail(const char *what, int err) {
  char msg[512];
  int n = snprintf(msg, sizeof msg, "the sandbox could not start the process: %s: %s\n", what,
                   strerror(err));
  if (n > 0) (void)!write(2, msg, n < (int)sizeof msg ? (size_t)n : sizeof msg - 1);
  _exit(fail_status);
}

static long number(const char *s, const char *what) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end) fail(what, EINVAL);
  return v;
}

/* "A:B" -> a, and b at *rest */
static long pair(const char *s, const char **rest, const char *what) {
  const char *colon = strchr(s, ':');
  if (!colon) fail(what, EINVAL);
  char head[32];
  size_t len = (size_t)(colon - s);
  if (len == 0 || len >= sizeof head) fail(what, EINVAL);
  memcpy(head, s, len);
  head[len] = 0;
  *rest = colon + 1;
  return number(head, what);
}

static void limit(int kind, long value, const char *what) {
  struct rlimit r = {(rlim_t)value, (rlim_t)value};
  if (setrlimit(kind, &r) != 0) fail(what, errno);
}

/* Every descriptor from 3 up but `keep` that /proc/self/fd lists, closed: where the kernel
 * has no close_range (gVisor), not 65,536 close() calls, a trap each there (~2.5 s of CPU a
 * program). getdents64 into the stack, no malloc: this runs in a forked child too. A pass
 * closes what it read; passes go on until one finds nothing. -1 when /proc is not there. */
static int close_listed(int keep) {
  int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return -1;
  for (;;) {
    int found[256], n = 0;
    char buf[4096];
    long got;
    if (lseek(dir, 0, SEEK_SET) != 0) {
      close(dir);
      return -1;
    }
    while (n < 256 && (got = syscall(SYS_getdents64, dir, buf, sizeof buf)) > 0) {
      for (long at = 0; at < got && n < 256;) {
        struct linux_dirent64 {
          unsigned long long ino;
          long long off;
          unsigned short reclen;
          unsigned char type;
          char name[];
        } *e = (void *)(buf + at);
        at += e->reclen;
        if (e->name[0] < '0' || e->name[0] > '9') continue;
        int fd = atoi(e->name);
        if (fd >= 3 && fd != keep && fd != dir) found[n++] = fd;
      }
    }
    if (n == 0) break;
    for (int i = 0; i < n; i++) close(found[i]);
  }
  close(dir);
  return 0;
}

static void close_from_3(void) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0) return;
#endif
  if (close_listed(-1) == 0) return;
  for (int fd = 3; fd < (1 << 16); fd++) close(fd);
}

#ifndef TF_LIBRARY
/* os.execvpe: each entry of PATH in turn; the first error that is not "not there" wins. */
static void exec_program(char **argv) {
  const char *file = argv[0];
  if (strchr(file, '/')) {
    execv(file, argv);
  } else {
    const char *path = getenv("PATH");
    if (!path) path = "/bin:/usr/bin"; /* os.defpath */
    int saved = 0;
    char full[4096];
    for (const char *p = path;; p++) {
      const char *end = strchrnul(p, ':');
      size_t len = (size_t)(end - p);
      int n = len ? snprintf(full, sizeof full, "%.*s/%s", (int)len, p, file)
                  : snprintf(full, sizeof full, "%s", file);
      if (n > 0 && n < (int)sizeof full) {
        execv(full, argv);
        if (errno != ENOENT && errno != ENOTDIR && !saved) saved = errno;
      } else {
        errno = ENAMETOOLONG;
      }
      if (!*end) break;
      p = end;
    }
    if (saved) errno = saved;
  }
  char msg[512];
  int n = snprintf(msg, sizeof msg, "%s: %s\n", file, strerror(errno));
  if (n > 0) (void)!write(2, msg, n < (int)sizeof msg ? (size_t)n : sizeof msg - 1);
  _exit(127);
}
#endif

/* What a process is confined by: parsed from the words described at the top. */
struct confinement {
  int ns_fd[MAX_NS], ns_type[MAX_NS], n_ns;
  int cg_fd[MAX_CG], n_cg;
  const char *cg_rel[MAX_CG];
  const char *root, *cwd, *then;
  long as, fsize, nofile, cpu, nproc, uid;
  int trace, seccomp_fd, pgid, keep, stdio[3];
  long seccomp_len;
};

/* The words up to "--" (or the end); returns how many were read. */
static int parse(int argc, char **argv, struct confinement *c) {
  memset(c, 0, sizeof *c);
  c->as = c->fsize = c->nofile = c->cpu = c->nproc = c->uid = -1;
  c->seccomp_fd = c->keep = c->stdio[0] = c->stdio[1] = c->stdio[2] = -1;
  int i = 0;
  for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
    const char *a = argv[i], *rest;
    if (!strncmp(a, "ns=", 3)) {
      if (c->n_ns == MAX_NS) fail("ns", E2BIG);
      c->ns_fd[c->n_ns] = (int)pair(a + 3, &rest, "ns");
      c->ns_type[c->n_ns++] = (int)number(rest, "ns");
    } else if (!strncmp(a, "cg=", 3)) {
      if (c->n_cg == MAX_CG) fail("cg", E2BIG);
      c->cg_fd[c->n_cg] = (int)pair(a + 3, &rest, "cg");
      c->cg_rel[c->n_cg++] = rest;
    } else if (!strncmp(a, "stdio=", 6)) {
      c->stdio[0] = (int)pair(a + 6, &rest, "stdio");
      c->stdio[1] = (int)pair(rest, &rest, "stdio");
      c->stdio[2] = (int)number(rest, "stdio");
    } else if (!strncmp(a, "root=", 5)) c->root = a + 5;
    else if (!strncmp(a, "cwd=", 4)) c->cwd = a + 4;
    else if (!strncmp(a, "then=", 5)) c->then = a + 5;
    else if (!strncmp(a, "trace=", 6)) c->trace = (int)number(a + 6, "trace");
    else if (!strncmp(a, "pgid=", 5)) c->pgid = (int)number(a + 5, "pgid");
    else if (!strncmp(a, "keep=", 5)) c->keep = (int)number(a + 5, "keep");
    else if (!strncmp(a, "status=", 7)) fail_status = (int)number(a + 7, "status");
    else if (!strncmp(a, "as=", 3)) c->as = number(a + 3, "as");
    else if (!strncmp(a, "fsize=", 6)) c->fsize = number(a + 6, "fsize");
    else if (!strncmp(a, "nofile=", 7)) c->nofile = number(a + 7, "nofile");
    else if (!strncmp(a, "cpu=", 4)) c->cpu = number(a + 4, "cpu");
    else if (!strncmp(a, "nproc=", 6)) c->nproc = number(a + 6, "nproc");
    else if (!strncmp(a, "uid=", 4)) c->uid = number(a + 4, "uid");
    else if (!strncmp(a, "seccomp=", 8)) {
      c->seccomp_fd = (int)pair(a + 8, &rest, "seccomp");
      c->seccomp_len = number(rest, "seccomp");
    } else fail(a, EINVAL);
  }
  if (!c->cwd || c->as < 0 || c->fsize < 0 || c->nofile < 0 || c->cpu < 0 || c->uid < 0)
    fail("arguments", EINVAL);
  if (c->keep >= 0 && c->keep < 3) fail("keep", EINVAL);
  return i;
}

/* Every descriptor from 3 up closed, but `keep` (when >= 3). */
static void close_all_but(int keep) {
  if (keep < 3) {
    close_from_3();
    return;
  }
#ifdef SYS_close_range
  if (syscall(SYS_close_range, 3U, (unsigned)keep - 1, 0U) == 0 &&
      syscall(SYS_close_range, (unsigned)keep + 1, ~0U, 0U) == 0)
    return;
#endif
  if (close_listed(keep) == 0) return;
  for (int fd = 3; fd < (1 << 16); fd++)
    if (fd != keep) close(fd);
}

/* The steps of Supervisor._enter and children.enter, in their order. */
static void confine(const struct confinement *c) {
  static struct sock_filter filter[MAX_SECCOMP / 8];
  if (c->seccomp_fd >= 0) {
    if (c->seccomp_len <= 0 || c->seccomp_len > MAX_SECCOMP || c->seccomp_len % 8)
      fail("seccomp", EINVAL);
    if (pread(c->seccomp_fd, filter, (size_t)c->seccomp_len, 0) != c->seccomp_len)
      fail("seccomp", EIO);
  }

  /* stdio first: what fails from here on says so on the process's own stderr */
  for (int target = 0; target < 3; target++)
    if (c->stdio[target] >= 0 && c->stdio[target] != target &&
        dup2(c->stdio[target], target) < 0)
      fail("dup2", errno);

  /* Supervisor._enter: the family's namespaces, the jail, its cgroups */
  for (int k = 0; k < c->n_ns; k++)
    if (setns(c->ns_fd[k], c->ns_type[k]) != 0) fail("setns", errno);
  if (c->root) {
    if (chroot(c->root) != 0) fail("chroot", errno);
    if (chdir("/") != 0) fail("chdir /", errno);
  }
  if (c->n_cg) {
    char pid[24];
    int len = snprintf(pid, sizeof pid, "%d", (int)getpid());
    for (int k = 0; k < c->n_cg; k++) {
      int fd = openat(c->cg_fd[k], c->cg_rel[k], O_WRONLY | O_CLOEXEC);
      if (fd < 0) fail("cgroup", errno);
      if (write(fd, pid, (size_t)len) != len) fail("cgroup", errno);
      close(fd);
    }
  }

  /* children.enter (the shim: process group, default signals and stdio by posix_spawn) */
  if (c->pgid && setpgid(0, 0) != 0) fail("setpgid", errno);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) fail("pdeathsig", errno);
  int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (oom >= 0) { /* best effort, as jail.set_oom_score */
    (void)!write(oom, "1000", 4);
    close(oom);
  }
  close_all_but(c->keep);
  if (chdir(c->cwd) != 0) fail("chdir", errno);
  if (c->trace) {
    /* children.enter: what it leaves when its children end stays below it (Supervisor._sweep);
     * gVisor (runsc 20221219) has subreapers for its init alone: EINVAL */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 && errno != EINVAL)
      fail("subreaper", errno);
    if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) fail("dumpable", errno);
    if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0) fail("ptrace", errno);
    if (kill(getpid(), SIGSTOP) != 0) fail("sigstop", errno);
  }
  /* jail.drop_privileges */
  limit(RLIMIT_AS, c->as, "rlimit as");
  limit(RLIMIT_FSIZE, c->fsize, "rlimit fsize");
  limit(RLIMIT_NOFILE, c->nofile, "rlimit nofile");
  limit(RLIMIT_CORE, 0, "rlimit core");
  limit(RLIMIT_CPU, c->cpu, "rlimit cpu");
  if (getuid() == 0 && c->uid != 0) {
    if (c->nproc >= 0) limit(RLIMIT_NPROC, c->nproc, "rlimit nproc");
    if (setgroups(0, NULL) != 0) fail("setgroups", errno);
    if (setresgid((gid_t)c->uid, (gid_t)c->uid, (gid_t)c->uid) != 0) fail("setresgid", errno);
    if (setresuid((uid_t)c->uid, (uid_t)c->uid, (uid_t)c->uid) != 0) fail("setresuid", errno);
  }
  /* the uid change cleared the parent-death signal: set it again */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) fail("pdeathsig", errno);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("no_new_privs", errno);
  if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) fail("dumpable", errno);
  if (c->seccomp_fd >= 0) {
    struct sock_fprog prog = {(unsigned short)(c->seccomp_len / 8), filter};
    if (prctl(PR_SET_SECCOMP, 2 /* SECCOMP_MODE_FILTER */, &prog, 0, 0) != 0)
      fail("seccomp", errno);
  }
  if (c->then) {
    struct stat st;
    const char *to = stat(c->then, &st) == 0 && S_ISDIR(st.st_mode) ? c->then : c->cwd;
    if (chdir(to) != 0) fail("chdir", errno);
  }
}

#ifdef TF_LIBRARY
/* close_all_but for fork_loop.c (a judge's case, set up in C: tf_case_loop). */
void tf_close_all_but(int keep) { close_all_but(keep); }

/* The library's entry (libconfine, built from this source): a process the fork server
 * cloned from the template confines itself before its Python runs the model's code. The
 * words come packed, each ended by a NUL (`len` bytes in all, at most 64 words). A failure
 * ends the process (status= , 126 by default), as the shim's. */
int tf_confine(const char *words, int len) {
  char *argv[64];
  int argc = 0;
  for (int at = 0; at < len; at += (int)strlen(words + at) + 1) {
    if (argc == 64) fail("arguments", E2BIG);
    argv[argc++] = (char *)(words + at);
  }
  struct confinement c;
  if (parse(argc, argv, &c) != argc) fail("arguments", EINVAL);
  confine(&c);
  return 0;
}
#else
int main(int argc, char **argv) {
  struct confinement c;
  int i = 1 + parse(argc - 1, argv + 1, &c);
  if (i + 1 >= argc) fail("arguments", EINVAL);
  confine(&c);
  exec_program(argv + i + 1);
  return 127;
}
#endif

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
 * Every descriptor but 0/1/2 is closed before the program runs. */
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

static void fail(const char *what, int err) {
  char msg[512];
  int n = snprintf(msg, sizeof msg, "the sandbox could not start the process: %s: %s\n", what,
                   strerror(err));
  if (n > 0) (void)!write(2, msg, n < (int)sizeof msg ? (size_t)n : sizeof msg - 1);
  _exit(126);
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

static void close_from_3(void) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0) return;
#endif
  for (int fd = 3; fd < (1 << 16); fd++) close(fd);
}

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

int main(int argc, char **argv) {
  int ns_fd[MAX_NS], ns_type[MAX_NS], n_ns = 0;
  int cg_fd[MAX_CG], n_cg = 0;
  const char *cg_rel[MAX_CG];
  const char *root = NULL, *cwd = NULL, *then = NULL;
  long as = -1, fsize = -1, nofile = -1, cpu = -1, nproc = -1, uid = -1;
  int trace = 0, seccomp_fd = -1;
  long seccomp_len = 0;
  int i = 1;
  for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
    const char *a = argv[i], *rest;
    if (!strncmp(a, "ns=", 3)) {
      if (n_ns == MAX_NS) fail("ns", E2BIG);
      ns_fd[n_ns] = (int)pair(a + 3, &rest, "ns");
      ns_type[n_ns++] = (int)number(rest, "ns");
    } else if (!strncmp(a, "cg=", 3)) {
      if (n_cg == MAX_CG) fail("cg", E2BIG);
      cg_fd[n_cg] = (int)pair(a + 3, &rest, "cg");
      cg_rel[n_cg++] = rest;
    } else if (!strncmp(a, "root=", 5)) root = a + 5;
    else if (!strncmp(a, "cwd=", 4)) cwd = a + 4;
    else if (!strncmp(a, "then=", 5)) then = a + 5;
    else if (!strncmp(a, "trace=", 6)) trace = (int)number(a + 6, "trace");
    else if (!strncmp(a, "as=", 3)) as = number(a + 3, "as");
    else if (!strncmp(a, "fsize=", 6)) fsize = number(a + 6, "fsize");
    else if (!strncmp(a, "nofile=", 7)) nofile = number(a + 7, "nofile");
    else if (!strncmp(a, "cpu=", 4)) cpu = number(a + 4, "cpu");
    else if (!strncmp(a, "nproc=", 6)) nproc = number(a + 6, "nproc");
    else if (!strncmp(a, "uid=", 4)) uid = number(a + 4, "uid");
    else if (!strncmp(a, "seccomp=", 8)) {
      seccomp_fd = (int)pair(a + 8, &rest, "seccomp");
      seccomp_len = number(rest, "seccomp");
    } else fail(a, EINVAL);
  }
  if (i + 1 >= argc || !cwd || as < 0 || fsize < 0 || nofile < 0 || cpu < 0 || uid < 0)
    fail("arguments", EINVAL);
  char **program = argv + i + 1;

  static struct sock_filter filter[MAX_SECCOMP / 8];
  if (seccomp_fd >= 0) {
    if (seccomp_len <= 0 || seccomp_len > MAX_SECCOMP || seccomp_len % 8) fail("seccomp", EINVAL);
    if (pread(seccomp_fd, filter, (size_t)seccomp_len, 0) != seccomp_len) fail("seccomp", EIO);
  }

  /* Supervisor._enter: the family's namespaces, the jail, its cgroups */
  for (int k = 0; k < n_ns; k++)
    if (setns(ns_fd[k], ns_type[k]) != 0) fail("setns", errno);
  if (root) {
    if (chroot(root) != 0) fail("chroot", errno);
    if (chdir("/") != 0) fail("chdir /", errno);
  }
  if (n_cg) {
    char pid[24];
    int len = snprintf(pid, sizeof pid, "%d", (int)getpid());
    for (int k = 0; k < n_cg; k++) {
      int fd = openat(cg_fd[k], cg_rel[k], O_WRONLY | O_CLOEXEC);
      if (fd < 0) fail("cgroup", errno);
      if (write(fd, pid, (size_t)len) != len) fail("cgroup", errno);
      close(fd);
    }
  }

  /* children.enter (setpgid, default signals and stdio were done by posix_spawn) */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) fail("pdeathsig", errno);
  int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (oom >= 0) { /* best effort, as jail.set_oom_score */
    (void)!write(oom, "1000", 4);
    close(oom);
  }
  close_from_3();
  if (chdir(cwd) != 0) fail("chdir", errno);
  if (trace) {
    if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) fail("dumpable", errno);
    if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0) fail("ptrace", errno);
    if (kill(getpid(), SIGSTOP) != 0) fail("sigstop", errno);
  }
  /* jail.drop_privileges */
  limit(RLIMIT_AS, as, "rlimit as");
  limit(RLIMIT_FSIZE, fsize, "rlimit fsize");
  limit(RLIMIT_NOFILE, nofile, "rlimit nofile");
  limit(RLIMIT_CORE, 0, "rlimit core");
  limit(RLIMIT_CPU, cpu, "rlimit cpu");
  if (getuid() == 0 && uid != 0) {
    if (nproc >= 0) limit(RLIMIT_NPROC, nproc, "rlimit nproc");
    if (setgroups(0, NULL) != 0) fail("setgroups", errno);
    if (setresgid((gid_t)uid, (gid_t)uid, (gid_t)uid) != 0) fail("setresgid", errno);
    if (setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) != 0) fail("setresuid", errno);
  }
  /* the uid change cleared the parent-death signal: set it again */
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) fail("pdeathsig", errno);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("no_new_privs", errno);
  if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) fail("dumpable", errno);
  if (seccomp_fd >= 0) {
    struct sock_fprog prog = {(unsigned short)(seccomp_len / 8), filter};
    if (prctl(PR_SET_SECCOMP, 2 /* SECCOMP_MODE_FILTER */, &prog, 0, 0) != 0)
      fail("seccomp", errno);
  }
  if (then) {
    struct stat st;
    const char *to = stat(then, &st) == 0 && S_ISDIR(st.st_mode) ? then : cwd;
    if (chdir(to) != 0) fail("chdir", errno);
  }
  exec_program(program);
  return 127;
}

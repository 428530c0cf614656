/* The fork server's loop in C (part of libconfine; forker.py says what the server is for).
 *
 * A fork write-protects every page of the process that forks, and the next write to each
 * page the child still shares copies it. Looping in Python, the server touched hundreds of
 * pages between two clones (the interpreter's frames, objects and refcounts): each a page
 * copy while the last child ran. Here the server touches a few pages of its own (this stack,
 * a static buffer) and never returns to Python: its pages stay shared with the template's
 * and the children's (and 2 MiB pages, where the template has them, stay whole).
 *
 * The protocol is wire.py's: a frame is a 4-byte big-endian length and a JSON object, the
 * request's descriptors come with it (SCM_RIGHTS). The loop answers each request with
 * {"pid": N} or {"error": "..."} after the clone, in order, and closes the descriptors. In
 * each child, tf_fork_loop returns 0 with the request's bytes and descriptors; the server
 * itself never returns: it exits 0 when the channel closes or breaks. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SMALL (256 * 1024)              /* requests up to this size use a static buffer */
#define LARGEST (256u * 1024 * 1024)    /* wire.MAX_FRAME */
#define CLONE_PARENT_FLAG 0x00008000

void tf_close_all_but(int keep); /* exec_shim.c, in the same library */

static char small[SMALL];

/* Exactly `size` bytes into `buf`, and any descriptors that come along (up to `maxfds`,
 * the rest closed). 0 when done, -1 when the channel closed or broke. */
static int recv_exact(int chan, char *buf, size_t size, int *fds, int maxfds, int *nfds) {
  size_t got = 0;
  while (got < size) {
    char control[CMSG_SPACE(sizeof(int) * 16)];
    struct iovec iov = {buf + got, size - got};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                         .msg_controllen = sizeof control};
    ssize_t n = recvmsg(chan, &msg, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
      int *passed = (int *)CMSG_DATA(c);
      for (int k = 0; k < count; k++) {
        if (*nfds < maxfds) fds[(*nfds)++] = passed[k];
        else close(passed[k]);
      }
    }
    got += (size_t)n;
  }
  return 0;
}

static int send_all(int chan, const char *buf, size_t size) {
  while (size) {
    ssize_t n = send(chan, buf, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    buf += n;
    size -= (size_t)n;
  }
  return 0;
}

static void answer(int chan, long pid, int err) {
  char frame[300];
  char *body = frame + 4;
  int n = pid > 0 ? snprintf(body, sizeof frame - 4, "{\"pid\":%ld}", pid)
                  : snprintf(body, sizeof frame - 4, "{\"error\":\"clone: %s\"}", strerror(err));
  if (n < 0 || n >= (int)sizeof frame - 4) _exit(1);
  uint32_t size = htonl((uint32_t)n);
  memcpy(frame, &size, 4);
  if (send_all(chan, frame, (size_t)n + 4) != 0) _exit(0);
}

/* Serve requests on `chan` until it closes. Returns (0) only in a child: `*data` and `*len`
 * are its request (valid for the child's life), `fds[0..*nfds)` its descriptors (received
 * as Python's recvmsg receives them: inheritable). `sibling`: the children are our parent's
 * (CLONE_PARENT: the fork server's, the supervisor's children); else our own (a judge's
 * case server, whose cases are its children). */
int tf_fork_loop(int chan, int sibling, char **data, int *len, int *fds, int maxfds,
                 int *nfds) {
  long flags = (sibling ? CLONE_PARENT_FLAG : 0) | SIGCHLD;
  for (;;) {
    uint32_t header;
    *nfds = 0;
    if (recv_exact(chan, (char *)&header, 4, fds, maxfds, nfds) != 0) _exit(0);
    size_t size = ntohl(header);
    if (size > LARGEST) _exit(1);
    char *buf = small;
    if (size > SMALL) {
      buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (buf == MAP_FAILED) _exit(1);
    }
    if (recv_exact(chan, buf, size, fds, maxfds, nfds) != 0) _exit(0);
    long pid = syscall(SYS_clone, flags, 0, 0, 0, 0);
    if (pid == 0) {
      *data = buf;
      *len = (int)size;
      return 0;
    }
    int err = errno;
    for (int k = 0; k < *nfds; k++) close(fds[k]);
    if (buf != small) munmap(buf, size);
    answer(chan, pid, err);
  }
}

/* A case that cannot be set up says why on its own stderr and never runs. */
static void case_failed(const char *what, int err) {
  char msg[160];
  int n = snprintf(msg, sizeof msg, "the sandbox could not start the process: %s: %s\n", what,
                   strerror(err));
  if (n > 0) (void)!write(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
  _exit(126);
}

/* A judge's case server's loop (cases.py): tf_fork_loop's, the cases its own children, each
 * of which sets itself up here before it returns, so that its Python touches no page of the
 * server's before the program does (in Python this set-up copied ~250 pages a case: the
 * request's decoding, ctypes calls, the descriptors). A request is four descriptors (stdin,
 * stdout, stderr, the go pipe) and a body: the case's working directory, NUL, then what
 * cases.py reads (args, environment), NUL-separated. In the child: its stdio; nothing else
 * open; a process group of its own; SIGCHLD as by default (the server ignores it: its cases
 * are reaped without it); dumpable (/proc shows it as the family's); a subreaper (its
 * orphans stay below it: Supervisor._sweep); its directory; then it waits until the
 * supervisor traces it ("g" on the go pipe). Returns (0) only there, `*data` and `*len` the
 * body after the directory. */
int tf_case_loop(int chan, char **data, int *len) {
  struct sigaction ignore = {.sa_handler = SIG_IGN}, standard = {.sa_handler = SIG_DFL};
  int fds[4], nfds = 0;
  sigaction(SIGCHLD, &ignore, NULL);
  tf_fork_loop(chan, 0, data, len, fds, 4, &nfds); /* returns in a case only */
  if (nfds != 4) case_failed("descriptors", EINVAL);
  for (int target = 0; target < 3; target++)
    if (dup2(fds[target], target) < 0) case_failed("dup2", errno);
  int go = fds[3];
  tf_close_all_but(go);
  if (setpgid(0, 0) != 0) case_failed("setpgid", errno);
  sigaction(SIGCHLD, &standard, NULL);
  if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) case_failed("dumpable", errno);
  /* gVisor (runsc 20221219) has subreapers for its init alone: EINVAL */
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 && errno != EINVAL)
    case_failed("subreaper", errno);
  size_t cwd = strnlen(*data, (size_t)*len);
  if (cwd == (size_t)*len) case_failed("request", EINVAL);
  if (chdir(*data) != 0) case_failed("chdir", errno);
  *data += cwd + 1;
  *len -= (int)cwd + 1;
  char g = 0;
  ssize_t n;
  do n = read(go, &g, 1);
  while (n < 0 && errno == EINTR);
  if (n != 1 || g != 'g') _exit(126); /* not traced: it never runs */
  close(go);
  return 0;
}

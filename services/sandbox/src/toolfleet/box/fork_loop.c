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
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SMALL (256 * 1024)              /* requests up to this size use a static buffer */
#define LARGEST (256u * 1024 * 1024)    /* wire.MAX_FRAME */
#define CLONE_PARENT_FLAG 0x00008000

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

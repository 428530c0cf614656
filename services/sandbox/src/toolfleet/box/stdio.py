"""A long-lived program in the jail, talking over its stdin and stdout (an MCP stdio server).

Run by a service (``python -m toolfleet.box.stdio … -- PROGRAM ARGS``) under ``unshare`` as
PID 1 of fresh mount, pid, ipc and uts namespaces (:func:`command` builds the whole line). It
builds the jail's root as the zygote's launcher does (``jail.build_root``: read-only system
directories, a private ``/proc`` and ``/dev``, nothing of the service), adds what the program
needs read-only (``--show``: an npm prefix, a virtualenv), gives it a writable ``/tmp`` of its
own (a size-capped tmpfs, also its home and working directory), moves into a network
namespace of its own (loopback only), drops to an unprivileged uid with resource limits and no
new privileges, installs the sandbox's seccomp filter (``--seccomp``), and execs the program.
Its stdin and stdout are the caller's pipes, passed through untouched: nothing in this
process relays the stream, so a message costs what a pipe costs.
When the caller goes, ``unshare --kill-child`` ends the namespace and all in it.

``--port N`` relays the jail's ``127.0.0.1:N`` to the host's (a server configured to use a
database on the host): an acceptor in the jail's network namespace hands each connection to
a relay that stayed in the host's, which connects there; no other address is reachable.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import shutil
import socket
import struct
import sys
import threading

from toolfleet.box import jail

UNSHARE = ["unshare", "--mount", "--ipc", "--uts", "--pid", "--fork", "--kill-child"]
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
PATH = "/usr/local/bin:/usr/bin:/bin"


def command(
    program: list[str],
    *,
    root: str,
    uid: int,
    show: list[str] = (),
    hide: list[str] = (),
    ports: list[int] = (),
    memory_mb: int = 0,
    tmp_mb: int = 64,
    path: list[str] = (),
    seccomp: bytes | None = None,
    python: str = sys.executable,
) -> list[str]:
    """The command line that runs ``program`` jailed (its environment is the caller's to
    give, PATH aside: ``path`` directories come first on the jail's PATH)."""
    if shutil.which("unshare") is None:
        raise RuntimeError("the jail needs util-linux's unshare")
    line = [*UNSHARE, python, "-I", "-m", "toolfleet.box.stdio", "--root", root]
    line += ["--uid", str(uid), "--memory-mb", str(memory_mb), "--tmp-mb", str(tmp_mb)]
    for item in show:
        line += ["--show", item]
    for item in hide:
        line += ["--hide", item]
    for port in ports:
        line += ["--port", str(port)]
    for item in path:
        line += ["--path", item]
    if seccomp:
        line += ["--seccomp", seccomp.hex()]
    return [*line, "--", *program]


def loopback_up() -> None:
    """Bring ``lo`` up in this network namespace (ioctl, no ``ip`` binary needed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", _ioctl(s.fileno(), SIOCGIFFLAGS, ifreq))[1]
        _ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def _ioctl(fd: int, request: int, arg: bytes) -> bytes:
    import fcntl

    return fcntl.ioctl(fd, request, arg)


def _relay(channel: socket.socket) -> None:
    """In the host's network namespace: for each connection the acceptor sends (its port,
    then its descriptor), connect to the host's 127.0.0.1:port and copy both ways."""
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(channel, 4, 1)
        except OSError:
            return
        if not msg or not fds:
            return
        (port,) = struct.unpack("!I", msg)
        inner = socket.socket(fileno=fds[0])
        try:
            outer = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            inner.close()
            continue
        outer.settimeout(None)
        threading.Thread(target=_pipe_both, args=(inner, outer), daemon=True).start()


def _pipe_both(a: socket.socket, b: socket.socket) -> None:
    sel = selectors.DefaultSelector()
    sel.register(a, selectors.EVENT_READ, b)
    sel.register(b, selectors.EVENT_READ, a)
    try:
        while True:
            for key, _ in sel.select():
                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                if not data:
                    return
                key.data.sendall(data)
    except OSError:
        return
    finally:
        a.close()
        b.close()


def _accept(listeners: list[socket.socket], channel: socket.socket) -> None:
    """In the jail's network namespace: hand every accepted connection to the relay."""
    sel = selectors.DefaultSelector()
    for listener in listeners:
        sel.register(listener, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            listener: socket.socket = key.fileobj  # type: ignore[assignment]
            conn, _ = listener.accept()
            port = listener.getsockname()[1]
            socket.send_fds(channel, [struct.pack("!I", port)], [conn.fileno()])
            conn.close()


def _serve_ports(ports: list[int]) -> None:
    """Fork the relay (host network) and, once in the jail's network, the acceptor."""
    host_side, jail_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    if os.fork() == 0:  # the relay: stays in the host's network namespace
        jail_side.close()
        jail.prctl(jail.PR_SET_PDEATHSIG, 9)
        _relay(host_side)
        os._exit(0)
    host_side.close()
    jail.unshare(jail.CLONE_NEWNET)
    try:
        loopback_up()
    except PermissionError:
        sys.exit("toolfleet-stdio: relayed ports need the loopback up, which takes CAP_NET_ADMIN")
    listeners = []
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(64)
        listeners.append(s)
    if os.fork() == 0:  # the acceptor: in the jail's network namespace
        jail.prctl(jail.PR_SET_PDEATHSIG, 9)
        _accept(listeners, jail_side)
        os._exit(0)
    for s in listeners:
        s.close()
    jail_side.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="toolfleet-stdio")
    parser.add_argument("--root", required=True, help="where to build the jail's root")
    parser.add_argument("--uid", type=int, required=True, help="the uid the program runs as")
    parser.add_argument("--show", action="append", default=[], help="a path shown read-only")
    parser.add_argument("--hide", action="append", default=[], help="a path to cover")
    parser.add_argument("--port", action="append", type=int, default=[], help="relayed port")
    parser.add_argument("--path", action="append", default=[], help="first on PATH")
    parser.add_argument("--memory-mb", type=int, default=0, help="address space (0: none)")
    parser.add_argument("--tmp-mb", type=int, default=64, help="the writable /tmp's size")
    parser.add_argument("--seccomp", help="a BPF program (hex) installed before the exec")
    parser.add_argument("program", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    program = args.program[1:] if args.program[:1] == ["--"] else args.program
    if not program:
        parser.error("no program given")

    if args.port:
        _serve_ports(args.port)
    else:
        jail.unshare(jail.CLONE_NEWNET)
        # where bringing it up is not allowed (a container without CAP_NET_ADMIN), the server
        # has no loopback either: still no network, which is what matters
        with contextlib.suppress(PermissionError):
            loopback_up()
    shown = [p for p in args.show if os.path.exists(p)]
    jail.build_root(args.root, jail.SYSTEM_PATHS + shown, {}, args.hide)
    # The program's own writable place: /tmp (read-only in the jail's root), capped in size.
    jail.mount(
        "tmpfs", "/tmp", "tmpfs", jail.MS_NOSUID | jail.MS_NODEV, f"size={args.tmp_mb}m,mode=0700"
    )
    os.chown("/tmp", args.uid, args.uid)
    os.chdir("/tmp")
    limits = jail.Limits(memory_bytes=args.memory_mb * 1024 * 1024 or resource_infinity())
    limits.processes = 256
    limits.open_files = 1024
    jail.drop_privileges(args.uid, limits, 0, uid_limits=True)
    if args.seccomp:
        jail.load_seccomp(bytes.fromhex(args.seccomp))
    env = dict(os.environ)
    env.update(HOME="/tmp", TMPDIR="/tmp", PATH=":".join([*args.path, PATH]))
    with contextlib.suppress(OSError):
        os.execvpe(program[0], program, env)
    print(f"toolfleet-stdio: cannot run {program[0]!r} in the jail", file=sys.stderr)
    return 127


def resource_infinity() -> int:
    """RLIM_INFINITY (no address-space limit)."""
    import resource

    return resource.RLIM_INFINITY


if __name__ == "__main__":
    sys.exit(main())

"""Start a zygote in the local backend's jail.

Run by the service (``python -m toolfleet.box.launch``) as PID 1 of fresh namespaces made by
``unshare``: it opens the instance's cgroup directories (they stay reachable by descriptor
after the chroot), builds the jail's root (``jail.build_root``), chroots into it, and execs
the sandbox's own Python runtime on the zygote. From then on nothing of the service — its
interpreter, its virtualenv, the project tree, host paths — is in the sandbox's view.
Without ``--root`` it starts the zygote on the host, unjailed (limits only).
"""

from __future__ import annotations

import argparse
import os
import sys

from toolfleet.box import cgroups, jail

LIB_PACKAGE = os.path.dirname(os.path.abspath(__file__))
BOOT = (
    "import sys; sys.path.insert(0, {lib!r}); from toolfleet.box.zygote import main; "
    "sys.exit(main(sys.argv[1:]))"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="toolfleet-launch")
    parser.add_argument("--fd", type=int, required=True, help="the control socket")
    parser.add_argument("--runtime", required=True, help="the runtime's directory (a venv)")
    parser.add_argument("--root", help="build the jail with its root mounted here")
    parser.add_argument("--box-root", default=jail.BOX_ROOT)
    parser.add_argument("--hide", action="append", default=[], help="a path to cover")
    parser.add_argument("--show", action="append", default=[], help="a path to show read-only")
    parser.add_argument("--cgroup", action="append", default=[], help="NAME=DIR (v1) or =DIR")
    parser.add_argument("--cgroup-version", default="v1")
    args = parser.parse_args(argv)

    fds: dict[str, int] = {}
    for item in args.cgroup:
        name, _, path = item.partition("=")
        fds[name] = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        os.set_inheritable(fds[name], True)
    if fds:
        cgroups.join_zygotes(fds)
    # The instance's memory ceiling holds the zygotes too: the OOM killer must not choose one
    # (where we may lower it; processes of model code raise theirs to the top anyway).
    jail.set_oom_score(-1000)
    os.set_inheritable(args.fd, True)
    zygote_args = ["--fd", str(args.fd), "--box-root", args.box_root]
    if fds:
        pairs = ",".join(f"{name}={fd}" for name, fd in fds.items())
        zygote_args += ["--cgroups", f"{args.cgroup_version}:{pairs}"]
    if args.root:
        binds = {jail.RUNTIME: args.runtime, f"{jail.LIB}/toolfleet/box": LIB_PACKAGE}
        jail.build_root(args.root, jail.SYSTEM_PATHS + args.show, binds, args.hide)
        python, lib = f"{jail.RUNTIME}/bin/python", jail.LIB
        zygote_args += ["--jailed", "--isolate", "--jail-root", os.path.abspath(args.root)]
    else:
        python = os.path.join(args.runtime, "bin", "python")
        lib = os.path.dirname(os.path.dirname(LIB_PACKAGE))
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    os.execve(python, [python, "-I", "-c", BOOT.format(lib=lib), *zygote_args], env)
    return 127


if __name__ == "__main__":
    sys.exit(main())

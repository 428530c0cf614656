"""The kernel: one session's interpreter, inside the sandbox.

A kernel is forked from the zygote with the heavy libraries already imported, so it starts in
a millisecond or two. It serves one channel, one request at a time: run Python in its
persistent namespace (like a Jupyter kernel), run bash with the session's working directory
and environment restored, read and write workspace files, and fork itself for a session fork.
Everything it sends back is treated by the service as untrusted.
"""

from __future__ import annotations

import ast
import base64
import builtins
import contextlib
import io
import linecache
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from typing import Any

from toolfleet.sandbox import jail, processes, wire
from toolfleet.sandbox.capture import CappedWriter, Display, OutputBudget, OutputLimitError

BASH = "/bin/bash"
STATE_TRAP = (
    'trap \'__tf_s=$?; pwd > "$__TF_STATE/cwd"; env -0 > "$__TF_STATE/env"; exit $__tf_s\' EXIT\n'
)
MAX_FILES_LISTED = 1000
CURRENT: Kernel | None = None  # the kernel this process serves (for PIL's Image.show)


class Kernel:
    """State and operations of one kernel process."""

    def __init__(self, chan: socket.socket, workspace: str, env: dict[str, str]) -> None:
        self.chan = chan
        self.pid = os.getpid()
        self.forks: set[int] = set()  # kernels forked from this one (other sessions)
        self.workspace = workspace
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        self.bash_cwd = workspace
        self.bash_env = dict(env)
        self.cells = 0
        self.running = False
        self.display: Display | None = None
        self.spill = os.memfd_create("kernel-output", 0)
        os.dup2(self.spill, 1)
        os.dup2(self.spill, 2)
        self.namespace["display"] = self._display
        global CURRENT
        CURRENT = self

    # ------------------------------------------------------------------ loop

    def serve(self) -> None:
        """Answer requests until the channel closes."""
        signal.signal(signal.SIGINT, self._on_interrupt)
        wire.send(self.chan, {"op": "hello", "pid": os.getpid(), "workspace": self.workspace})
        while True:
            try:
                msg, fds = wire.recv(self.chan)
            except (wire.ChannelClosedError, OSError):
                os._exit(0)
            try:
                reply = self.handle(msg, fds)
            except KeyboardInterrupt:
                reply = {"ok": False, "error": {"kind": "timeout", "message": "interrupted"}}
            except Exception as exc:  # keep serving whatever a request did
                reply = {"ok": False, "error": {"kind": "internal", "message": repr(exc)}}
            if os.getpid() != self.pid:
                os._exit(0)  # a process the model's code forked: it must not answer
            try:
                wire.send(self.chan, reply)
            except OSError:
                os._exit(0)

    def _on_interrupt(self, signum: int, frame: Any) -> None:
        if self.running:
            raise KeyboardInterrupt

    def handle(self, msg: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        op = msg.get("op")
        if op == "python":
            return self.run_python(msg)
        if op == "bash":
            return self.run_bash(msg)
        if op == "fork":
            return self.fork(fds[0])
        if op == "write_file":
            return self.write_file(msg["path"], base64.b64decode(msg["data"]))
        if op == "read_file":
            return self.read_file(msg["path"], int(msg["max_bytes"]))
        if op == "list_files":
            return self.list_files()
        if op == "ping":
            return {"ok": True, "pid": os.getpid()}
        return {"ok": False, "error": {"kind": "internal", "message": f"unknown op {op!r}"}}

    # ------------------------------------------------------------------ python

    def run_python(self, msg: dict[str, Any]) -> dict[str, Any]:
        code: str = msg["code"]
        budget = OutputBudget(int(msg.get("max_output", 100_000)))
        out, err = CappedWriter(budget, "<stdout>"), CappedWriter(budget, "<stderr>")
        display = self.display = Display(
            int(msg.get("max_images", 16)), int(msg.get("max_image_bytes", 8 << 20))
        )
        self.cells += 1
        filename = f"<cell-{self.cells}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        saved = sys.stdout, sys.stderr, sys.stdin
        sys.stdout, sys.stderr = out, err
        sys.stdin = io.StringIO(msg.get("stdin") or "")
        result: str | None = None
        error: dict[str, Any] | None = None
        started = time.perf_counter()
        self.running = True
        try:
            result = self._execute(code, filename, display, int(msg.get("max_result", 20_000)))
        except OutputLimitError:
            error = {
                "kind": "output_limit",
                "message": f"the output passed the limit of {budget.limit} characters",
            }
        except KeyboardInterrupt:
            error = {"kind": "timeout", "message": "interrupted: the call ran out of time"}
        except MemoryError:
            error = {"kind": "memory_limit", "message": "MemoryError: the code ran out of memory"}
        except SyntaxError as exc:
            error = _syntax_error(exc)
        except SystemExit as exc:
            if exc.code not in (None, 0):
                error = {
                    "kind": "runtime_error",
                    "message": f"SystemExit: {exc.code}",
                    "type": "SystemExit",
                }
        except BaseException as exc:
            error = _runtime_error(exc)
        finally:
            self.running = False
            sys.stdout, sys.stderr, sys.stdin = saved
        try:
            display.flush_figures()
        except Exception as exc:
            err.add(f"\n[figure could not be rendered: {exc!r}]\n")
        if os.getpid() != self.pid:
            os._exit(0)  # a process the model's code forked: it must not answer
        self._reap_children()
        out.add(self._drain_spill())
        threading = sys.modules.get("threading")
        return {
            "threads": threading.active_count() if threading else 1,
            "ok": error is None,
            "stdout": out.getvalue(),
            "stderr": err.getvalue(),
            "result": result,
            "images": display.images,
            "images_dropped": display.dropped,
            "error": error,
            "truncated": budget.exceeded,
            "elapsed_ms": (time.perf_counter() - started) * 1000,
        }

    def _execute(self, code: str, filename: str, display: Display, max_result: int) -> str | None:
        tree = ast.parse(code, filename, "exec")
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, filename, "exec"), self.namespace)
        if last is None:
            return None
        value = eval(compile(ast.Expression(last.value), filename, "eval"), self.namespace)
        if value is None:
            return None
        self.namespace["_"] = value
        if display.show(value):
            return None
        text = repr(value)
        return text if len(text) <= max_result else text[:max_result] + " …[truncated]"

    def _display(self, *objects: Any) -> None:
        """``display(obj)`` as in Jupyter: images and figures as images, the rest printed."""
        for obj in objects:
            if self.display is None or not self.display.show(obj):
                print(repr(obj))

    def _drain_spill(self) -> str:
        """What subprocesses wrote to the kernel's own stdout/stderr during the call."""
        size = os.lseek(self.spill, 0, os.SEEK_END)
        if size == 0:
            return ""
        os.lseek(self.spill, 0, os.SEEK_SET)
        data = os.read(self.spill, min(size, 1 << 20))
        os.ftruncate(self.spill, 0)
        os.lseek(self.spill, 0, os.SEEK_SET)
        return data.decode(errors="replace")

    def _reap_children(self) -> None:
        """Kill what the call left running (its child processes) and reap it."""
        for pid in processes.children(os.getpid()):
            if pid in self.forks:
                continue  # another session's kernel
            processes.kill_tree(pid)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)  # SIGKILLed: returns at once, and leaves no zombie
        self.forks.difference_update(processes.reap())

    # ------------------------------------------------------------------ bash

    def run_bash(self, msg: dict[str, Any]) -> dict[str, Any]:
        limit = int(msg.get("max_output", 100_000))
        timeout = float(msg.get("timeout_s", 30))
        state_dir = os.path.join(os.path.dirname(self.workspace), f".bash-{os.getpid()}")
        os.makedirs(state_dir, exist_ok=True)
        env = {**self.bash_env, "__TF_STATE": state_dir}
        cwd = self.bash_cwd if os.path.isdir(self.bash_cwd) else self.workspace
        started = time.perf_counter()
        proc = subprocess.Popen(
            [BASH, "-c", STATE_TRAP + msg["command"]],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        budget = OutputBudget(limit)
        streams = {
            proc.stdout.fileno(): CappedWriter(budget, "stdout"),
            proc.stderr.fileno(): CappedWriter(budget, "stderr"),
        }
        error: dict[str, Any] | None = None
        self.running = True
        try:
            error = _pump(streams, budget, started + timeout)
        except KeyboardInterrupt:
            error = {"kind": "timeout", "message": "interrupted: the call ran out of time"}
        finally:
            self.running = False
            processes.kill_group(proc.pid)
            code = proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        self._load_bash_state(state_dir)
        self._reap_children()
        out, err = streams.values()
        if error is None and code != 0:
            error = {"kind": "runtime_error", "message": f"exit status {code}"}
        return {
            "ok": error is None,
            "stdout": out.getvalue(),
            "stderr": err.getvalue(),
            "exit_code": code,
            "error": error,
            "truncated": budget.exceeded,
            "cwd": self.bash_cwd,
            "elapsed_ms": (time.perf_counter() - started) * 1000,
        }

    def _load_bash_state(self, state_dir: str) -> None:
        try:
            with open(os.path.join(state_dir, "cwd")) as f:
                self.bash_cwd = f.read().strip() or self.bash_cwd
            with open(os.path.join(state_dir, "env"), "rb") as f:
                pairs = [p.split(b"=", 1) for p in f.read().split(b"\0") if b"=" in p]
            env = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}
            for name in ("__TF_STATE", "SHLVL", "_", "OLDPWD", "PWD"):
                env.pop(name, None)
            self.bash_env = env
        except OSError:
            pass  # the command replaced the shell (exec) or removed the state: keep the old

    # ------------------------------------------------------------------ fork

    def fork(self, fd: int) -> dict[str, Any]:
        """Fork this kernel; the copy serves ``fd``. The copy is this kernel's child, which
        the cleanup after a call spares (and if this kernel ends first, the zygote adopts it).
        """
        new_workspace = jail.new_workspace(os.path.dirname(self.workspace))
        shutil.copytree(self.workspace, new_workspace, symlinks=True, dirs_exist_ok=True)
        pid = os.fork()
        if pid == 0:
            try:
                self._become_fork(fd, new_workspace)  # never returns
            finally:
                os._exit(1)
        os.close(fd)
        self.forks.add(pid)
        return {"ok": True, "pid": pid}

    def _become_fork(self, fd: int, workspace: str) -> None:
        self.forks = set()
        self.chan.close()
        self.chan = socket.socket(fileno=fd)
        self.pid = os.getpid()
        os.close(self.spill)  # the parent's; this copy gets its own
        self.spill = os.memfd_create("kernel-output", 0)
        os.dup2(self.spill, 1)
        os.dup2(self.spill, 2)
        old = self.workspace
        self.workspace = workspace
        self.bash_cwd = self.bash_cwd.replace(old, workspace, 1)
        os.chdir(workspace)
        for key in ("HOME", "TMPDIR", "MPLCONFIGDIR"):
            if key in os.environ:
                os.environ[key] = workspace
            if key in self.bash_env:
                self.bash_env[key] = self.bash_env[key].replace(old, workspace, 1)
        try:
            self.serve()
        finally:
            os._exit(0)

    # ------------------------------------------------------------------ files

    def _resolve(self, path: str) -> str:
        full = os.path.realpath(os.path.join(self.workspace, path))
        if full != self.workspace and not full.startswith(self.workspace + os.sep):
            raise PermissionError(f"{path!r} is outside the workspace")
        return full

    def write_file(self, path: str, data: bytes) -> dict[str, Any]:
        try:
            full = self._resolve(path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(data)
        except OSError as exc:
            return _file_error(exc)
        return {"ok": True, "path": os.path.relpath(full, self.workspace), "size": len(data)}

    def read_file(self, path: str, max_bytes: int) -> dict[str, Any]:
        try:
            full = self._resolve(path)
            size = os.path.getsize(full)
            if size > max_bytes:
                return {
                    "ok": False,
                    "error": {
                        "kind": "output_limit",
                        "message": f"{path} is {size} bytes, over the limit of {max_bytes}",
                    },
                }
            with open(full, "rb") as f:
                data = f.read(max_bytes + 1)
        except OSError as exc:
            return _file_error(exc)
        return {"ok": True, "size": len(data), "data": base64.b64encode(data).decode()}

    def list_files(self) -> dict[str, Any]:
        files = []
        for top, dirs, names in os.walk(self.workspace):
            dirs.sort()
            for name in sorted(names):
                full = os.path.join(top, name)
                try:
                    size = os.lstat(full).st_size
                except OSError:
                    continue
                files.append({"path": os.path.relpath(full, self.workspace), "size": size})
                if len(files) >= MAX_FILES_LISTED:
                    return {"ok": True, "files": files, "truncated": True}
        return {"ok": True, "files": files, "truncated": False}


# ---------------------------------------------------------------------- helpers


def _syntax_error(exc: SyntaxError) -> dict[str, Any]:
    line = (exc.text or "").rstrip("\n")
    caret = " " * max((exc.offset or 1) - 1, 0) + "^"
    where = f"line {exc.lineno}, column {exc.offset}"
    return {
        "kind": "syntax_error",
        "type": type(exc).__name__,
        "message": f"{type(exc).__name__}: {exc.msg} ({where})",
        "line": exc.lineno,
        "column": exc.offset,
        "detail": f"{line}\n{caret}" if line else None,
    }


def _runtime_error(exc: BaseException) -> dict[str, Any]:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<cell-")]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    lines += traceback.format_exception_only(type(exc), exc)
    return {
        "kind": "runtime_error",
        "type": type(exc).__name__,
        "message": "".join(traceback.format_exception_only(type(exc), exc)).strip(),
        "detail": "".join(lines)[-8000:],
        "line": frames[-1].lineno if frames else None,
    }


def _file_error(exc: OSError) -> dict[str, Any]:
    kind = (
        "permission_denied"
        if isinstance(exc, PermissionError)
        else ("not_found" if isinstance(exc, FileNotFoundError) else "runtime_error")
    )
    return {"ok": False, "error": {"kind": kind, "message": str(exc)}}


def _pump(
    streams: dict[int, CappedWriter], budget: OutputBudget, deadline: float
) -> dict[str, Any] | None:
    """Read both pipes until EOF, the output cap or the deadline."""
    open_fds = list(streams)
    while open_fds:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return {"kind": "timeout", "message": "the command ran out of time"}
        ready, _, _ = select.select(open_fds, [], [], remaining)
        for fd in ready:
            data = os.read(fd, 65536)
            if not data:
                open_fds.remove(fd)
                continue
            streams[fd].add(data.decode(errors="replace"))
            if budget.exceeded:
                return {
                    "kind": "output_limit",
                    "message": f"the output passed the limit of {budget.limit} characters",
                }
    return None

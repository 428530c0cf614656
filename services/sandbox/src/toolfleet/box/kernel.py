"""The kernel: one session's Python interpreter, running the model's code.

A kernel is forked by its family's supervisor with the heavy libraries already imported and
runs as the family's uid. It serves one channel to the supervisor, one request at a time:
run a cell in its persistent namespace (like a Jupyter kernel), or fork itself for a session
fork. Its stdout and stderr are pipes the supervisor reads; what it sends back on the channel
— the trailing expression's value, images, the exception — is its own report, which the
supervisor checks and bounds and the service labels as coming from the kernel. Nothing a
kernel says decides a verdict, a cap, a time or a file's contents.
"""

from __future__ import annotations
import __future__

import ast
import base64
import builtins
import contextlib
import io
import linecache
import os
import resource
import shutil
import signal
import socket
import sys
import traceback
from typing import TYPE_CHECKING, Any, cast

from toolfleet.box import children, wire

if TYPE_CHECKING:
    from toolfleet.box.messages import (
        CellReport,
        CellRequest,
        ErrorMsg,
        Hello,
        ImageMsg,
        KernelDone,
        KernelFork,
        ProgramRequest,
        ReapRequest,
    )

CURRENT: Kernel | None = None  # the kernel this process serves (for PIL's Image.show)
# what `from __future__ import ...` sets in a code object's flags
FUTURE_FLAGS = 0
for _feature in __future__.all_feature_names:
    FUTURE_FLAGS |= getattr(__future__, _feature).compiler_flag


def text_stream(fd: int) -> io.TextIOWrapper:
    """stdout/stderr over a pipe to the supervisor: line-buffered like a terminal; lone
    surrogates pass as bytes (the supervisor turns invalid UTF-8 into U+FFFD and says so)
    rather than failing the model's ``print``."""
    return open(fd, "w", buffering=1, encoding="utf-8", errors="surrogatepass", closefd=False)


class Kernel:
    """State and operations of one kernel process."""

    def __init__(self, chan: socket.socket, workspace: str) -> None:
        self.chan = chan
        self.workspace = workspace
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        self.cells = 0
        self.features = 0  # the cells' future imports so far: each cell compiles with them
        self.running = False
        self.display: Display | None = None
        self.namespace["display"] = self._display
        sys.stdout, sys.stderr = text_stream(1), text_stream(2)
        global CURRENT
        CURRENT = self

    def serve(self) -> None:
        """Answer requests until the channel closes."""
        signal.signal(signal.SIGINT, self._on_interrupt)
        # Where the supervisor cannot adopt orphans (gVisor), a forked session's kernel whose
        # parent kernel ends is in an orphaned process group and gets SIGHUP: not an end. A
        # handler, not SIG_IGN, so that programs the model runs get the default back at exec.
        signal.signal(signal.SIGHUP, lambda *_: None)
        pid = os.getpid()
        hello: Hello = {"op": "hello", "pid": pid}
        wire.send(self.chan, hello)
        while True:
            try:
                msg, fds = wire.recv(self.chan)
            except (wire.ChannelClosedError, OSError):
                os._exit(0)
            reply: CellReport | KernelDone
            try:
                op = msg.get("op")
                if op == "python":
                    reply = self.run_cell(cast("CellRequest", msg))
                elif op == "program":
                    self.become_program(cast("ProgramRequest", msg), fds)  # never returns
                elif op == "fork":
                    reply = self.fork(cast("KernelFork", msg)["workspace"], fds)
                elif op == "reap":
                    reaped = _reap_children(cast("ReapRequest", msg).get("pids") or [])
                    reply = {"op": "done", "reaped": reaped}
                else:
                    reply = {"op": "done", "error": {"kind": "internal", "message": "bad op"}}
            except KeyboardInterrupt:
                reply = {"op": "done", "error": {"kind": "timeout", "message": "interrupted"}}
            except Exception as exc:  # keep serving whatever a request did
                reply = {"op": "done", "error": {"kind": "internal", "message": repr(exc)}}
            if os.getpid() != pid:
                os._exit(0)  # a process the model's code forked: it must not answer
            try:
                wire.send(self.chan, reply)
            except OSError:
                os._exit(0)

    def become_program(self, msg: ProgramRequest, fds: list[int]) -> None:
        """Become a Python program (a stateless run in a fresh kernel that has run nothing of
        the model's): the channel closed, ``fds[0]`` as stdin, a lower memory limit if asked,
        then the source as ``python script args...`` would run it. Never returns; the
        supervisor, which traces this process, takes its exit status and output."""
        self.chan.close()
        if len(fds) != 1:
            os._exit(126)
        os.dup2(fds[0], 0)
        os.close(fds[0])
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        limit = int(msg.get("address_space") or 0)
        if limit > 0:
            with contextlib.suppress(ValueError, OSError):  # only ever lowered
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        os.chdir(str(msg["cwd"]))
        source, args = str(msg["source"]), [str(a) for a in msg.get("args") or []]
        children.run_python_main(str(msg["script"]), source, args)

    def _on_interrupt(self, signum: int, frame: Any) -> None:
        if self.running:
            raise KeyboardInterrupt

    # ------------------------------------------------------------------ cells

    def run_cell(self, msg: CellRequest) -> CellReport:
        """Run one cell; the report of its value, images and exception."""
        _reap_children([])  # what earlier cells left and the supervisor killed
        code: str = msg["code"]
        display = self.display = Display(int(msg["max_images"]), int(msg["max_image_bytes"]))
        self.cells += 1
        filename = f"<cell-{self.cells}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        saved_stdin = sys.stdin
        sys.stdin = io.StringIO(msg.get("stdin") or "")
        result: str | None = None
        error: ErrorMsg | None = None
        self.running = True
        try:
            result = self._execute(code, filename, display, int(msg["max_result"]))
        except KeyboardInterrupt:
            error = {"kind": "timeout", "message": "interrupted"}
        except MemoryError:
            error = {"kind": "memory_limit", "message": "MemoryError", "type": "MemoryError"}
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
            sys.stdin = saved_stdin
        try:
            display.flush_figures()
        except Exception as exc:
            print(f"[a figure could not be rendered: {exc!r}]", file=sys.stderr)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # the model's code replaced or closed it
                stream.flush()
        return {
            "op": "done",
            "result": result,
            "images": display.images,
            "shown": display.shown,
            "error": error,
        }

    def _execute(self, code: str, filename: str, display: Display, max_result: int) -> str | None:
        tree = ast.parse(code, filename, "exec")
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        assert last is None or isinstance(last, ast.Expr)
        body = compile(tree, filename, "exec", self.features, dont_inherit=True)
        # a cell's `from __future__ import ...` holds for the cells after it, as in Jupyter
        self.features |= body.co_flags & FUTURE_FLAGS
        exec(body, self.namespace)
        if last is None:
            return None
        expression = ast.Expression(last.value)
        value = eval(
            compile(expression, filename, "eval", self.features, dont_inherit=True), self.namespace
        )
        if value is None:
            return None
        self.namespace["_"] = value
        if display.show(value):
            return None
        text = repr(value)
        if len(text) <= max_result:
            return text
        cut = f"[cut: the value's repr is {len(text)} characters, the first {max_result} shown]"
        return f"{text[:max_result]} …{cut}"

    def _display(self, *objects: Any) -> None:
        """``display(obj)`` as in Jupyter: images and figures as images, the rest printed."""
        for obj in objects:
            if self.display is None or not self.display.show(obj):
                print(repr(obj))

    # ------------------------------------------------------------------ fork

    def fork(self, workspace: str, fds: list[int]) -> KernelDone:
        """Copy the workspace into ``workspace`` and fork; the copy serves the channel and
        output pipes in ``fds``."""
        if len(fds) != 3:
            raise ValueError("fork needs a channel and two pipes")
        # the forks of this one that ended are its children: collected here too, not only at
        # its next cell (a parent that is only ever forked kept them all, and the family's
        # process limit filled with zombies: no fork, and no process in any sibling, went)
        _reap_children([])
        shutil.copytree(self.workspace, workspace, symlinks=True, dirs_exist_ok=True)
        pid = os.fork()
        if pid == 0:
            try:
                self._become_fork(workspace, fds)  # never returns
            finally:
                os._exit(1)
        for fd in fds:
            os.close(fd)
        return {"op": "done", "pid": pid}

    def _become_fork(self, workspace: str, fds: list[int]) -> None:
        chan, out, err = fds
        self.chan.close()
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.close(out)
        os.close(err)
        self.chan = socket.socket(fileno=chan)
        old, self.workspace = self.workspace, workspace
        if os.getcwd() == old or os.getcwd().startswith(old + os.sep):
            os.chdir(workspace + os.getcwd()[len(old) :])
        for key in ("HOME", "TMPDIR", "MPLCONFIGDIR"):
            if os.environ.get(key, "").startswith(old):
                os.environ[key] = workspace + os.environ[key][len(old) :]
        self.serve()


class Display:
    """Collects a cell's rich outputs (PNG images), in order. An image over the byte limit is
    downscaled until it fits (and says so); past the count limit one more is kept so that
    the supervisor can say how many were dropped."""

    def __init__(self, max_images: int, max_image_bytes: int) -> None:
        self.images: list[ImageMsg] = []
        self.shown = 0
        self.max_images = max_images
        self.max_image_bytes = max_image_bytes

    def show(self, obj: Any) -> bool:
        """Display ``obj`` if it is an image or a figure; True when it was."""
        png = _png_of(obj, 1.0)
        if png is None:
            return False
        self.shown += 1
        if len(self.images) > self.max_images:
            return True
        data, width, height = png
        scale = 1.0
        for _ in range(6):
            if len(data) <= self.max_image_bytes:
                break
            scale *= max(0.1, min(0.9, (self.max_image_bytes / len(data)) ** 0.5 * 0.9))
            data, width, height = _png_of(obj, scale) or (data, width, height)
        image: ImageMsg = {
            "mime_type": "image/png",
            "data": base64.b64encode(data).decode(),
            "width": width,
            "height": height,
        }
        if scale < 1.0:
            image["downscaled_from"] = [png[1], png[2]]
        self.images.append(image)
        return True

    def flush_figures(self) -> None:
        """Display and close every open matplotlib figure."""
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return
        for num in plt.get_fignums():
            self.show(plt.figure(num))
        plt.close("all")


def _png_of(obj: Any, scale: float) -> tuple[bytes, int, int] | None:
    """``obj`` as PNG bytes and size, ``scale`` times its own size; None if not an image."""
    pil = sys.modules.get("PIL.Image")
    if pil is not None and isinstance(obj, pil.Image):
        image = (
            obj if obj.mode in ("RGB", "RGBA", "L", "LA", "P", "1", "I;16") else obj.convert("RGBA")
        )
        if scale < 1.0:
            size = (max(1, int(obj.width * scale)), max(1, int(obj.height * scale)))
            image = image.resize(size)
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue(), image.width, image.height
    figure_mod = sys.modules.get("matplotlib.figure")
    if figure_mod is not None and isinstance(obj, figure_mod.Figure):
        buf = io.BytesIO()
        obj.savefig(buf, format="png", bbox_inches="tight", dpi=obj.get_dpi() * scale)
        data = buf.getvalue()
        return data, int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None


def show_image(image: Any, *args: Any, **kwargs: Any) -> None:
    """PIL's ``Image.show``: display in the call's output."""
    if CURRENT is not None:
        CURRENT._display(image)


def _reap_children(killed: list[int]) -> int:
    """Collect the children the supervisor killed after a cell (and any other that ended)."""
    reaped = 0
    for pid in killed:
        with contextlib.suppress(ChildProcessError, TypeError):
            os.waitpid(int(pid), 0)
            reaped += 1
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped += 1


def _syntax_error(exc: SyntaxError) -> ErrorMsg:
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


def _runtime_error(exc: BaseException) -> ErrorMsg:
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

"""Programs in any offered language: the toolchain probe, the compile step and its cache,
and one run — shared by ``run_program``, ``/run_code`` (through it) and the judge.

Everything here happens through a family's supervisor (``op: run``): the compiler and the
program are processes it forks, confines and traces, and their exit statuses, times and
output are its records. What the service keeps of a compile (the cache) lives in the
service's memory, out of every family's reach; a cached program is written into the next
family as a file of that run.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import tarfile
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from toolfleet.box.artifacts import MAX_BYTES as STORE_BYTES
from toolfleet.core.protocol import ErrorKind
from toolfleet.core.tool import ToolError
from toolfleet.sandbox import languages
from toolfleet.sandbox.backend import Family, SandboxUnavailableError
from toolfleet.sandbox.languages import Language

if TYPE_CHECKING:
    from toolfleet.sandbox.service import Sandbox

log = logging.getLogger(__name__)

PYTHON_SCRIPT = "main.py"
PROBE_TIMEOUT_S = 60.0
PROBE_MEMORY_MB = 4096
PROBE_ATTEMPTS = 3
MAX_ARTIFACT_FILES = 1000
ANSWER_MARGIN_S = 10.0


@dataclass
class Compiled:
    """A compile's outcome: the compiler's verdict and output, and the program it made."""

    ok: bool
    exit_code: int | None
    signal: int | None
    timed_out: bool
    stdout: str
    stderr: str
    time_s: float
    files: dict[str, bytes] = field(default_factory=dict)  # the program (artifact files)
    cached: bool = False

    @property
    def size(self) -> int:
        """Bytes the cache holds for it."""
        return sum(len(v) for v in self.files.values()) + len(self.stdout) + len(self.stderr)

    def describe(self) -> dict[str, Any]:
        """The compile as the observation's ``data.compile``."""
        return {
            "status": "ok" if self.ok else ("time_limit" if self.timed_out else "error"),
            "exit_code": self.exit_code,
            "signal": self.signal,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "time_s": self.time_s,
            "cached": self.cached,
        }


class CompileCache:
    """Compiled programs by (language, toolchain version, command, source and files hash),
    least recently used first out past ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[str, Compiled] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> Compiled | None:
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return item

    def put(self, key: str, item: Compiled) -> None:
        if item.size > self.max_bytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        self._items[key] = item
        self.bytes += item.size
        while self.bytes > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self.bytes -= evicted.size


@dataclass
class Prepared:
    """A program ready to run in a family: where, how, and what its compile said."""

    language: str
    fields: dict[str, Any]  # the run request's argv/python fields, files, env
    cwd: str | None = None  # the directory it was compiled in (its files are there)
    compiled: Compiled | None = None
    artifacts: dict[str, bytes] = field(default_factory=dict)  # key -> a file ``stored`` names


MAX_HELD_KEYS = 4096  # per zygote, of the compiled files its supervisor holds


async def run(
    family: Family, timeout_s: float, artifacts: dict[str, bytes] | None = None, **fields: Any
) -> dict[str, Any]:
    """One ``run`` request to the family's supervisor (its reply). ``artifacts`` are the
    compiled files (key -> bytes) its ``stored`` field names: sent along only where the
    family's zygote is not known to hold them, and once more if it answers that it dropped
    them (``box/artifacts.py``)."""
    msg = {"op": "run", "timeout_s": timeout_s, **fields}
    held = family.zygote.stored
    try:
        for again in (False, True):
            new = {k: v for k, v in (artifacts or {}).items() if again or k not in held}
            if new:
                msg["store"] = encode(new)
            reply = await family.request(msg, timeout_s + ANSWER_MARGIN_S)
            if (reply.get("error") or {}).get("kind") != "artifact_missing":
                if len(held) > MAX_HELD_KEYS:
                    held.clear()  # forgotten: the supervisor says which it dropped
                # one larger than its whole store is never held: it goes with every run
                held.update(k for k, v in (artifacts or {}).items() if len(v) <= STORE_BYTES)
                break
            held.difference_update(artifacts or {})
        return reply
    except SandboxUnavailableError as exc:
        raise ToolError(
            ErrorKind.unavailable, f"the sandbox went away: {exc}", retryable=True
        ) from exc


def encode(files: dict[str, bytes]) -> dict[str, str]:
    """Files as a run request carries them (base64)."""
    return {k: base64.b64encode(v).decode() for k, v in files.items()}


class Programs:
    """The languages this service offers (probed at its start), the compile cache, and the
    steps of running a program."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.cache = CompileCache(sandbox.settings.compile_cache_mb << 20)
        self.versions: dict[str, str] = {"python": "runtime", "pytest": "runtime", "bash": "system"}

    @property
    def offered(self) -> list[str]:
        """The languages with a toolchain in the sandbox (python and bash always)."""
        return sorted(self.versions, key=str.lower)

    async def probe(self) -> None:
        """Ask the sandbox which toolchains it has (their versions): once, at start."""
        found: dict[str, str] = {}
        parallel = languages.probe_parallelism(self.sandbox.settings.processes)
        for _ in range(PROBE_ATTEMPTS):  # a probe cut short (a loaded machine) is asked again
            kernel = await self.sandbox.take_family(light=True)
            try:
                reply = await run(
                    kernel.family,
                    PROBE_TIMEOUT_S,
                    argv=["bash", "-c", languages.probe_script(parallel)],
                    max_output=1 << 16,
                    memory_bytes=PROBE_MEMORY_MB << 20,  # runtimes reserve address space
                )
            finally:
                await kernel.close()
            found.update(languages.parse_probe(str(reply.get("stdout") or "")))
            if reply.get("exit_code") == 0 and found:
                break
        self.versions.update(found)
        missing = sorted({lang.name for lang in languages.LANGUAGES} - set(found))
        log.info("sandbox languages: %s", ", ".join(self.offered))
        if missing:
            stderr = str(reply.get("stderr") or "")[-4000:]
            log.warning("sandbox: no toolchain for %s here; the probe said: %s", missing, stderr)

    def lookup(self, name: str) -> str:
        """The canonical name of an offered language, else a clear error."""
        canonical = languages.resolve(name)
        if canonical is None or canonical not in self.versions:
            raise ToolError(
                ErrorKind.invalid_arguments,
                f"language {name!r} is not supported here; available: " + ", ".join(self.offered),
            )
        return canonical

    # ------------------------------------------------------------------ the steps

    async def prepare(
        self,
        family: Family,
        name: str,
        code: str,
        files: dict[str, str],
        timeout_s: float,
        memory_mb: int,
    ) -> Prepared:
        """Compile the program (or take it from the cache) in ``family``; the run request's
        fields. ``files`` are base64 contents, written next to the source."""
        if name in languages.NATIVE.values():
            return self._native(name, code, files)
        language = languages.BY_NAME[name]
        run_fields: dict[str, Any] = {
            "argv": language.argv(language.run, code, memory_mb),
            "memory_bytes": (memory_mb + language.run_memory_floor_mb) << 20,
        }
        source = {language.source_name(code): base64.b64encode(code.encode()).decode()}
        if not language.compiled:
            return Prepared(name, {**run_fields, "files": {**files, **source}})
        key = self._key(language, code, files)
        compiled = self.cache.get(key)
        if compiled is not None:  # its files named by key: the supervisor may hold them
            hit = Compiled(**{**compiled.__dict__, "cached": True})
            names = {path: f"{key}/{path}" for path in compiled.files}
            artifacts = {names[path]: data for path, data in compiled.files.items()}
            return Prepared(name, {**run_fields, "files": files, "stored": names},
                            compiled=hit, artifacts=artifacts)  # fmt: skip
        limit = min(timeout_s, language.compile_timeout_s)
        reply = await run(
            family,
            limit,
            argv=language.argv(language.compile or (), code, memory_mb),
            files={**files, **source},
            memory_bytes=language.compile_memory_mb << 20,
            max_output=self.sandbox.settings.max_program_output_bytes,
            fetch=[language.artifact] if language.artifact else [],
        )
        compiled = _compiled(language, reply)
        if not compiled.timed_out:  # a timeout may be the machine's load: try again next time
            self.cache.put(key, compiled)
        return Prepared(name, run_fields, cwd=str(reply.get("cwd") or "") or None,
                        compiled=compiled)  # fmt: skip

    def _native(self, name: str, code: str, files: dict[str, str]) -> Prepared:
        if name == "python":  # the supervisor saves the code as the script itself
            return Prepared(name, {"python": code, "script": PYTHON_SCRIPT, "files": files})
        if name == "pytest":  # the runner is the program: the code is its test file
            source = {PYTHON_SCRIPT: base64.b64encode(code.encode()).decode()}
            fields = {"python": code, "script": PYTHON_SCRIPT, "files": {**files, **source}}
            return Prepared(name, fields)
        source = {"main.sh": base64.b64encode(code.encode()).decode()}
        return Prepared(name, {"argv": ["bash", "main.sh"], "files": {**files, **source}})

    def _key(self, language: Language, code: str, files: dict[str, str]) -> str:
        digest = hashlib.sha256()
        head = [language.name, self.versions.get(language.name), list(language.compile or ())]
        digest.update(json.dumps(head).encode())
        digest.update(hashlib.sha256(code.encode()).digest())
        digest.update(json.dumps(sorted(files.items())).encode())
        return digest.hexdigest()


def anchored(argv: list[str], directory: str, names: Iterable[str]) -> list[str]:
    """A compiled program's run command for a working directory other than the one its
    files are in (``directory``): the files it names (``./main``, ``main.js``) by their
    absolute paths, and ``.`` in a class path (``-cp .:lib.jar``) as ``directory``."""
    names = set(names)
    out: list[str] = []
    for i, part in enumerate(argv):
        bare = part.removeprefix("./")
        if bare in names:
            part = f"{directory}/{bare}"
        elif i and argv[i - 1] in ("-cp", "-classpath", "--class-path"):
            part = ":".join(directory if p == "." else p for p in part.split(":"))
        out.append(part)
    return out


def _compiled(language: Language, reply: dict[str, Any]) -> Compiled:
    """A compile's outcome from the supervisor's reply (exit status, output, the artifact)."""
    if reply.get("error") and reply.get("exit_code") is None and reply.get("signal") is None:
        raise ToolError(
            ErrorKind.internal,
            f"the compiler could not be run: {(reply.get('error') or {}).get('message')}",
            retryable=True,
        )
    fetched = reply.get("files") if isinstance(reply.get("files"), dict) else {}
    raw = fetched.get(language.artifact) if language.artifact else None
    artifact: dict[str, bytes] = {}
    if isinstance(raw, str):
        data = base64.b64decode(raw)
        tar = str(language.artifact).endswith(".tar")
        artifact = _unpack(data) if tar else {str(language.artifact): data}
    exit_code = reply.get("exit_code") if isinstance(reply.get("exit_code"), int) else None
    timed_out = bool(reply.get("timed_out"))
    made = bool(artifact) or language.artifact is None
    ok = made and not timed_out and (exit_code == 0 or language.compile_ok is not None)
    return Compiled(
        ok=ok,
        exit_code=exit_code,
        signal=reply.get("signal") if isinstance(reply.get("signal"), int) else None,
        timed_out=timed_out,
        stdout=str(reply.get("stdout") or ""),
        stderr=str(reply.get("stderr") or ""),
        time_s=round(float(reply.get("elapsed_ms") or 0) / 1000, 6),
        files=artifact,
    )


def _unpack(data: bytes) -> dict[str, bytes]:
    """The class files of a tar the compile step made (model-influenced bytes: only plain
    files with plain names are taken)."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            for member in archive.getmembers()[:MAX_ARTIFACT_FILES]:
                name = member.name.removeprefix("./")
                if not member.isfile() or "/" in name or name in ("", ".", ".."):
                    continue
                extracted = archive.extractfile(member)
                if extracted is not None:
                    found[name] = extracted.read()
    except (tarfile.TarError, OSError):
        return {}
    return found

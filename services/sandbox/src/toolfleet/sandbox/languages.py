"""The languages programs may be written in (``run_program``, ``/run_code``, the judge):
for each, SandboxFusion's name and aliases, the source file, the compile and run commands,
the toolchain probe and the limits compilers and runtimes need beyond model code's.

Pure data and parsing (no sandbox code): the gateway's routes import it to resolve
SandboxFusion's names. Which languages a service offers is decided at its start by probing the
toolchains *inside* the sandbox (``Sandbox.start``): a language is listed only when its
toolchain answered there.

Commands are argv lists run in the program's working directory; ``{main}`` is the class or
module name derived from the source (Java, Scala), ``{heap_mb}`` the program's memory limit
for runtimes that manage their own heap (JVM).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# g++ finds ``bits/stdc++.h.gch`` here before the header itself (deploy/toolchains.sh builds
# it with exactly CPP_FLAGS; a stale one is ignored by g++, which then parses the header).
PCH_DIR = "/usr/local/lib/toolfleet/pch"
CPP_FLAGS = ["-std=gnu++17", "-O2"]
# C and C++ link statically (no dynamic loader in every run), without symbols or unused
# sections: a C++ hello world is 1.4 MB, where a dynamic one starts ~1.4 ms slower.
STATIC = ("-static", "-s", "-Wl,--gc-sections")


@dataclass(frozen=True)
class Language:
    """One language: how its programs are compiled and run, and what they may use."""

    name: str  # SandboxFusion's name
    aliases: tuple[str, ...]
    source: str  # the file the code is saved as
    run: tuple[str, ...]
    probe: str  # a shell command printing the toolchain's version (first line kept)
    compile: tuple[str, ...] | None = None
    artifact: str | None = None  # the compile's output kept by the cache (a .tar: unpacked)
    compile_ok: str | None = None  # a file whose presence means success (else: exit 0)
    compile_memory_mb: int = 2048  # address space of the compiler's processes
    run_memory_floor_mb: int = 0  # runtimes that reserve address space (JVM, V8, mono)
    compile_timeout_s: float = 30.0
    main_pattern: str | None = None  # a regex whose group 1 names {main}
    default_main: str = "Main"

    @property
    def compiled(self) -> bool:
        """True when programs are compiled first (compile errors, the compile cache)."""
        return self.compile is not None

    def main_name(self, code: str) -> str:
        """The class/module the run command names ({main})."""
        if self.main_pattern:
            found = re.search(self.main_pattern, code, re.MULTILINE)
            if found:
                return found.group(1)
        return self.default_main

    def source_name(self, code: str) -> str:
        """The file the code is saved as (Java: the public class's name)."""
        return self.source.format(main=self.main_name(code))

    def argv(self, template: tuple[str, ...], code: str, heap_mb: int) -> list[str]:
        """A command with its placeholders filled."""
        main = self.main_name(code)
        return [part.format(main=main, heap_mb=heap_mb) for part in template]


JVM_RUN = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss64m", "-Xmx{heap_mb}m")
JVM_TOOL = ("-J-XX:+UseSerialGC", "-J-XX:TieredStopAtLevel=1", "-J-Xmx768m")
# go's build cache in the program's own directory (the family's /tmp is the host's without
# namespaces); GOPATH mode: single files, no module download ever.
GO_ENV = "GOCACHE=$PWD/.gocache GOPATH=$PWD/.gopath GO111MODULE=off exec"
# Binaries without their symbol tables and debug information (Go keeps the tables its
# panics print, Rust the locations its panics print): what the compile cache keeps and every
# run of a cached program writes into its sandbox is a tenth of the size (a Rust hello world:
# 11.6 MB -> 0.33 MB; Go: 1.8 -> 1.2 MB).
GO_LDFLAGS = "-ldflags='-s -w'"
RUST_STRIP = ("-C", "strip=symbols")
SCALA_LIBRARY = "/usr/share/scala-2.11/lib/scala-library.jar"  # Debian's scala
JAVA_MAIN = r"^\s*public\s+(?:final\s+)?class\s+([A-Za-z_]\w*)"
# The compile step wraps several outputs (class files) in one tar the cache keeps.
TAR_CLASSES = "tar -cf build.tar --exclude=build.tar *.class"

LANGUAGES: tuple[Language, ...] = (
    Language(
        "c",
        ("gcc",),
        "main.c",
        ("./main",),
        "gcc -dumpfullversion",
        compile=("gcc", "-std=gnu11", "-O2", "-pipe", *STATIC, "-o", "main", "main.c", "-lm"),
        artifact="main",
    ),
    Language(
        "cpp",
        ("c++", "g++", "cxx"),
        "main.cpp",
        ("./main",),
        "g++ -dumpfullversion",
        compile=("g++", *CPP_FLAGS, "-pipe", "-I", PCH_DIR, *STATIC, "-o", "main", "main.cpp"),
        artifact="main",
    ),
    Language(
        "java",
        (),
        "{main}.java",
        ("java", *JVM_RUN, "-cp", ".", "{main}"),
        "javac -version",
        compile=(
            "bash",
            "-c",
            f"javac {' '.join(JVM_TOOL)} -encoding UTF-8 -d . *.java && " + TAR_CLASSES,
        ),
        artifact="build.tar",
        run_memory_floor_mb=4096,
        compile_memory_mb=4096,
        main_pattern=JAVA_MAIN,
    ),
    Language(
        "go",
        ("golang",),
        "main.go",
        ("./main",),
        "go version",
        compile=("bash", "-c", f"{GO_ENV} go build {GO_LDFLAGS} -o main main.go"),
        artifact="main",
        run_memory_floor_mb=1024,  # the runtime reserves its page summaries up front
        compile_timeout_s=60.0,
    ),
    Language(
        "go_test",
        (),
        "main_test.go",
        ("./main.test", "-test.v"),
        "go version",
        compile=("bash", "-c", f"{GO_ENV} go test -c {GO_LDFLAGS} -o main.test main_test.go"),
        artifact="main.test",
        run_memory_floor_mb=1024,
        compile_timeout_s=60.0,
    ),
    Language(
        "rust",
        ("rs",),
        "main.rs",
        ("./main",),
        "rustc --version",
        compile=("rustc", "-O", "--edition", "2021", *RUST_STRIP, "-o", "main", "main.rs"),
        artifact="main",
    ),
    Language(
        "nodejs",
        ("javascript", "js", "node"),
        "main.js",
        ("node", "main.js"),
        "node --version",
        run_memory_floor_mb=1024,  # V8 reserves its code range
    ),
    Language(
        "typescript",
        ("ts",),
        "main.ts",
        ("node", "main.js"),
        "tsc --version",
        # Like SandboxFusion's runner, type errors do not stop the program: tsc's diagnostics
        # are the compile's output and the program runs when JavaScript was emitted.
        compile=(
            "tsc",
            "--target",
            "es2020",
            "--module",
            "commonjs",
            "--skipLibCheck",
            "--outDir",
            ".",
            "main.ts",
        ),
        artifact="main.js",
        compile_ok="main.js",
        run_memory_floor_mb=1024,
        compile_memory_mb=4096,
        compile_timeout_s=60.0,
    ),
    Language("php", (), "main.php", ("php", "main.php"), "php -r 'echo PHP_VERSION;'"),
    Language("ruby", ("rb",), "main.rb", ("ruby", "main.rb"), "ruby --version"),
    Language("lua", (), "main.lua", ("lua5.4", "main.lua"), "lua5.4 -v"),
    Language("perl", ("pl",), "main.pl", ("perl", "main.pl"), "perl -e 'print substr($^V, 1)'"),
    Language("R", ("r",), "main.R", ("Rscript", "main.R"), "Rscript --version"),
    Language(
        "csharp",
        ("c#", "cs"),
        "main.cs",
        # mono's own heap limit (its address space reservations are far larger)
        ("env", "MONO_GC_PARAMS=max-heap-size={heap_mb}m", "mono", "main.exe"),
        "mcs --version",
        compile=("mcs", "-optimize+", "-out:main.exe", "main.cs"),
        artifact="main.exe",
        run_memory_floor_mb=4096,
        compile_memory_mb=4096,
    ),
    Language(
        "scala",
        (),
        "main.scala",
        ("java", *JVM_RUN, "-cp", f".:{SCALA_LIBRARY}", "{main}"),
        "scalac -version",
        compile=("bash", "-c", f"scalac {' '.join(JVM_TOOL)} -d . main.scala && " + TAR_CLASSES),
        artifact="build.tar",
        run_memory_floor_mb=4096,
        compile_memory_mb=4096,
        main_pattern=r"^\s*object\s+([A-Za-z_]\w*)",
        compile_timeout_s=60.0,
    ),
    Language(
        "racket",
        (),
        "main.rkt",
        ("racket", "main.rkt"),
        "racket --version",
        run_memory_floor_mb=2048,
    ),
    Language(
        "verilog",
        ("iverilog",),
        "main.v",
        ("vvp", "-n", "main.vvp"),
        "iverilog -V 2>&1",
        compile=("iverilog", "-o", "main.vvp", "main.v"),
        artifact="main.vvp",
    ),
)

BY_NAME: dict[str, Language] = {}
for _language in LANGUAGES:
    for _name in (_language.name, *_language.aliases):
        BY_NAME[_name] = BY_NAME[_name.lower()] = _language

# Python and bash run on their own path (run_program's warm interpreter, bash): only names.
NATIVE = {
    "python": "python",
    "python3": "python",
    "pytest": "pytest",
    "bash": "bash",
    "sh": "bash",
}


def resolve(name: str) -> str | None:
    """The canonical name of a language or alias (SandboxFusion's), or None."""
    native = NATIVE.get(name.lower())
    if native is not None:
        return native
    language = BY_NAME.get(name) or BY_NAME.get(name.lower())
    return language.name if language else None


PROBE_TOOL_TIMEOUT_S = 30  # one toolchain's version command (a JVM on a loaded machine)


def probe_parallelism(processes: int) -> int:
    """How many version commands the probe runs at once: JVMs and node start tens of threads,
    which count against the family's process limit (``RLIMIT_NPROC``, the cgroup's pids)."""
    return max(1, min(3, processes // 32))


def probe_script(parallel: int = 3) -> str:
    """A shell script printing ``name<TAB>version`` for each toolchain that answers (run in
    the sandbox at the service's start), a few at a time — JVM tools take a while — then
    once more one by one for those that did not answer (all at once may pass the family's
    process limit)."""
    lines = []
    for pass_ in ("&", ""):
        for language in LANGUAGES:
            tool = language.probe.split()[0]
            out = f".probe-{language.name}"
            said = "" if pass_ else f' || echo "{language.name}: ${{v:-{tool} not found}}" >&2'
            lines.append(
                f"[ -s {out} ] || {{ command -v {tool} >/dev/null && "
                f"v=$(timeout {PROBE_TOOL_TIMEOUT_S} {language.probe} 2>&1 | head -n 1) && "
                "[[ $v == *[0-9]* ]] && "
                f"printf '%s\\t%s\\n' {language.name} \"$v\" > {out}{said}; }} {pass_}"
            )
            if pass_:
                lines.append(f"[ $(jobs -rp | wc -l) -ge {parallel} ] && wait -n")
        lines.append("wait")
    lines.append("cat .probe-* 2>/dev/null; true")
    return "\n".join(lines)


def parse_probe(stdout: str) -> dict[str, str]:
    """``name -> version`` from the probe script's output (only known names)."""
    found = {}
    for line in stdout.splitlines():
        name, _, version = line.partition("\t")
        if name in BY_NAME and version.strip():
            found[name] = _version(version.strip())
    return found


def _version(text: str) -> str:
    """The version number in a tool's banner, else the banner (cut)."""
    number = re.search(r"\d+(?:\.\d+)+(?:[-+~][\w.]+)?", text)
    return number.group(0) if number else text[:80]


# ---------------------------------------------------------------------- compile errors


@dataclass
class CompileError:
    """The first error a compiler reported: where, and in its words."""

    file: str | None
    line: int | None
    column: int | None
    message: str

    def where(self) -> str:
        """``file:line:col`` (as much as is known)."""
        parts = [p for p in (self.file, self.line, self.column) if p is not None]
        return ":".join(str(p) for p in parts)


_ERROR_PATTERNS = (
    # gcc, g++, go, javac, scalac, iverilog: file:line[:col]: [error:] message
    re.compile(
        r"^(?P<file>[^\s:()]+):(?P<line>\d+):(?:(?P<col>\d+):)?\s*"
        r"(?:(?:fatal )?error:\s*|(?P<other>(?!warning|note)))(?P<msg>.+)$",
        re.MULTILINE,
    ),
    # mcs, tsc: file(line,col): error CODE: message
    re.compile(
        r"^(?P<file>[^\s()]+)\((?P<line>\d+),(?P<col>\d+)\):\s*error\s*(?P<msg>.+)$",
        re.MULTILINE,
    ),
)
# rustc: "error[E0425]: message" then " --> file:line:col"
_RUST = re.compile(
    r"^error(?:\[\w+\])?:\s*(?P<msg>.+)\n\s*--> (?P<file>[^:\s]+):(?P<line>\d+):(?P<col>\d+)",
    re.MULTILINE,
)


def parse_compile_error(output: str) -> CompileError:
    """The first error in a compiler's output, located where the compiler says."""
    candidates = []
    for pattern in (*_ERROR_PATTERNS, _RUST):
        for found in pattern.finditer(output):
            if "warning" in found.group("msg")[:10].lower():
                continue
            candidates.append(found)
            break
    if candidates:
        first = min(candidates, key=lambda m: m.start())
        col = first.group("col")
        return CompileError(
            first.group("file").removeprefix("./"),
            int(first.group("line")),
            int(col) if col else None,
            first.group("msg").strip()[:500],
        )
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    message = next((line for line in lines if "error" in line.lower()), lines[0] if lines else "")
    return CompileError(None, None, None, message[:500] or "the compiler failed")

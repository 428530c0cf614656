"""The ``judge`` tool: one program, N test cases, one call — compiled once, the cases run in
parallel up to the sandbox's CPU share, each judged against its expected output (exact,
whitespace-insensitive, float tolerance) or by a checker program, with a verdict per case
(AC/WA/TLE/MLE/RE, CE for the whole) and a summary a reward uses directly.

Verdicts are made here, in the service, from the supervisor's records only: the exit status,
signal, time and memory from ``wait4``, the output it read from the program's pipes, and the
checker's exit status (the checker runs in a family of its own, which the judged program
never touches). With a built-in checker every case goes to the supervisor in one request
(``run_cases``), which compares each output too, only to start no case after a failure. The
expected outputs never enter a process of the program's family.
"""

from __future__ import annotations

import asyncio
import base64
import math
import os
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from toolfleet.box.verdicts import Overlap, case_run, compare, crowded
from toolfleet.core.protocol import ErrorDiagnostic, ErrorKind, TextPart, ToolSpec
from toolfleet.core.tool import CallContext, ToolArguments, ToolError, ToolResult
from toolfleet.sandbox.backend import Family
from toolfleet.sandbox.pool import later
from toolfleet.sandbox.programs import Prepared, anchored, run
from toolfleet.sandbox.run_program import compile_failure, with_languages
from toolfleet.sandbox.service import SandboxTool

Verdict = Literal["AC", "WA", "TLE", "MLE", "RE", "CE", "SKIPPED"]
MAX_CASES = 1000
SHOWN_CHARS = 2000  # of each case's stdout/stderr in the answer
# Out-of-memory in a runtime's own words (RLIMIT_AS makes allocation fail rather than the
# OOM killer strike): the failure was memory. Only ever turns one failure into another.
OOM_WORDS = (
    "memoryerror",
    "bad_alloc",
    "outofmemory",
    "out of memory",
    "cannot allocate memory",
    "memory allocation of",
    "allocation failed",
    "failed to allocate",
)


class JudgeCase(BaseModel):
    """One test case: the program's input and the output it must produce."""

    model_config = ConfigDict(extra="forbid")

    stdin: str = Field(default="", max_length=64 << 20, description="Standard input.")
    expected_stdout: str | None = Field(
        default=None,
        max_length=64 << 20,
        description="The expected output (with a checker program: its answer file).",
    )
    args: list[str] = Field(default_factory=list, description="Command-line arguments.")


class JudgeArgs(ToolArguments):
    """Arguments of the judge tool."""

    language: str = Field(max_length=40, description="The program's language.")
    code: str = Field(max_length=8_000_000, description="The program's source.")
    cases: list[JudgeCase] = Field(
        min_length=1, max_length=MAX_CASES, description="The test cases, in order."
    )
    checker: Literal["exact", "whitespace", "float", "program"] = Field(
        default="whitespace",
        description="How output is compared: exact (byte for byte), whitespace (the same "
        "tokens), float (tokens; numbers within float_tolerance), program (checker_code "
        "decides: run as `checker input.txt output.txt answer.txt`, exit status 0 = accepted).",
    )
    float_tolerance: float = Field(
        default=1e-6, ge=0, description="Absolute or relative tolerance of `float`."
    )
    checker_code: str | None = Field(
        default=None, max_length=1_000_000, description="The checker program's source."
    )
    checker_language: str = Field(default="python", description="The checker's language.")
    time_limit_s: float = Field(
        default=5.0, gt=0, le=60,
        description="Per case, of CPU time (user + system, its children's included); a case "
        "is stopped after 1.5 times it and 0.25 s of wall time.",
    )  # fmt: skip
    memory_limit_mb: int | None = Field(default=None, gt=0, description="Per case.")
    stop_on_failure: bool = Field(
        default=True, description="Stop at the first failing case (the rest: SKIPPED)."
    )
    files: dict[str, str] = Field(
        default_factory=dict, description="Files next to the program (utf-8 contents)."
    )

    @model_validator(mode="after")
    def _checker_code(self) -> JudgeArgs:
        if self.checker == "program" and not self.checker_code:
            raise ValueError("checker 'program' needs checker_code")
        if self.checker != "program" and any(c.expected_stdout is None for c in self.cases):
            raise ValueError(f"checker {self.checker!r} needs expected_stdout in every case")
        return self


class CaseResult(BaseModel):
    """One case's verdict and what the supervisor measured."""

    index: int
    verdict: Verdict
    time_s: float = 0.0
    cpu_s: float = 0.0
    memory_mb: float = 0.0
    exit_code: int | None = None
    signal: int | None = None
    stdout: str = Field(default="", description=f"The first {SHOWN_CHARS} characters.")
    stderr: str = Field(default="", description=f"The first {SHOWN_CHARS} characters.")
    message: str = Field(default="", description="Why it failed (or the checker's words).")
    notes: list[str] = Field(
        default_factory=list, description="What its figures alone do not say (a run again)."
    )


RERUN_NOTE = (
    "run again alone: the OOM killer of the sandbox's memory, or its wall-time stop before "
    "it had used its CPU time, had ended it while other cases ran at once; this is that run"
)


def wall_limit(time_limit_s: float) -> float:
    """A case's wall-time stop: its time limit is of CPU time (as judges count it), and the
    cases run at once (one more than the CPUs) share the CPUs, so a case may take ~1.5 times
    its CPU time in wall time. One stopped before it had used its CPU time while other cases
    ran is run again alone."""
    return 1.5 * time_limit_s + 0.25


class JudgeOutput(BaseModel):
    """The judgement: overall verdict, passed/total, per-case results, the compile."""

    verdict: Verdict = Field(description="AC when every case passed, else the first failure's.")
    passed: int
    total: int
    score: float = Field(description="passed / total.")
    cases: list[CaseResult]
    compile: dict[str, Any] | None = None
    wall_s: float = Field(description="Wall time of the whole judgement.")


class JudgeTool(SandboxTool[JudgeArgs]):
    """Judge a program against test cases in one call."""

    name = "judge"
    description = (
        "Judge a program against test cases: compiled once, cases run in parallel in a fresh "
        "sandbox, each compared with its expected output (exact, whitespace-insensitive, "
        "float tolerance, or a checker program). Returns a verdict per case "
        "(AC/WA/TLE/MLE/RE, CE when it does not compile) with time and memory, and "
        "passed/total. Stateless."
    )
    Arguments = JudgeArgs
    Output = JudgeOutput
    stateful = False
    cost = 1.0

    def spec(self) -> ToolSpec:
        """The schema lists the languages offered here (probed at start)."""
        return with_languages(super().spec(), self.sandbox.programs.offered)

    @property
    def parallel(self) -> int:
        """Cases run at once: two more than the CPUs a family may use (one more on docker,
        where forks cost more: under gVisor, four at once let a left-behind child print
        before its program's exit event was handled). While a finished case
        is reaped and answered and the next one started, that CPU runs an extra case (on 2
        CPUs, 3 at once judged 100 Python cases ~9% faster than 2; with the cases batched in
        the supervisor, 140 against 154 ms, and 4 at once ~133 ms; with cases cheaper than
        the supervisor's work on them, 4 at once 0.123-0.126 s against 3 at once
        0.131-0.133 s, 5 at once no faster than 4)."""
        s = self.sandbox.settings
        if s.judge_parallel:
            return s.judge_parallel
        if s.backend == "docker":  # forks cost more there (gVisor's most): one more only
            return max(1, math.floor(s.docker_cpus)) + 1
        return len(os.sched_getaffinity(0)) + 2

    async def call(self, args: JudgeArgs, ctx: CallContext) -> ToolResult:
        started = time.monotonic()
        programs = self.sandbox.programs
        language = programs.lookup(args.language)
        checker_language = programs.lookup(args.checker_language) if args.checker_code else None
        s = self.sandbox.settings
        memory_mb = min(args.memory_limit_mb or s.memory_mb, s.memory_mb)
        files = {k: base64.b64encode(v.encode()).decode() for k, v in args.files.items()}
        light = language != "python" or not self.sandbox.needs_full(args.code)
        kernel = await self.sandbox.take_family(light)
        checker_kernel = None
        try:
            prepared = await programs.prepare(
                kernel.family, language, args.code, files, self.sandbox.time_left(ctx), memory_mb
            )
            if prepared.compiled is not None and not prepared.compiled.ok:
                return _compile_error(language, prepared, len(args.cases), started)
            prepared = await self._settle(kernel.family, prepared, ctx)
            checker = None
            if args.checker == "program" and checker_language is not None:
                checker_kernel = await self.sandbox.take_family(light=True)
                checker = await programs.prepare(
                    checker_kernel.family, checker_language, args.checker_code or "", {},
                    self.sandbox.time_left(ctx), s.memory_mb,
                )  # fmt: skip
                if checker.compiled is not None and not checker.compiled.ok:
                    raise ToolError(
                        ErrorKind.invalid_arguments,
                        "the checker does not compile: "
                        + (checker.compiled.stderr or checker.compiled.stdout)[:2000],
                    )
                checker = await self._settle(checker_kernel.family, checker, ctx)
            base = _case_fields(prepared, files, memory_mb, s.max_program_output_bytes)
            results = await self._cases(args, ctx, kernel.family, base, memory_mb,
                                        checker_kernel.family if checker_kernel else None,
                                        checker)  # fmt: skip
        finally:
            later(kernel.close())
            if checker_kernel is not None:
                later(checker_kernel.close())
        compiled = prepared.compiled.describe() if prepared.compiled else None
        return _summary(results, compiled, started)

    async def _settle(self, family: Family, prepared: Prepared, ctx: CallContext) -> Prepared:
        """A compiled program's files written once into a directory of the family (its
        cases run it from there, each in a fresh directory of its own)."""
        given = prepared.fields.get("files") or prepared.fields.get("stored")
        if prepared.cwd or "argv" not in prepared.fields or not given:
            return prepared
        if prepared.compiled is None:
            return prepared  # interpreted: each case gets a fresh directory with the source
        reply = await run(family, min(30.0, self.sandbox.time_left(ctx)), prepared.artifacts,
                          argv=["true"], files=prepared.fields.get("files") or {},
                          stored=prepared.fields.get("stored") or {})  # fmt: skip
        fields = {k: v for k, v in prepared.fields.items() if k not in ("files", "stored")}
        return Prepared(prepared.language, fields, cwd=str(reply.get("cwd")),
                        compiled=prepared.compiled)  # fmt: skip

    async def _cases(
        self,
        args: JudgeArgs,
        ctx: CallContext,
        family: Family,
        base: dict[str, Any],
        memory_mb: int,
        checker_family: Family | None,
        checker: Prepared | None,
    ) -> list[CaseResult]:
        if checker is None:
            return await self._batch(args, ctx, family, base, memory_mb)
        gate = asyncio.Semaphore(self.parallel)
        failed = asyncio.Event()
        results: list[CaseResult | None] = [None] * len(args.cases)
        overlap = Overlap()
        shared: list[int] = []  # ended by what the cases running at once share: again, alone

        async def one(index: int, case: JudgeCase, alone: bool = False) -> None:
            async with gate:
                if failed.is_set() and args.stop_on_failure:
                    return
                left = self.sandbox.time_left(ctx)
                if left < 0.2:
                    results[index] = CaseResult(
                        index=index, verdict="SKIPPED", message="the judge ran out of time"
                    )
                    return
                limit = min(wall_limit(args.time_limit_s), left)
                overlap.start(index)
                try:
                    reply = await run(family, limit, **case_run(base, case.stdin, case.args))
                finally:
                    among_others = overlap.end(index)
                if among_others and not alone and crowded(reply, args.time_limit_s):
                    shared.append(index)
                    return
                result = _verdict(index, reply, memory_mb, args.time_limit_s)
                if result.verdict == "AC":
                    result = await self._check(args, ctx, index, case, reply, result,
                                               checker_family, checker)  # fmt: skip
                if alone:
                    result.notes.insert(0, RERUN_NOTE)
                results[index] = result
                if result.verdict != "AC":
                    failed.set()

        await asyncio.gather(*(one(i, c) for i, c in enumerate(args.cases)))
        for index in sorted(shared):  # one at a time, nothing else running
            await one(index, args.cases[index], alone=True)
        return [
            r or CaseResult(index=i, verdict="SKIPPED", message="an earlier case failed")
            for i, r in enumerate(results)
        ]

    async def _batch(
        self,
        args: JudgeArgs,
        ctx: CallContext,
        family: Family,
        base: dict[str, Any],
        memory_mb: int,
    ) -> list[CaseResult]:
        """Every case in one request to the family's supervisor, which runs them
        (``parallel`` at once), compares each output with the expected one to stop at the
        first failure, and answers once with every case's record: no request and reply per
        case between the service and the sandbox. The verdicts are made here, as for a
        case run alone."""
        budget = self.sandbox.time_left(ctx)
        cases = [{"stdin": c.stdin, "args": c.args, "expected": c.expected_stdout or ""}
                 for c in args.cases]  # fmt: skip
        reply = await run(
            family, budget, op="run_cases", cases=cases, parallel=self.parallel,
            stop_on_failure=args.stop_on_failure, compare=args.checker,
            tolerance=args.float_tolerance, time_limit_s=args.time_limit_s,
            wall_limit_s=wall_limit(args.time_limit_s), budget_s=budget,
            shown_chars=SHOWN_CHARS, **base,
        )  # fmt: skip
        records = reply.get("cases")
        if not isinstance(records, list) or len(records) != len(args.cases):
            message = str((reply.get("error") or {}).get("message") or "the judge failed")
            raise ToolError(ErrorKind.internal, message, retryable=True)
        results = []
        for index, record in enumerate(records):
            if not isinstance(record, dict) or "skipped" in record:
                why = record.get("skipped") if isinstance(record, dict) else None
                results.append(CaseResult(index=index, verdict="SKIPPED",
                                          message=str(why or "not run")))  # fmt: skip
                continue
            result = _verdict(index, record, memory_mb, args.time_limit_s)
            if result.verdict == "AC":  # ran to exit 0: its output compared by the supervisor
                accepted, why = _compared(record)
                result = result.model_copy(
                    update={"verdict": "AC" if accepted else "WA", "message": why}
                )
            if record.get("rerun_alone"):
                result.notes.insert(0, RERUN_NOTE)
            results.append(result)
        return results

    async def _check(
        self,
        args: JudgeArgs,
        ctx: CallContext,
        index: int,
        case: JudgeCase,
        reply: dict[str, Any],
        result: CaseResult,
        checker_family: Family | None,
        checker: Prepared | None,
    ) -> CaseResult:
        """Compare the output (its full text, as the supervisor read it)."""
        output = str(reply.get("stdout") or "")
        if reply.get("output_limit"):
            return result.model_copy(
                update={"verdict": "WA", "message": "the output passed the limit and was cut"}
            )
        if checker is None or checker_family is None:
            ok, message = compare(args.checker, output, case.expected_stdout or "",
                                  args.float_tolerance)  # fmt: skip
            return result.model_copy(update={"verdict": "AC" if ok else "WA", "message": message})
        names = [f"case-{index}.{part}" for part in ("in", "out", "ans")]
        texts = [case.stdin, output, case.expected_stdout or ""]
        files = {
            n: base64.b64encode(t.encode()).decode() for n, t in zip(names, texts, strict=True)
        }
        fields: dict[str, Any] = {
            **checker.fields,
            "files": {**checker.fields.get("files", {}), **files},
            "max_output": 1 << 16,
        }
        if checker.cwd:
            fields["cwd"] = checker.cwd
        if "python" in fields:
            fields["args"] = names
        else:
            fields["argv"] = [*fields["argv"], *names]
        limit = min(max(args.time_limit_s, 10.0), self.sandbox.time_left(ctx))
        verdict = await run(checker_family, limit, **fields)
        words = (str(verdict.get("stdout") or "") + str(verdict.get("stderr") or "")).strip()
        accepted = verdict.get("exit_code") == 0 and not verdict.get("timed_out")
        if not accepted and verdict.get("exit_code") is None:
            how = "timeout" if verdict.get("timed_out") else "killed"
            words = f"the checker failed ({how}) {words}"
        return result.model_copy(
            update={"verdict": "AC" if accepted else "WA", "message": words[:SHOWN_CHARS]}
        )


def _case_fields(
    prepared: Prepared, files: dict[str, str], memory_mb: int, max_output: int
) -> dict[str, Any]:
    """What every case's run request holds but its stdin and arguments. No ``cwd``: the
    supervisor gives each case a new, empty working directory (a name no earlier case can
    have made), so what one case writes there is never another's input; the program's own
    files go there with it — a compiled program's binary is not copied: it is run by its
    path in the directory it was settled in."""
    fields: dict[str, Any] = {"memory_bytes": memory_mb << 20, **prepared.fields,
                              "max_output": max_output}  # fmt: skip
    fields.pop("cwd", None)
    if "python" in fields:
        fields["case_server"] = True  # its cases forked by one process that loaded it
    if prepared.compiled is not None and prepared.cwd:
        names = prepared.compiled.files or {}
        fields["argv"] = anchored(fields["argv"], prepared.cwd, names)
        fields["files"] = files  # the inputs it may read from its working directory
    return fields


def _compared(record: dict[str, Any]) -> tuple[bool, str]:
    """What the supervisor found comparing a case's whole output with the expected one."""
    if record.get("output_limit"):
        return False, "the output passed the limit and was cut"
    compared = record.get("compared")
    if not (isinstance(compared, list) and len(compared) == 2):
        return False, "the output was not compared"
    return compared[0] is True, str(compared[1])[:SHOWN_CHARS]


def _verdict(index: int, reply: dict[str, Any], memory_mb: int, time_limit_s: float) -> CaseResult:
    """A case's verdict from the supervisor's records: AC here means it ran to exit 0 (the
    output is compared after)."""
    if reply.get("error") and reply.get("exit_code") is None and reply.get("signal") is None:
        message = str((reply.get("error") or {}).get("message") or "the run failed")
        raise ToolError(ErrorKind.internal, message, retryable=True)
    exit_code = reply.get("exit_code") if isinstance(reply.get("exit_code"), int) else None
    signum = reply.get("signal") if isinstance(reply.get("signal"), int) else None
    stderr = str(reply.get("stderr") or "")
    rss_mb = int(reply.get("max_rss_bytes") or 0) / (1 << 20)
    failed = exit_code != 0
    verdict: Verdict
    if reply.get("timed_out") or float(reply.get("cpu_ms") or 0) > time_limit_s * 1000:
        verdict, message = "TLE", "time limit exceeded"
    elif reply.get("memory_limit") or (
        failed and (rss_mb >= 0.95 * memory_mb or any(w in stderr.lower() for w in OOM_WORDS))
    ):
        verdict, message = "MLE", f"memory limit exceeded ({memory_mb} MiB)"
    elif failed:
        verdict = "RE"
        message = f"killed by signal {signum}" if signum else f"exit status {exit_code}"
    else:
        verdict, message = "AC", ""
    return CaseResult(
        index=index,
        verdict=verdict,
        time_s=round(float(reply.get("elapsed_ms") or 0) / 1000, 6),
        cpu_s=round(float(reply.get("cpu_ms") or 0) / 1000, 6),
        memory_mb=round(rss_mb, 2),
        exit_code=exit_code,
        signal=signum,
        stdout=str(reply.get("stdout") or "")[:SHOWN_CHARS],
        stderr=stderr[:SHOWN_CHARS],
        message=message,
        notes=[str(n) for n in reply.get("notes") or []],
    )


def _summary(
    results: list[CaseResult], compiled: dict[str, Any] | None, started: float
) -> ToolResult:
    passed = sum(r.verdict == "AC" for r in results)
    first = next((r for r in results if r.verdict not in ("AC", "SKIPPED")), None)
    overall: Verdict = "AC" if passed == len(results) else (first.verdict if first else "SKIPPED")
    output = JudgeOutput(
        verdict=overall,
        passed=passed,
        total=len(results),
        score=passed / len(results),
        cases=results,
        compile=compiled,
        wall_s=round(time.monotonic() - started, 6),
    )
    text = f"{overall}: {passed}/{len(results)} passed"
    if first is not None:
        text += f"; case {first.index}: {first.verdict}" + (
            f" ({first.message})" if first.message else ""
        )
    return ToolResult(content=[TextPart(text=text)], data=output.model_dump())


def _compile_error(language: str, prepared: Prepared, total: int, started: float) -> ToolResult:
    failure = compile_failure(language, prepared.compiled)  # type: ignore[arg-type]
    output = JudgeOutput(
        verdict="CE",
        passed=0,
        total=total,
        score=0.0,
        cases=[CaseResult(index=i, verdict="CE") for i in range(total)],
        compile=prepared.compiled.describe() if prepared.compiled else None,
        wall_s=round(time.monotonic() - started, 6),
    )
    error: ErrorDiagnostic | None = failure.error
    return ToolResult(content=failure.content, data=output.model_dump(), error=error)

"""The judge (tool and POST /v1/judge) on the local backend: verdicts of every kind, the
comparison modes, a checker program, stop at the first failure, and verdicts a program
cannot forge."""

from __future__ import annotations

import pytest
import pytest_asyncio
from toolfleet.core.registry import ToolRegistry
from toolfleet.sandbox import tools_for
from toolfleet.sandbox.judge import compare
from toolfleet.sandbox.settings import SandboxSettings

from tests.helpers import gateway
from tests.sandbox import programs as P

pytestmark = pytest.mark.asyncio(loop_scope="module")

SETTINGS = dict(pool_size=0, light_pool_size=2, memory_mb=256, processes=64)
SUM_CASES = [{"stdin": f"{i} {i * 7}\n", "expected_stdout": f"{i * 8}\n"} for i in range(10)]
PY_SUM = "a, b = map(int, input().split())\nprint(a + b)\n"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client():
    registry = ToolRegistry(tools_for(SandboxSettings(**SETTINGS)))
    async with gateway(registry) as c:
        yield c


async def judge(client, **body):
    body.setdefault("time_limit_s", 10)
    response = await client.post("/v1/judge", json={"timeout_s": 240, **body})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("language", ["cpp", "python", "java"])
async def test_accepted(client, language):
    code = PY_SUM if language == "python" else P.SUM[language]
    obs = await judge(client, language=language, code=code, cases=SUM_CASES)
    data = obs["data"]
    assert data["verdict"] == "AC", obs
    assert (data["passed"], data["total"], data["score"]) == (10, 10, 1.0)
    assert all(c["verdict"] == "AC" and c["time_s"] > 0 for c in data["cases"])
    # a case that ended is no leftover of another's (their sweeps), nor charged to it
    assert not any(c["notes"] for c in data["cases"]), data["cases"]
    assert obs["content"][0]["text"].startswith("AC: 10/10")


async def test_wrong_answer_stops_at_the_first_failure(client):
    code = "a, b = map(int, input().split())\nprint(a + b + (a == 3))\n"
    obs = await judge(client, language="python", code=code, cases=SUM_CASES)
    data = obs["data"]
    assert data["verdict"] == "WA" and data["passed"] < 10
    assert data["cases"][3]["verdict"] == "WA"
    assert "expected '24', got '25'" in data["cases"][3]["message"]
    assert {c["verdict"] for c in data["cases"][4:]} <= {"SKIPPED", "AC"}
    go_on = await judge(client, language="python", code=code, cases=SUM_CASES,
                        stop_on_failure=False)  # fmt: skip
    assert go_on["data"]["passed"] == 9
    assert [c["verdict"] for c in go_on["data"]["cases"]].count("WA") == 1


async def test_time_memory_runtime_and_compile_verdicts(client):
    cases = SUM_CASES[:2]
    tle = await judge(client, language="cpp", code=P.LOOP["cpp"], cases=cases, time_limit_s=1)
    assert tle["data"]["verdict"] == "TLE"
    assert tle["data"]["cases"][0]["time_s"] >= 1
    mle = await judge(client, language="cpp", code=P.MEMORY["cpp"], cases=cases,
                      memory_limit_mb=128)  # fmt: skip
    assert mle["data"]["verdict"] == "MLE", mle["data"]["cases"][0]
    re = await judge(client, language="c", code=P.RUNTIME_ERROR["c"], cases=cases)
    assert re["data"]["verdict"] == "RE" and re["data"]["cases"][0]["exit_code"] == 3
    crash = await judge(client, language="cpp", cases=cases,
                        code="int main() { volatile int *p = nullptr; return *p; }")  # fmt: skip
    assert crash["data"]["verdict"] == "RE" and crash["data"]["cases"][0]["signal"] == 11
    ce = await judge(client, language="cpp", code=P.COMPILE_ERROR["cpp"], cases=cases)
    assert ce["data"]["verdict"] == "CE" and ce["data"]["passed"] == 0
    assert ce["error"]["kind"] == "compile_error"
    assert {c["verdict"] for c in ce["data"]["cases"]} == {"CE"}


LEFTOVERS = {
    # a file left in the working directory by an earlier case would change the answer
    "c": "#include <stdio.h>\n#include <unistd.h>\nint main(void) {\n"
    '  int n = 0, d = 0; scanf("%d", &n);\n'
    '  if (access("left.txt", F_OK) == 0) { puts("leftover"); return 0; }\n'
    '  FILE *f = fopen("left.txt", "w"); fputs("x", f); fclose(f);\n'
    '  FILE *g = fopen("data.txt", "r"); if (g) fscanf(g, "%d", &d);\n'
    '  printf("%d\\n", n + d);\n}\n',
    "python": "import os\nn = int(input())\nif os.path.exists('left.txt'):\n"
    "    print('leftover')\nelse:\n    open('left.txt', 'w').write('x')\n"
    "    print(n + int(open('data.txt').read()))\n",
}


@pytest.mark.parametrize("language", sorted(LEFTOVERS))
async def test_each_case_has_a_fresh_working_directory_with_the_files(client, language):
    cases = [{"stdin": f"{i}\n", "expected_stdout": f"{i + 100}\n"} for i in range(6)]
    for _ in range(2):  # compiled, then from the compile cache
        obs = await judge(client, language=language, code=LEFTOVERS[language], cases=cases,
                          files={"data.txt": "100"}, stop_on_failure=False)  # fmt: skip
        assert obs["data"]["verdict"] == "AC", obs["data"]["cases"]


async def test_comparison_modes():
    assert compare("exact", "1 2\n", "1 2\n", 0)[0]
    assert not compare("exact", "1 2", "1 2\n", 0)[0]
    assert compare("whitespace", " 1   2 \n\n", "1 2\n", 0)[0]
    assert not compare("whitespace", "1 2 3", "1 2", 0)[0]
    assert compare("float", "0.3333333", "0.333333333", 1e-6)[0]
    assert compare("float", "1000000.5", "1000000.0", 1e-6)[0]  # relative
    assert not compare("float", "0.34", "0.33", 1e-6)[0]
    assert not compare("float", "abc", "0.33", 1e-6)[0]


async def test_float_tolerance_through_the_judge(client):
    code = "print(1 / 3)\n"
    cases = [{"stdin": "", "expected_stdout": "0.333333"}]
    strict = await judge(client, language="python", code=code, cases=cases, checker="exact")
    assert strict["data"]["verdict"] == "WA"
    loose = await judge(client, language="python", code=code, cases=cases, checker="float",
                        float_tolerance=1e-5)  # fmt: skip
    assert loose["data"]["verdict"] == "AC"


CHECKER = """
import sys
inp, out, ans = (open(p).read() for p in sys.argv[1:4])
n = int(inp)
got = list(map(int, out.split()))
# any pair of positive integers that sums to n
ok = len(got) == 2 and min(got) > 0 and sum(got) == n
print("ok" if ok else f"bad pair {got}")
sys.exit(0 if ok else 1)
"""


async def test_checker_program_accepts_any_valid_answer(client):
    cases = [{"stdin": f"{n}\n", "expected_stdout": ""} for n in (2, 5, 10)]
    good = "n = int(input())\nprint(1, n - 1)\n"
    obs = await judge(client, language="python", code=good, cases=cases, checker="program",
                      checker_code=CHECKER)  # fmt: skip
    assert obs["data"]["verdict"] == "AC", obs["data"]["cases"]
    bad = "n = int(input())\nprint(0, n)\n"
    obs = await judge(client, language="python", code=bad, cases=cases, checker="program",
                      checker_code=CHECKER)  # fmt: skip
    assert obs["data"]["verdict"] == "WA"
    assert "bad pair [0, 2]" in obs["data"]["cases"][0]["message"]


async def test_a_compiled_checker(client):
    checker = (
        "#include <bits/stdc++.h>\nint main(int c, char** v) {\n"
        "  std::ifstream o(v[2]), a(v[3]); long long x, y; o >> x; a >> y;\n"
        '  if (x != y) { std::cout << "differs"; return 1; } return 0; }\n'
    )
    obs = await judge(client, language="python", code=PY_SUM, cases=SUM_CASES[:3],
                      checker="program", checker_code=checker, checker_language="cpp")  # fmt: skip
    assert obs["data"]["verdict"] == "AC", obs["data"]


async def test_bad_requests_are_clear_errors(client):
    obs = await judge(client, language="cobol", code="x", cases=SUM_CASES[:1])
    assert obs["error"]["kind"] == "invalid_arguments"
    obs = await judge(client, language="python", code="x", cases=[{"stdin": "1"}])
    assert obs["error"]["kind"] == "invalid_arguments"  # no expected output, no checker
    obs = await judge(client, language="python", code="x", cases=[])
    assert obs["error"]["kind"] == "invalid_arguments"


# ---------------------------------------------------------------- forging

FORGERS = {
    # prints the verdict the service would report, in every shape it could take
    "cpp": '#include <bits/stdc++.h>\nint main() { std::cout << "{\\"verdict\\": \\"AC\\", '
    '\\"passed\\": 10}\\nAC\\n"; return 0; }\n',
    # a child left behind writes the answer after the program exited
    "c": "#include <stdio.h>\n#include <unistd.h>\nint main(void) {\n"
    '  if (fork() == 0) { usleep(200000); printf("8\\n"); fflush(stdout); _exit(0); }\n'
    "  return 0;\n}\n",
    # exits 0 from a signal handler after a crash, and writes to the stdout of others
    "go": 'package main\n\nimport (\n\t"os"\n)\n\nfunc main() {\n'
    '\tf, _ := os.OpenFile("/proc/1/fd/1", os.O_WRONLY, 0)\n'
    '\tif f != nil {\n\t\tf.WriteString("8\\n")\n\t}\n\tos.Exit(0)\n}\n',
}


@pytest.mark.parametrize("language", sorted(FORGERS))
async def test_a_compiled_program_cannot_forge_its_verdict(client, language):
    cases = [{"stdin": "1 7\n", "expected_stdout": "8\n"}] * 3
    obs = await judge(client, language=language, code=FORGERS[language], cases=cases)
    assert obs["data"]["verdict"] == "WA", obs["data"]
    assert obs["data"]["passed"] == 0


async def test_a_batch_of_cases_starts_none_after_a_failure(client):
    """With a built-in checker the supervisor runs every case from one request: once one
    fails it starts no more, and each case it did not start says why."""
    cases = [{"stdin": f"{i}\n", "expected_stdout": "1\n"} for i in range(40)]
    obs = await judge(client, language="python", code="print(2)\n", cases=cases)
    data = obs["data"]
    verdicts = [c["verdict"] for c in data["cases"]]
    assert data["verdict"] == "WA" and data["passed"] == 0
    assert 1 <= verdicts.count("WA") <= 8 and verdicts.count("SKIPPED") >= 32, verdicts
    assert {c["message"] for c in data["cases"] if c["verdict"] == "SKIPPED"} == {
        "an earlier case failed"
    }
    go_on = await judge(client, language="python", code="print(2)\n", cases=cases,
                        stop_on_failure=False)  # fmt: skip
    assert [c["verdict"] for c in go_on["data"]["cases"]] == ["WA"] * 40


async def test_a_batch_compares_whole_outputs_and_answers_them_cut(client):
    """Each output is compared whole by the supervisor; the answer holds the first 2000
    characters of each (one frame for every case of a batch, however much they print)."""
    code = "n = int(input())\nprint('x' * n)\n"
    cases = [{"stdin": "60000\n", "expected_stdout": "x" * 60000 + "\n"} for _ in range(30)]
    cases.append({"stdin": "60000\n", "expected_stdout": "x" * 59999 + "y\n"})
    obs = await judge(client, language="python", code=code, cases=cases)
    data = obs["data"]
    assert [c["verdict"] for c in data["cases"]] == ["AC"] * 30 + ["WA"]
    assert {len(c["stdout"]) for c in data["cases"]} == {2000}
    assert "token 1" in data["cases"][30]["message"]


HUNGRY = (  # 200 of its 256 MiB: three at once pass the family's 576 MiB
    "import time\nx = bytearray(200 << 20)\nfor i in range(0, len(x), 4096):\n    x[i] = 1\n"
    "time.sleep(0.3)\nprint(input())\n"
)


@pytest.mark.parametrize("checker", ["whitespace", "program"])
async def test_a_case_the_oom_killer_ended_among_others_runs_again_alone(checker):
    """Cases that run at once share their family's memory, while each may use its whole
    limit: one the family's OOM killer ended then is not an MLE. It runs again alone (and
    the cases after it one at a time), and its result says so."""
    settings = {**SETTINGS, "disk_mb": 64, "judge_parallel": 3}  # the family: 2 x 256 + 64
    same = "import sys\nout, ans = (open(p).read() for p in sys.argv[2:4])\nsys.exit(out != ans)\n"
    extra = {"checker": "program", "checker_code": same} if checker == "program" else {}
    cases = [{"stdin": f"{i}\n", "expected_stdout": f"{i}\n"} for i in range(6)]
    async with gateway(ToolRegistry(tools_for(SandboxSettings(**settings)))) as client:
        data = (await judge(client, language="python", code=HUNGRY, cases=cases, **extra))["data"]
    assert [c["verdict"] for c in data["cases"]] == ["AC"] * 6, data["cases"]
    rerun = [c for c in data["cases"] if c["notes"]]
    assert rerun, "three cases of 200 MiB at once in 576 MiB: the OOM killer ends one"
    assert all(c["notes"][0].startswith("run again alone") for c in rerun)


BUSY = (  # 0.75 s of CPU, then the answer
    "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.75:\n    pass\n"
    "print(input())\n"
)


@pytest.mark.parametrize("checker", ["whitespace", "program"])
async def test_the_time_limit_is_of_cpu_time_not_of_the_cpus_shared(client, checker):
    """Cases that run at once (one more than the CPUs) share the CPUs: a case within its
    time limit of CPU is AC however long the sharing made it in wall time; one over it is
    TLE."""
    same = "import sys\nout, ans = (open(p).read() for p in sys.argv[2:4])\nsys.exit(out != ans)\n"
    extra = {"checker": "program", "checker_code": same} if checker == "program" else {}
    cases = [{"stdin": f"{i}\n", "expected_stdout": f"{i}\n"} for i in range(6)]
    fits = await judge(client, language="python", code=BUSY, cases=cases, time_limit_s=1.0,
                       stop_on_failure=False, **extra)  # fmt: skip
    assert [c["verdict"] for c in fits["data"]["cases"]] == ["AC"] * 6, fits["data"]["cases"]
    over = await judge(client, language="python", code=BUSY, cases=cases[:2], time_limit_s=0.5,
                       stop_on_failure=False, **extra)  # fmt: skip
    assert [c["verdict"] for c in over["data"]["cases"]] == ["TLE"] * 2, over["data"]["cases"]


SLEEPER = "import time\ntime.sleep(5)\n"


@pytest.mark.parametrize("checker", ["whitespace", "program"])
async def test_only_a_case_that_ran_among_others_runs_again_alone(client, checker):
    """A case stopped before it used its CPU time runs again alone only if other cases ran
    while it did (alone, nothing shared ended it); and once a case run again alone fails as
    it had among others, the failures are the program's own: the others are not rerun."""
    same = "import sys\nout, ans = (open(p).read() for p in sys.argv[2:4])\nsys.exit(out != ans)\n"
    extra = {"checker": "program", "checker_code": same} if checker == "program" else {}
    one = await judge(client, language="python", code=SLEEPER, time_limit_s=0.2,
                      cases=[{"stdin": "", "expected_stdout": "\n"}], **extra)  # fmt: skip
    assert [(c["verdict"], c["notes"]) for c in one["data"]["cases"]] == [("TLE", [])]
    if checker == "program":
        return  # the checker path reruns every crowded case at the end, one at a time
    six = await judge(client, language="python", code=SLEEPER, time_limit_s=0.2,
                      cases=[{"stdin": "", "expected_stdout": "\n"}] * 6,
                      stop_on_failure=False)  # fmt: skip
    cases = six["data"]["cases"]
    assert [c["verdict"] for c in cases] == ["TLE"] * 6, cases
    assert sum(bool(c["notes"]) for c in cases) == 1, cases


BURN = (  # a child burns 0.6 s of CPU and hands the answer over; the program itself, none
    "import os, time\nr, w = os.pipe()\nif os.fork() == 0:\n{orphan}"
    "    t = time.process_time()\n    while time.process_time() - t < 0.6:\n        pass\n"
    "    os.write(w, b'8\\n')\n{child_then}    os._exit(0)\n"
    "print(os.read(r, 10).decode(), end='')\n{then}"
)
BURNERS = {
    "left running": BURN.format(orphan="", child_then="    time.sleep(5)\n", then=""),
    "waited for": BURN.format(orphan="", child_then="", then="os.wait()\n"),
    "ended, not waited for": BURN.format(orphan="", child_then="", then="time.sleep(0.05)\n"),
    "an orphan": BURN.format(
        orphan="    if os.fork():\n        os._exit(0)\n", child_then="", then="time.sleep(0.05)\n"
    ),
}
C_ORPHAN = r"""#include <stdio.h>
#include <time.h>
#include <unistd.h>
int main(void) {
  int p[2];
  char buf[8];
  if (pipe(p) != 0) return 1;
  if (fork() == 0) {
    if (fork() != 0) _exit(0);
    while ((double)clock() / CLOCKS_PER_SEC < 0.6) {}
    (void)!write(p[1], "8\n", 2);
    _exit(0);
  }
  ssize_t n = read(p[0], buf, sizeof buf);
  fwrite(buf, 1, n > 0 ? (size_t)n : 0, stdout);
  usleep(50000);
  return 0;
}
"""


@pytest.mark.parametrize("how", [*BURNERS, "an orphan, in C"])
async def test_the_cpu_time_of_the_processes_a_program_starts_is_its_own(client, how):
    """A program that has its work done by a process it starts — waited for or not, left
    running, or orphaned — is charged with that process's CPU time: no TLE dodged by a
    fork. What it left running is named in its result."""
    language, code = ("c", C_ORPHAN) if how.endswith("in C") else ("python", BURNERS[how])
    obs = await judge(client, language=language, code=code, time_limit_s=0.5,
                      cases=[{"stdin": "", "expected_stdout": "8\n"}])  # fmt: skip
    [case] = obs["data"]["cases"]
    assert case["verdict"] == "TLE" and case["cpu_s"] >= 0.5, case
    assert any("left running" in n for n in case["notes"]) == (how == "left running"), case


SEES = (
    "import os, sys{extra}\n"
    "n = input()\n"
    "print(n, os.getcwd() == os.environ['HOME'] == sys.path[0], sys.argv[1:],\n"
    "      os.environ.get('CASE'), os.environ['TMPDIR'] != '', os.getcwd())\n"
)


@pytest.mark.parametrize("imports", ["stdlib", "a preload"])
async def test_a_python_case_sees_its_own_directory_arguments_and_environment(client, imports):
    """Cases of a program that imports no preload are forked from a fresh interpreter (the
    case forker's case server), the others' from the template: either way each has its own
    working directory (its HOME and sys.path[0]), its arguments, and the judge's env."""
    code = SEES.format(extra=", heapq" if imports == "stdlib" else ", numpy")
    args = [["a", "é ü"], [], ["--x=1"]]
    cases = [{"stdin": f"{i}\n", "args": a, "expected_stdout": "-"} for i, a in enumerate(args)]
    obs = await judge(client, language="python", code=code, cases=cases, stop_on_failure=False)
    assert obs["data"], obs
    outs = [c["stdout"].split(" ", 2) for c in obs["data"]["cases"]]
    assert [(n, same) for n, same, _ in outs] == [("0", "True"), ("1", "True"), ("2", "True")]
    for (_, _, rest), given in zip(outs, args, strict=True):
        assert rest.startswith(f"{given!r} None True /"), rest
    assert len({rest.rsplit(" ", 1)[1] for _, _, rest in outs}) == 3  # a directory each


@pytest.mark.parametrize("imports", ["stdlib", "a preload"])
async def test_a_python_case_has_its_memory_limit_whichever_process_forked_it(client, imports):
    """The memory limit of a case counts what its program allocates, not what the process it
    was forked from had mapped: 64 MiB fit under 128, 192 do not."""
    head = "import sys\n" if imports == "stdlib" else "import sys, numpy\n"
    code = head + "b = bytearray(int(sys.stdin.read()) << 20)\nprint(len(b) >> 20)\n"
    cases = [{"stdin": "64", "expected_stdout": "64\n"}, {"stdin": "192", "expected_stdout": ""}]
    obs = await judge(client, language="python", code=code, cases=cases, memory_limit_mb=128,
                      stop_on_failure=False)  # fmt: skip
    verdicts = [c["verdict"] for c in obs["data"]["cases"]]
    assert verdicts == ["AC", "MLE"], obs["data"]["cases"]


async def test_cases_go_on_when_their_server_dies(client):
    """A case that kills the process that forked it (its case server) ends only itself: the
    cases after it run as any program, each once, each judged on its own output."""
    code = (
        "import os, signal\nn = int(input())\n"
        "if n == 3:\n    os.kill(os.getppid(), signal.SIGKILL)\nprint(n * 2)\n"
    )
    cases = [{"stdin": f"{i}\n", "expected_stdout": f"{i * 2}\n"} for i in range(12)]
    for _ in range(3):
        obs = await judge(client, language="python", code=code, cases=cases,
                          stop_on_failure=False)  # fmt: skip
        data = obs["data"]
        assert data["passed"] == 12, data["cases"]

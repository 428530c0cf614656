"""SandboxFusion's own client (``sandbox-fusion`` on PyPI: ``run_code`` and its models, as
verl's reward and graders call it) against a live gateway's ``/run_code``, with the cases of
SandboxFusion's own runner tests for python, bash and pytest (sandbox/tests/runners/
test_python.py, test_bash.py, test_pytest.py: same requests, same assertions, written anew),
then what graders need beyond them: large stdin and files, absolute paths in the run's own
``/tmp`` and ``/mnt``, program semantics of the warm interpreter, the 422s of its server,
and every cut or cap said in ``message``."""

from __future__ import annotations

import base64

import pytest
import requests
from sandbox_fusion import RunCodeRequest, RunCodeResponse, run_code
from sandbox_fusion.models import CommandRunStatus, RunStatus


def run(url: str, **request: object) -> RunCodeResponse:
    """One request through SandboxFusion's client (it raises on a non-200 or SandboxError)."""
    return run_code(RunCodeRequest(**request), endpoint=url, max_attempts=1, client_timeout=300)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


SECRET = "ImhlbGxvLCB0aGlzIGlzIGEgdGVzdCI="  # '"hello, this is a test"', as its tests send it


# ----------------------------------------------------------- its test_python.py


def test_python_print(live_gateway: str) -> None:
    result = run(live_gateway, language="python", code="print(123)", run_timeout=5)
    assert result.status == RunStatus.Success
    assert result.run_result.stdout.strip() == "123"


def test_python_timeout(live_gateway: str) -> None:
    result = run(
        live_gateway, language="python", code="import time; time.sleep(0.2)", run_timeout=0.1
    )
    assert result.status == RunStatus.Failed
    assert result.run_result.status == CommandRunStatus.TimeLimitExceeded


def test_python_assertion_error(live_gateway: str) -> None:
    result = run(live_gateway, language="python", code="assert 1 == 2", run_timeout=5)
    assert result.status == RunStatus.Failed
    assert result.run_result.status == CommandRunStatus.Finished
    assert "AssertionError" in result.run_result.stderr


def test_python_syntax_error(live_gateway: str) -> None:
    result = run(live_gateway, language="python", code="int a = 1", run_timeout=5)
    assert result.status == RunStatus.Failed
    assert result.run_result.status == CommandRunStatus.Finished
    assert "SyntaxError: invalid syntax" in result.run_result.stderr


def test_python_file_read(live_gateway: str) -> None:
    result = run(
        live_gateway,
        language="python",
        code='print(open("dir1/dir2/dir3/secret_flag").read())',
        run_timeout=5,
        files={"dir1/dir2/dir3/secret_flag": SECRET},
    )
    assert result.status == RunStatus.Success
    assert result.run_result.status == CommandRunStatus.Finished
    assert "hello, this is a test" in result.run_result.stdout


def test_python_stdin(live_gateway: str) -> None:
    result = run(
        live_gateway, language="python", code="print(int(input()))", run_timeout=5, stdin="65535"
    )
    assert result.status == RunStatus.Success
    assert result.run_result.status == CommandRunStatus.Finished
    assert result.run_result.stdout == "65535\n"


def test_python_fetch_files(live_gateway: str) -> None:
    result = run(
        live_gateway,
        language="python",
        code='open("a.txt", "w").write("secret"); open("/mnt/b", "w").write("sauce");',
        run_timeout=5,
        fetch_files=["a.txt", "/mnt/b"],
    )
    assert result.status == RunStatus.Success
    assert result.run_result.status == CommandRunStatus.Finished
    assert base64.b64decode(result.files["a.txt"]).decode() == "secret"
    assert base64.b64decode(result.files["/mnt/b"]).decode() == "sauce"


# ----------------------------------------------------------- its test_bash.py


def test_bash_echo(live_gateway: str) -> None:
    result = run(live_gateway, language="bash", code='echo "Hello World"', run_timeout=5)
    assert result.status == RunStatus.Success
    assert result.run_result.stdout.strip() == "Hello World"


def test_bash_sleep_timeout(live_gateway: str) -> None:
    result = run(live_gateway, language="bash", code="sleep 0.2", run_timeout=0.1)
    assert result.status == RunStatus.Failed
    assert result.run_result.status == CommandRunStatus.TimeLimitExceeded


def test_bash_false_condition(live_gateway: str) -> None:
    result = run(live_gateway, language="bash", code="test 1 -eq 2", run_timeout=5)
    assert result.status == RunStatus.Failed
    assert result.run_result.status == CommandRunStatus.Finished


def test_bash_syntax_error(live_gateway: str) -> None:
    result = run(live_gateway, language="bash", code="if [", run_timeout=5)
    assert result.status == RunStatus.Failed
    assert result.run_result.status == CommandRunStatus.Finished
    assert "syntax error" in result.run_result.stderr


def test_bash_file_read(live_gateway: str) -> None:
    result = run(
        live_gateway,
        language="bash",
        code="cat dir1/dir2/dir3/secret_flag",
        run_timeout=5,
        files={"dir1/dir2/dir3/secret_flag": SECRET},
    )
    assert result.status == RunStatus.Success
    assert "hello, this is a test" in result.run_result.stdout


def test_bash_stdin(live_gateway: str) -> None:
    code = "\n    read input\n    echo $input\n    "
    result = run(live_gateway, language="bash", code=code, run_timeout=5, stdin="65535")
    assert result.status == RunStatus.Success
    assert result.run_result.stdout == "65535\n"


# ----------------------------------------------------------- its test_pytest.py

WORD_COUNT = """
import string
from collections import Counter


def word_count(file_path):
    with open(file_path, encoding="utf-8") as file:
        content = file.read().translate(str.maketrans("", "", string.punctuation)).lower()
    for word, count in sorted(Counter(content.split()).items(), key=lambda x: -x[1]):
        print(f"'{word}': {count}")


class TestWordCount:
    def test_case_insensitive(self, capfd, tmp_path):
        path = tmp_path / "case.txt"
        path.write_text("Case case CASE", encoding="utf-8")
        word_count(path)
        assert "'case': 3" {op} capfd.readouterr().out

    def test_punctuation(self, capfd, tmp_path):
        path = tmp_path / "punctuation.txt"
        path.write_text("Some punctuation, like commas and periods.", encoding="utf-8")
        word_count(path)
        expected = "'some': 1\\n'punctuation': 1\\n'like': 1\\n'commas': 1\\n'and': 1\\n"
        assert expected {op} capfd.readouterr().out
"""


@pytest.mark.parametrize(
    ("op", "verdict"), [("in", RunStatus.Success), ("not in", RunStatus.Failed)]
)
def test_pytest_pass_and_fail(live_gateway: str, op: str, verdict: RunStatus) -> None:
    code = WORD_COUNT.replace("{op}", op)
    # as a program the file only defines things: it succeeds either way
    assert run(live_gateway, language="python", code=code, run_timeout=5).status == "Success"
    result = run(live_gateway, language="pytest", code=code, run_timeout=30)
    assert result.status == verdict, result
    assert ("2 passed" if op == "in" else "2 failed") in result.run_result.stdout


# ----------------------------------------------------------- beyond its tests


def test_large_stdin_and_files_for_graders(live_gateway: str) -> None:
    """A competitive-programming grader's input: 64 MiB of stdin, plus a 16 MiB file."""
    lines = 8 << 20
    stdin = "12345678\n" * lines  # 72 MiB (it reads 64 MiB and more)
    code = (
        "import sys\n"
        "data = sys.stdin.buffer.read()\n"
        "side = open('/mnt/side.bin', 'rb').read()\n"
        "print(data.count(b'\\n'), len(data), len(side))\n"
    )
    side = base64.b64encode(b"\0" * (16 << 20)).decode()
    result = run(
        live_gateway,
        language="python",
        code=code,
        stdin=stdin,
        files={"/mnt/side.bin": side},
        run_timeout=60,
    )
    assert result.status == RunStatus.Success, result.message
    assert result.run_result.stdout == f"{lines} {9 * lines} {16 << 20}\n"


def test_absolute_files_in_the_runs_own_tmp_and_mnt(live_gateway: str) -> None:
    code = (
        "import os\n"
        "print(open('/mnt/in/x.txt').read(), open('/tmp/y.txt').read())\n"
        "open('/tmp/out.txt', 'w').write('from tmp')\n"
        "print(sorted(os.listdir('/mnt')), sorted(os.listdir('/tmp')))\n"
    )
    result = run(
        live_gateway,
        language="python",
        code=code,
        files={"/mnt/in/x.txt": b64("mnt"), "/tmp/y.txt": b64("tmp")},
        fetch_files=["/tmp/out.txt", "/mnt/in/x.txt"],
    )
    assert result.status == RunStatus.Success, result
    assert result.run_result.stdout == "mnt tmp\n['in'] ['out.txt', 'y.txt']\n"
    assert base64.b64decode(result.files["/tmp/out.txt"]) == b"from tmp"
    assert base64.b64decode(result.files["/mnt/in/x.txt"]) == b"mnt"
    # the next run starts with its own, empty /tmp and /mnt
    again = run(live_gateway, language="bash", code="ls -A /tmp /mnt; touch /tmp/ok && echo w")
    assert again.run_result.stdout == "/mnt:\n\n/tmp:\nw\n", again


def test_program_semantics_of_the_warm_interpreter(live_gateway: str) -> None:
    code = (
        "import sys\n"
        "def main():\n"
        "    print(sys.argv, __name__, sys.stdin.read().split())\n"
        "    sys.exit(int(sys.stdin.read() or 3))\n"
        "if __name__ == '__main__':\n"
        "    main()\n"
    )
    result = run(live_gateway, language="python", code=code, stdin="a b")
    assert result.run_result.stdout == "['main.py'] __main__ ['a', 'b']\n"
    assert (result.status, result.run_result.return_code) == ("Failed", 3)
    crash = run(live_gateway, language="python", code="def f():\n    1 / 0\n\nf()\n")
    assert crash.run_result.return_code == 1
    assert crash.run_result.stderr == (
        "Traceback (most recent call last):\n"
        '  File "main.py", line 4, in <module>\n    f()\n'
        '  File "main.py", line 2, in f\n    1 / 0\n    ~~^~~\n'
        "ZeroDivisionError: division by zero\n"
    )
    message = run(live_gateway, language="python", code="raise SystemExit('bye')")
    assert (message.run_result.return_code, message.run_result.stderr) == (1, "bye\n")
    numpy = run(
        live_gateway, language="python", code="import numpy as np\nprint(np.arange(4).sum())"
    )
    assert numpy.run_result.stdout == "6\n"


def test_language_required_and_aliases_as_its_server(live_gateway: str) -> None:
    missing = requests.post(f"{live_gateway}/run_code", json={"code": "print(1)"}, timeout=60)
    assert missing.status_code == 422
    assert missing.json()["error"]["fields"][0]["path"] == "body.language"
    unknown = requests.post(
        f"{live_gateway}/run_code", json={"code": "x", "language": "cobol"}, timeout=60
    )
    assert unknown.status_code == 422 and "language" in unknown.json()["error"]["message"]
    # python3 is python; a JSON body is read whatever its content type says
    alias = requests.post(
        f"{live_gateway}/run_code",
        data='{"code": "print(2)", "language": "python3"}',
        headers={"content-type": "text/plain"},
        timeout=60,
    )
    assert alias.status_code == 200 and alias.json()["run_result"]["stdout"] == "2\n"


def test_caps_and_cuts_are_said_in_message(live_gateway: str) -> None:
    # memory_limit_MB as verl's call_sandbox_api sends it (the PyPI client has no such field)
    over = requests.post(
        f"{live_gateway}/run_code",
        json={"code": "print(1)", "language": "python", "memory_limit_MB": 1 << 20},
        timeout=60,
    ).json()
    assert over["status"] == "Success"
    assert "a memory limit of 1048576 MiB was asked, over the sandbox's cap" in over["message"]
    hungry = run(live_gateway, language="python", code="x = bytearray(8 << 30)")
    assert hungry.status == RunStatus.Failed and "memory cap is" in hungry.message
    big_file = run(
        live_gateway, language="python", code="open('/tmp/f', 'wb').write(b'x' * (100 << 20))"
    )
    assert big_file.status == RunStatus.Failed and "file size cap is" in big_file.message
    forks = run(
        live_gateway,
        language="python",
        code="import os, time\nfor _ in range(500):\n    if os.fork() == 0:\n"
        "        time.sleep(3)\n        os._exit(0)\n",
        run_timeout=20,
    )
    assert forks.status == RunStatus.Failed and "process cap is" in forks.message
    # stdout past the output cap is cut, and the cut said outside stdout
    loud = run(live_gateway, language="python", code="print('a' * (17 << 20))")
    assert loud.status == RunStatus.Success
    assert set(loud.run_result.stdout) == {"a"} and len(loud.run_result.stdout) == 16 << 20
    assert "stdout was cut" in loud.message and str(16 << 20) in loud.message

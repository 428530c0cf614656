"""Every language run_program offers, through the REST API on the local backend: hello,
stdin, compile errors (file:line:col), runtime errors, time, memory and output limits,
files in and out, the compile cache, and /run_code's compile_result.

CI installs every toolchain (make toolchains): a language missing here fails, never skips."""

from __future__ import annotations

import base64
import re

import pytest
import pytest_asyncio
from toolfleet.core.registry import ToolRegistry
from toolfleet.sandbox import tools_for
from toolfleet.sandbox.backend import Family
from toolfleet.sandbox.languages import BY_NAME, LANGUAGES, NATIVE, resolve
from toolfleet.sandbox.settings import SandboxSettings

from tests.helpers import ROOT, call, gateway
from tests.sandbox import programs as P

pytestmark = pytest.mark.asyncio(loop_scope="module")

SETTINGS = dict(pool_size=0, light_pool_size=2, memory_mb=256, processes=64)
# Generous: compilers and runtimes start slowly on a loaded machine; limits under test are
# given explicitly.
SLOW_S = 60.0
ALL = P.LANGUAGE_NAMES
COMPILED = sorted(P.COMPILE_ERROR)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client():
    registry = ToolRegistry(tools_for(SandboxSettings(**SETTINGS)))
    async with gateway(registry) as c:
        yield c


async def program(client, language: str, code: str, **arguments):
    args = {"language": language, "code": code, "time_limit_s": SLOW_S, **arguments}
    return await call(client, "run_program", args, timeout_s=3 * SLOW_S)


async def test_every_language_has_programs():
    assert {lang.name for lang in LANGUAGES} - {"go_test"} == set(ALL)
    assert resolve("c++") == "cpp" and resolve("JavaScript") == "nodejs"
    assert resolve("python3") == "python" and resolve("cobol") is None


async def test_the_readme_names_every_language_and_the_limits_in_force() -> None:
    """What a newcomer reads first: the languages served and the sandbox's default limits."""
    readme = " ".join(ROOT.joinpath("README.md").read_text().split())
    paragraph = readme[readme.index("**Languages.**") :][:1000]
    named = set(re.findall(r"[\w+#]+", paragraph))
    assert {lang.name for lang in LANGUAGES} | set(NATIVE.values()) <= named
    s = SandboxSettings()
    for said in (
        f"{s.memory_mb} MiB of memory per interpreter",
        f"{s.processes} processes",
        f"{s.disk_mb} MiB of workspace disk",
        f"{s.file_mb} MiB per file",
        f"{s.max_output_chars:,} bytes of stdout+stderr",
        f"({s.max_program_output_bytes >> 20} MiB per program run)",
        f"{s.max_images} images of at most {s.max_image_bytes >> 20} MiB",
    ):
        assert said in readme, said


async def test_every_toolchain_is_offered(client):
    tools = {t["name"]: t for t in (await client.get("/v1/tools")).json()["tools"]}
    offered = tools["run_program"]["input_schema"]["properties"]["language"]["enum"]
    assert set(ALL) | {"python", "bash", "go_test"} <= set(offered)
    assert tools["judge"]["input_schema"]["properties"]["language"]["enum"] == offered


@pytest.mark.parametrize("language", ALL)
async def test_hello(client, language):
    obs = await program(client, language, P.HELLO[language])
    assert obs["ok"], obs
    assert obs["data"]["stdout"] == "hello\n"
    assert obs["data"]["exit_code"] == 0


@pytest.mark.parametrize("language", ALL)
async def test_stdin(client, language):
    obs = await program(client, language, P.SUM[language], stdin="40 2\n")
    assert obs["ok"], obs
    assert obs["data"]["stdout"].strip() == "42"


@pytest.mark.parametrize("language", COMPILED)
async def test_compile_error_names_file_line_and_column(client, language):
    obs = await program(client, language, P.COMPILE_ERROR[language])
    assert obs["ok"] is False
    error = obs["error"]
    assert error["kind"] == "compile_error", obs
    assert obs["data"]["status"] == "compile_error"
    assert obs["data"]["compile"]["status"] == "error"
    line = 2 if language in ("c", "cpp", "rust") else 3 if language != "go" else 4
    assert f":{line}" in error["message"], error  # main.cpp:2:10 / Main.java:3 / ...
    assert error["detail"]  # the compiler's own words


@pytest.mark.parametrize("language", ALL)
async def test_runtime_error(client, language):
    obs = await program(client, language, P.RUNTIME_ERROR[language])
    data = obs["data"]
    assert data["status"] == "finished"
    if language == "verilog":  # $fatal: vvp's own status
        assert data["exit_code"] != 0
        return
    assert data["exit_code"] == 3, obs
    assert "boom" in data["stderr"]
    assert obs["error"]["kind"] == "runtime_error"


@pytest.mark.parametrize("language", ALL)
async def test_timeout(client, language):
    code = P.LOOP[language]
    obs = await program(client, language, code, time_limit_s=2)
    # compiled first (its own limit), then killed at the run's
    assert obs["data"]["status"] == "time_limit", obs
    assert obs["error"]["kind"] == "timeout"
    assert obs["data"]["time_s"] < 10


@pytest.mark.parametrize("language", [lang for lang in ALL if P.MEMORY[lang]])
async def test_memory_limit(client, language):
    obs = await program(client, language, P.MEMORY[language], time_limit_s=15,
                        memory_limit_mb=128)  # fmt: skip
    data = obs["data"]
    # RLIMIT_AS (or the runtime's own heap limit) makes allocation fail: the program dies,
    # or (garbage collectors thrashing at the limit) runs out of time — never succeeds
    assert not (data["status"] == "finished" and data["exit_code"] == 0), obs
    assert "64" not in data["stdout"]


@pytest.mark.parametrize("language", ALL)
async def test_output_limit_cuts_the_output(client, language):
    obs = await program(client, language, P.FLOOD[language], time_limit_s=30)
    data = obs["data"]
    assert obs["truncated"] is True, {k: v for k, v in data.items() if k != "stdout"}
    assert len(data["stdout"].encode()) <= 16 << 20
    assert data["notes"]


@pytest.mark.parametrize("language", [lang for lang in ALL if P.FILES[lang]])
async def test_files_in_and_out(client, language):
    obs = await program(client, language, P.FILES[language], files={"in.txt": "abc\n"},
                        fetch_files=["out.txt"])  # fmt: skip
    assert obs["ok"], obs
    assert base64.b64decode(obs["data"]["files"]["out.txt"]).strip() == b"ABC"


async def test_compile_cache_serves_the_same_program_again(client):
    code = P.SUM["cpp"].replace("a + b", "a + b + 0")
    first = await program(client, "cpp", code, stdin="1 2")
    again = await program(client, "cpp", code, stdin="3 4")
    assert first["data"]["compile"]["cached"] is False
    assert again["data"]["compile"]["cached"] is True
    assert (first["data"]["stdout"], again["data"]["stdout"]) == ("3\n", "7\n")
    other = await program(client, "cpp", code, stdin="1 2", files={"x.h": "// differs"})
    assert other["data"]["compile"]["cached"] is False  # the files are part of the key


async def test_a_compiled_program_is_sent_to_its_zygote_once_and_again_when_dropped(
    monkeypatch,
):
    """A cached program's binary (megabytes, statically linked) is named by key: its bytes
    go to a zygote's supervisor with its first run there only; a supervisor that no longer
    holds it says so, and it is sent again — the run still answers."""
    tools = tools_for(SandboxSettings(**{**SETTINGS, "zygotes": 1}))
    sent: list[dict] = []
    request = Family.request

    async def recorded(self, msg, answer_within_s):
        if msg.get("op") == "run":
            sent.append({k: msg.get(k) for k in ("stored", "store")})
        return await request(self, msg, answer_within_s)

    monkeypatch.setattr(Family, "request", recorded)
    async with gateway(ToolRegistry(tools)) as c:
        runs = [await program(c, "cpp", P.SUM["cpp"], stdin="1 2")]  # compiled, then run
        del sent[:]
        for stdin in ("3 4", "5 6"):
            runs.append(await program(c, "cpp", P.SUM["cpp"], stdin=stdin))
        assert [r["data"]["stdout"] for r in runs] == ["3\n", "7\n", "11\n"]
        assert [r["data"]["compile"]["cached"] for r in runs] == [False, True, True]
        first, second = sent
        (key,) = first["stored"].values()
        assert set(first["store"]) == {key} and len(first["store"][key]) > 100_000  # static
        assert second["stored"] == first["stored"] and not second["store"]  # held: not sent

        # A supervisor that does not hold it while the service believes it does (as after
        # it dropped the program): asked without the bytes, it says so, and gets them.
        code = P.SUM["cpp"].replace("a + b", "b + a")
        assert (await program(c, "cpp", code, stdin="2 2"))["data"]["stdout"] == "4\n"
        sandbox = tools[0].sandbox
        key = sandbox.programs._key(BY_NAME["cpp"], code, {}) + "/main"
        for zygote in [*sandbox.backend.zygotes, *sandbox.backend.light]:
            zygote.stored.add(key)
        del sent[:]
        assert (await program(c, "cpp", code, stdin="2 3"))["data"]["stdout"] == "5\n"
        assert [(m["stored"], m["store"] and list(m["store"])) for m in sent] == [
            ({"main": key}, None),
            ({"main": key}, [key]),
        ]


async def test_go_test(client):
    code = (
        'package main\n\nimport "testing"\n\nfunc TestAdd(t *testing.T) {\n'
        '\tif 1+1 != 2 {\n\t\tt.Fatal("math")\n\t}\n}\n'
    )
    obs = await program(client, "go_test", code)
    assert obs["ok"], obs
    assert "PASS" in obs["data"]["stdout"]


async def test_unknown_language_is_a_clear_error(client):
    obs = await program(client, "cobol", "DISPLAY 'HI'.")
    assert obs["error"]["kind"] == "invalid_arguments"
    assert "cpp" in obs["error"]["message"]  # the languages offered are listed


async def test_run_code_compile_result_in_sandbox_fusions_shape(client):
    ok = (await client.post("/run_code", json={"language": "cpp", "code": P.SUM["cpp"],
                                               "stdin": "2 3"})).json()  # fmt: skip
    assert ok["status"] == "Success", ok
    assert ok["compile_result"]["status"] == "Finished"
    assert ok["compile_result"]["return_code"] == 0
    assert ok["run_result"]["stdout"] == "5\n"
    body = {"language": "c++", "code": P.COMPILE_ERROR["cpp"]}
    bad = (await client.post("/run_code", json=body)).json()
    assert bad["status"] == "Failed"
    assert bad["compile_result"]["status"] == "Error"
    assert bad["compile_result"]["return_code"] == 1
    assert "main.cpp:2" in bad["compile_result"]["stderr"]
    assert bad["run_result"] is None
    js = (await client.post("/run_code", json={"language": "javascript",
                                               "code": P.HELLO["nodejs"]})).json()  # fmt: skip
    assert js["status"] == "Success" and js["run_result"]["stdout"] == "hello\n"
    assert js["compile_result"] is None

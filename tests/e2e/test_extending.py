"""The recipes of docs/architecture.md ("Adding a tool", "Adding a service") work as written:
the notes service is built from the page's own code blocks, installed as a package installs
(its code on the path, its entry points in a ``.dist-info``), configured by its ``[notes]``
table of the config file, served by ``toolfleet serve --config``, and called through the
gateway: its tools, its state across turns and forks, its route (and its /docs example), its
status."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT, serving

DOC = ROOT / "docs" / "architecture.md"
PACKAGE = "services/notes/"


def documented_files() -> dict[str, str]:
    """Each code block of the two recipes, by the ``services/notes/...`` path the text names
    last before it."""
    text = DOC.read_text()
    start, end = text.index("## Adding a tool"), text.index("## Failures")
    recipe = text[start:end]
    files: dict[str, str] = {}
    previous = 0
    for block in re.finditer(r"```(?:python|toml)\n(.*?)```", recipe, re.DOTALL):
        named = re.findall(r"`(services/notes/[^`]+)`", recipe[previous : block.start()])
        assert named, f"no file named before the block at {block.start()}"
        files[named[-1]] = block.group(1)
        previous = block.end()
    return files


def install(root: Path, files: dict[str, str]) -> Path:
    """Write the package and install it as pip would for its imports and entry points: the
    source directory on the path, with a ``.dist-info`` declaring the entry points."""
    for name, code in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code)
    project = tomllib.loads(files[PACKAGE + "pyproject.toml"])["project"]
    src = root / PACKAGE / "src"
    info = src / f"toolfleet_notes-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    groups = project["entry-points"]
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()) + "\n"
            for group, entries in groups.items()
        )
    )
    return src


def test_the_recipes_name_every_file_of_the_package() -> None:
    files = documented_files()
    assert set(files) == {
        PACKAGE + "pyproject.toml",
        PACKAGE + "src/toolfleet/notes/__init__.py",
        PACKAGE + "src/toolfleet/notes/service.py",
        PACKAGE + "src/toolfleet/notes/take.py",
        PACKAGE + "src/toolfleet/notes/count.py",
        PACKAGE + "src/toolfleet/notes/routes.py",
    }
    # adding the tool was one module and one line of the service's list
    assert "            CountNotes(self),\n" in files[PACKAGE + "src/toolfleet/notes/service.py"]


@pytest.fixture
def notes_gateway(tmp_path: Path) -> Iterator[str]:
    """``toolfleet serve --config`` with the notes package installed, serving only it."""
    src = install(tmp_path, documented_files())
    config = tmp_path / "toolfleet.toml"
    config.write_text('services = ["notes"]\n[notes]\nmax_notes = 2\n')
    with serving("--config", str(config), env={"PYTHONPATH": str(src)}, cwd=tmp_path) as url:
        yield url


def test_a_documented_service_is_served_and_called_through_the_gateway(notes_gateway):
    with httpx.Client(base_url=notes_gateway, timeout=30) as client:
        tools = {t["name"]: t for t in client.get("/v1/tools").json()["tools"]}
        assert set(tools) == {"take_note", "count_notes"}
        assert tools["take_note"]["service"] == "notes" and tools["take_note"]["stateful"]
        assert tools["take_note"]["input_schema"]["properties"]["text"]["maxLength"] == 1000

        def call(tool: str, **body: object) -> dict:
            r = client.post(f"/v1/tools/{tool}/call", json=body)
            assert r.status_code == 200, r.text
            return r.json()

        first = call("take_note", arguments={"text": "the key is 42"}, trajectory_id="tr")
        assert first["ok"] and first["content"][0]["text"] == "1. the key is 42"
        second = call("take_note", arguments={"text": "check the door"}, trajectory_id="tr")
        assert second["data"] == {"notes": ["the key is 42", "check the door"]}
        full = call("take_note", arguments={"text": "one more"}, trajectory_id="tr")
        assert full["error"]["kind"] == "output_limit"  # max_notes = 2, from [notes]
        assert full["error"]["message"] == "the session already keeps 2 notes"
        bad = call("take_note", arguments={"text": ""}, trajectory_id="tr")
        assert bad["error"]["kind"] == "invalid_arguments"

        sid = client.post("/v1/sessions").json()["session_id"]
        assert call("take_note", arguments={"text": "a"}, session_id=sid)["ok"]
        fork = client.post(f"/v1/sessions/{sid}/fork").json()["session_id"]
        counted = call("count_notes", session_id=fork)
        assert counted["content"][0]["text"] == "1 notes, room for 1 more"
        # the service's route, mounted by the gateway from the package's entry point
        assert client.get(f"/v1/sessions/{fork}/notes").json() == {"count": 1}
        assert client.get("/v1/sessions/s-nope/notes").status_code == 404
        documented = client.get("/openapi.json").json()["paths"]["/v1/sessions/{session_id}/notes"]
        ok = documented["get"]["responses"]["200"]["content"]["application/json"]
        assert ok["example"] == {"count": 1}  # the route's own example, in /docs

        ready = client.get("/readyz").json()
        assert ready["services"] == {"notes": {"taken": 3, "max_notes": 2}}

"""verl-tool's recipes against a live gateway, each with the requests its agent loop posts
(``interact_with_tool_server``: the action cut after its stop token, ``finish``,
``is_last_step``, the sample's ``extra_info`` as ``extra_fields``; ``close_traj_tool_threads``
at the end) and the server's ``--tool_type`` given in the URL."""

from __future__ import annotations

import base64
import json
import sqlite3
import uuid

import pandas as pd
import pytest
import requests

from tests.helpers import SHARED_DATA
from tests.helpers.compat import cut_at_stop, verl_tool_close, verl_tool_turn
from tests.helpers.sql import CHINOOK


def tid() -> str:
    return uuid.uuid4().hex


def test_search_r1_recipe(live_gateway: str) -> None:
    url = f"{live_gateway}/get_observation?tool_type=search_retrieval"
    stops = ["</search>", "</answer>"]
    t = tid()
    action = cut_at_stop("I should look it up. <search> oil crisis embargo </search> more", stops)
    info = verl_tool_turn(url, t, action, extra_fields={"question": "q"})
    assert info["valid_action"] == 1 and info["done"] == 0
    obs = info["obs"]
    assert obs.startswith('\n\n<information>Doc 1(Title: "1973 oil crisis") The 1973 oil crisis')
    assert obs.endswith("</information>\n\n") and obs.count("\nDoc ") == 2
    # the final answer ends the trajectory: done, not valid, nothing to read
    answer = verl_tool_turn(url, t, cut_at_stop("<answer> 1973 </answer>", stops))
    assert (answer["obs"], answer["done"], answer["valid_action"]) == ("", 1, 0)
    # an empty search is a valid turn with no passages
    empty = verl_tool_turn(url, tid(), "<search></search>")
    assert empty["obs"] == "\n\n<information></information>\n\n" and empty["valid_action"] == 1
    assert verl_tool_close(url, t) == {"observations": [""], "dones": [True], "valids": [True]}


def test_math_tir_recipe_ipython(live_gateway: str) -> None:
    """ToRL / math_tir: ipython_code, stop token ```output, state kept across turns."""
    url = f"{live_gateway}/get_observation?tool_type=ipython_code"
    t = tid()
    first = verl_tool_turn(url, t, "Compute:\n```python\nx = 6 * 7\nprint(x)\nx + 1\n```output")
    assert first["obs"] == "\n42\n43\n```\n"
    assert first["metrics"] == {"code_success": True, "code_lines": 3}
    assert first["timeout"] is False
    second = verl_tool_turn(url, t, "```python\nprint(x * 2)\n1/0\n```output")
    assert second["obs"].startswith("\n84\n") and "ZeroDivisionError" in second["obs"]
    assert second["metrics"]["code_success"] is False
    # ipython's <tool_call> form: the output as it is
    called = verl_tool_turn(
        url, t, '<tool_call>{"name": "python", "arguments": {"code": "print(x)"}}</tool_call>'
    )
    assert called["obs"] == "42" and called["valid_action"] == 1
    verl_tool_close(url, t)
    after = verl_tool_turn(url, t, "```python\nprint(x)\n```output")
    assert "NameError" in after["obs"]


def test_python_code_framings(live_gateway: str) -> None:
    url = f"{live_gateway}/get_observation?tool_type=python_code"
    assert verl_tool_turn(url, tid(), "<python>print(6*7)</python>")["obs"] == (
        "\n<result>\n42\n</result>\n"
    )
    assert verl_tool_turn(url, tid(), "```python\nprint(1)\n```")["obs"] == "\n```result\n1\n```\n"
    assert verl_tool_turn(url, tid(), "```py\nprint(2)\n```")["obs"] == "\n<result>\n2\n</result>\n"
    assert verl_tool_turn(url, tid(), "```python\nprint(3)\n```\n```output")["obs"] == (
        "\n3\n```\n"
    )
    called = verl_tool_turn(url, tid(), "<python>print(4)</python><tool_call>")["obs"]
    assert called == "\n<result>\n4\n</result>\n"
    stdin = verl_tool_turn(url, tid(), "<python>print(input()[::-1])</python>", {"stdin": "abc"})
    assert stdin["obs"] == "\n<result>\ncba\n</result>\n"
    old = f"{url}&framing=output"
    assert verl_tool_turn(old, tid(), "<python>print(5)</python>")["obs"] == (
        "\n<output>\n5\n</output>\n"
    )
    # verl-tool's imports only when asked for
    bare = verl_tool_turn(url, tid(), "<python>print(sqrt(16))</python>")["obs"]
    assert "NameError" in bare
    pre = verl_tool_turn(f"{url}&pre_import_lib=true", tid(), "<python>print(sqrt(16))</python>")
    assert pre["obs"] == "\n<result>\n4.0\n</result>\n"


def test_deepsearch_recipe(live_gateway: str) -> None:
    """google_search (toolfleet's web_search) and python_code, as the deepsearch recipe."""
    url = f"{live_gateway}/get_observation?tool_type=google_search,python_code"
    t = tid()
    info = verl_tool_turn(url, t, "<search>toolfleet</search>")
    assert info["obs"].startswith("<result>Search results for 'toolfleet':\n\n**Page 1**\n")
    assert "**Link:** https://example.org/0\n**Snippet:** snippet 0\n" in info["obs"]
    assert info["obs"].count("**Page") == 3  # snippets 0, 1, 2 repeat: the rest are skipped
    code = verl_tool_turn(url, t, "<python>print('ok')</python>")
    assert code["obs"] == "\n<result>\nok\n</result>\n"


def test_sql_recipe(live_gateway: str) -> None:
    """SkyRL-SQL on verl-tool: <sql> on the sample's db_id, the reminder of turns left."""
    url = f"{live_gateway}/get_observation?tool_type=sql"
    query = "SELECT Name, ArtistId FROM Artist WHERE ArtistId < 4"
    extra = {"db_id": "chinook", "turns_left": 4, "gt_sql": "SELECT 1"}
    info = verl_tool_turn(url, tid(), f"Let me look.\n<sql>{query}</sql>", extra)
    conn = sqlite3.connect(CHINOOK)
    expected = pd.DataFrame(conn.execute(query).fetchall()).to_string(index=False)
    conn.close()
    assert info["obs"] == (
        f"\n\n<observation>{expected}\n<reminder>You have 4 turns left to complete the "
        "task.</reminder></observation>\n\n"
    )
    assert info["parsed_sql"] == query and info["valid_action"] == 1
    bad = verl_tool_turn(url, tid(), "<sql>SELECT nope FROM Artist</sql>", extra)
    assert "no such column: nope" in bad["obs"]
    missing = verl_tool_turn(url, tid(), "<sql>SELECT 1</sql>", {})
    assert missing["valid_action"] == 0 and "Execution Error" in missing["obs"]


def test_bash_terminal(live_gateway: str) -> None:
    url = f"{live_gateway}/get_observation?tool_type=bash_terminal"
    t = tid()
    info = verl_tool_turn(url, t, "<bash>mkdir -p work\ncd work\necho hi\nfalse</bash>")
    assert info["obs"] == (
        "\n<o>\nuser@bash-session:~$ mkdir -p work\nuser@bash-session:~$ cd work\n"
        "user@bash-session:~/work$ echo hi\nhi\n\nuser@bash-session:~/work$ false\n"
        "Command exited with code 1\n</o>\n"
    )
    again = verl_tool_turn(url, t, "```bash\npwd\n```")
    assert again["obs"].startswith("\n```output\nuser@bash-session:~/work$ pwd\n")


def test_pixel_reasoner(live_gateway: str) -> None:
    url = f"{live_gateway}/get_observation?tool_type=pixel_reasoner"
    image = (SHARED_DATA / "vision" / "images" / "rocket.jpg").read_bytes()
    extra = {"images": ["data:image/jpeg;base64," + base64.b64encode(image).decode()]}
    t = tid()
    arguments = {"bbox_2d": [0.2, 0.2, 0.6, 0.6], "target_image": 1}
    call = f"<tool_call>{json.dumps({'name': 'crop_image', 'arguments': arguments})}</tool_call>"
    info = verl_tool_turn(url, t, call, extra)
    assert info["valid_action"] == 1
    # 640x427: the box grown by 10 % a side: x 0.1..0.7, y 0.1..0.7
    assert info["obs"] == "Here is the cropped image. (Image Size: 384x257)\n<image>"
    assert info["image"].startswith("data:image/jpeg;base64,/9j/")
    frames = (
        '<tool_call>{"name": "select_frames", "arguments": {"target_frames": [1, 2]}}</tool_call>'
    )
    both = verl_tool_turn(url, t, frames, extra)
    assert both["obs"].startswith("Here are the selected frames. (Frame Size: 640x427, ")
    assert both["obs"].endswith("Numbered 1 to 2):<image><image>") and len(both["image"]) == 2
    wrong = verl_tool_turn(
        url, t, '<tool_call>{"name": "zoom_in", "arguments": {"target_image": 9}}</tool_call>'
    )
    assert wrong["obs"] == "Missing parameters: bbox_2d" and wrong["valid_action"] == 0


def test_mcp_interface_and_unknown_actions(live_gateway: str) -> None:
    url = f"{live_gateway}/get_observation"
    mcp = verl_tool_turn(url, tid(), '<tool_call>{"name": "weather", "arguments": {}}</tool_call>')
    assert mcp == {
        "obs": "",
        "error": "No MCP servers configured for this task.",
        "tool": "weather",
        "done": 1,
        "valid_action": 0,
    }
    nothing = verl_tool_turn(url, tid(), "I think the answer is 42.")
    assert nothing["obs"] == "" and nothing["valid_action"] == 0 and nothing["done"] == 0
    assert nothing["invalid_reason"] == "No valid tool found for action"
    assert "python_code" in nothing["available_tools"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"trajectory_ids": ["a"], "actions": ["x"], "extra_fields": [1]}, "extra_fields.0"),
        ({"trajectory_ids": ["a", "b"], "actions": [1, "x"]}, "actions.0"),
        ({"trajectory_ids": "ab", "actions": ["x", "y"]}, "trajectory_ids"),
        ({"trajectory_ids": [None], "actions": ["x"]}, "trajectory_ids.0"),
        ({"trajectory_ids": ["a", "b"], "actions": ["x"]}, "actions has 1 items"),
        ({"trajectory_ids": [], "actions": []}, "trajectory_ids"),
        ({"actions": ["x"]}, "trajectory_ids"),
    ],
)
def test_malformed_requests_are_422_naming_the_field(
    live_gateway: str, body: dict, field: str
) -> None:
    r = requests.post(f"{live_gateway}/get_observation", json=body)
    assert r.status_code == 422, r.text
    assert field in r.json()["error"]["message"]


def test_unknown_keys_are_ignored_and_named(live_gateway: str) -> None:
    r = requests.post(
        f"{live_gateway}/get_observation",
        json={"trajectory_ids": ["k"], "actions": ["hello"], "sampling": {"t": 1}},
    )
    assert r.status_code == 200 and r.headers["X-Toolfleet-Ignored-Keys"] == "sampling"
    bad = requests.post(
        f"{live_gateway}/get_observation?tool_type=python_code,nope",
        json={"trajectory_ids": ["k"], "actions": ["x"]},
    )
    assert bad.status_code == 400 and "nope" in bad.json()["error"]["message"]

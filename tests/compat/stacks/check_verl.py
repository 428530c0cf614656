"""verl 0.9.1 (CPU; installed with --no-deps plus what its tool, agent-loop and reward
modules import): the documented recipes run through verl's own code against the gateway.

- tools: a ``function_tool_path`` file registering toolfleet's typed callables, loaded by
  ``load_all_tools`` and called by ``ToolAgentLoop._call_tool`` (with verl's truncation);
- code rewards: ``verl.utils.reward_score.sandbox_fusion.compute_score`` on ``/run_code``;
- the Hydra overrides of docs/trainers/verl.md compose against verl's own trainer config.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import verl
from hydra import compose, initialize_config_dir
from verl.experimental.agent_loop.tool_agent_loop import ToolAgentLoop
from verl.experimental.agent_loop.tool_parser import FunctionCall
from verl.tools.tool_registry import load_all_tools
from verl.utils.reward_score import sandbox_fusion

URL = os.environ["TOOLFLEET_URL"]
ROOT = Path(__file__).resolve().parents[3]
TOOL_FILE = ROOT / "docs" / "trainers" / "verl_toolfleet_tools.py"


def test_version() -> None:
    assert verl.__version__ == "0.9.1"


def agent_loop(tools: list, limit: int, side: str) -> ToolAgentLoop:
    """A ToolAgentLoop with only what ``_call_tool`` reads (no model, no rollout server)."""
    loop = object.__new__(ToolAgentLoop)
    loop.tools = {t.name: t for t in tools}
    loop.max_tool_response_length = limit
    loop.tool_response_truncate_side = side
    return loop


def test_function_tools_through_the_agent_loop() -> None:
    tools = load_all_tools(None, str(TOOL_FILE))
    assert sorted(t.name for t in tools) == ["python", "search"]
    schema = next(t for t in tools if t.name == "python").tool_schema.model_dump()
    assert schema["function"]["parameters"]["required"] == ["code"]
    loop = agent_loop(tools, 30, "left")

    def call(name: str, **arguments: object) -> str:
        fc = FunctionCall(name=name, arguments=json.dumps(arguments))
        response, _, _ = asyncio.run(loop._call_tool(fc, {}, SimpleNamespace()))
        return response.text

    assert call("python", code="print(6*7)") == "42"
    assert (
        call("python", code="print('a' * 20 + 'b' * 20)") == "(truncated)..." + "a" * 10 + "b" * 20
    )
    assert call("search", query="oil crisis embargo").startswith("(truncated)...")
    loop.max_tool_response_length = 4096
    assert "NameError" in call("python", code="print(undefined_name)")


def test_sandbox_fusion_reward_on_run_code() -> None:
    completion = "```python\nn = int(input())\nprint(n * 2)\n```"
    cases = {"inputs": ["2\n", "5\n"], "outputs": ["4\n", "10\n"]}
    score, meta = sandbox_fusion.compute_score(f"{URL}/run_code", None, 256, completion, cases)
    assert score == 1.0, meta
    wrong = "```python\nprint(0)\n```"
    assert sandbox_fusion.compute_score(f"{URL}/run_code", None, 256, wrong, cases)[0] == 0.0


def test_documented_overrides_compose() -> None:
    config_dir = Path(verl.__file__).parent / "trainer" / "config"
    overrides = [
        "actor_rollout_ref.rollout.multi_turn.enable=true",
        "actor_rollout_ref.rollout.multi_turn.format=hermes",
        f"actor_rollout_ref.rollout.multi_turn.function_tool_path={TOOL_FILE}",
        "actor_rollout_ref.rollout.multi_turn.max_tool_response_length=4096",
        "actor_rollout_ref.rollout.multi_turn.tool_response_truncate_side=middle",
        f"reward.sandbox_fusion.url={URL}/run_code",
    ]
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        cfg = compose("ppo_trainer", overrides=overrides)
    assert cfg.reward.sandbox_fusion.url == f"{URL}/run_code"
    assert cfg.actor_rollout_ref.rollout.multi_turn.function_tool_path == str(TOOL_FILE)
    with (
        initialize_config_dir(config_dir=str(config_dir), version_base=None),
        pytest.raises(Exception, match="reward_model"),
    ):
        compose("ppo_trainer", overrides=[f"reward_model.sandbox_fusion.url={URL}/run_code"])

"""TRL 1.16 (GRPO with tools / environment_factory) on toolfleet's typed callables."""

from __future__ import annotations

import inspect
import os

import trl
from toolfleet.client import ToolfleetClient
from toolfleet.client.callables import environment_class, tool_functions
from transformers.utils import get_json_schema

URL = os.environ["TOOLFLEET_URL"]


def test_versions() -> None:
    assert trl.__version__ == "1.16.0"


def test_callables_have_the_schema_transformers_reads() -> None:
    with ToolfleetClient(URL) as client:
        python, search, crop = tool_functions(client, ["python", "search", "image_crop"])
        schema = get_json_schema(python)["function"]
        assert schema["name"] == "python"
        assert schema["parameters"]["required"] == ["code"]
        assert schema["parameters"]["properties"]["code"]["type"] == "string"
        assert get_json_schema(search)["function"]["parameters"]["properties"]["top_k"] == {
            "type": "integer",
            "nullable": True,
            "description": "Passages per query.",
        }
        coords = get_json_schema(crop)["function"]["parameters"]["properties"]["coords"]
        assert "normalized" in coords["enum"]
        assert python(code="print(6*7)") == "42"
        assert "Doc 1(Title:" in search(query="oil crisis")


def test_environment_factory_one_trajectory_per_rollout() -> None:
    with ToolfleetClient(URL) as client:
        Env = environment_class(client, ["python", "bash"])
        env = Env()
        # what GRPOTrainer does with an environment: its public functions are the tools
        members = [n for n, _ in inspect.getmembers(type(env), predicate=inspect.isfunction)]
        names = [n for n in members if n not in ("reset", "get_reward") and n[0] != "_"]
        tools = [getattr(env, n) for n in names]
        assert sorted(t.__name__ for t in tools) == ["bash", "python"]
        assert get_json_schema(env.python)["function"]["parameters"]["required"] == ["code"]
        assert env.reset(prompt="p") is None
        first = env.trajectory_id
        assert env.python(code="x = 41") == ""
        assert env.python(code="print(x + 1)") == "42"
        env.reset(prompt="p")
        assert env.trajectory_id != first
        assert "NameError" in env.python(code="print(x)")
        assert client.usage(env.trajectory_id).total.calls == 1
        env._release()

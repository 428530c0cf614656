"""Typed callables from tool specs (no network: the calls go to a recording stand-in), and the
Hermes parser's handling of reasoning."""

from __future__ import annotations

import inspect
from typing import Any, Literal

from toolfleet.client.adapters import HermesParser
from toolfleet.client.callables import environment_class, python_type, tool_functions
from toolfleet.core.protocol import Observation, TextPart, ToolSpec

SPEC = ToolSpec(
    name="image_crop",
    description="Zoom in:\n crop a region.",
    service="vision",
    input_schema={
        "type": "object",
        "properties": {
            "bbox_2d": {"type": "array", "items": {"type": "number"}, "description": "Box."},
            "coords": {"enum": ["pixels", "normalized"], "default": "pixels"},
            "label": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        },
        "required": ["bbox_2d"],
    },
)


class Recorder:
    """What the callables need of a client: the tool list, calls, releases."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], str | None]] = []
        self.released: list[str] = []

    def tools(self) -> list[ToolSpec]:
        return [SPEC]

    def call(self, tool: str, arguments: dict, trajectory_id: str | None = None) -> Observation:
        self.calls.append((tool, arguments, trajectory_id))
        return Observation(ok=True, tool=tool, call_id="c", content=[TextPart(text="done")])

    def release(self, trajectory_id: str) -> None:
        self.released.append(trajectory_id)


def test_types_from_json_schema() -> None:
    assert python_type({"type": "integer"}) == (int, False)
    assert python_type({"type": ["string", "null"]}) == (str, True)
    assert python_type({"type": "array", "items": {"type": "number"}}) == (list[float], False)
    assert python_type({"enum": ["a", "b"]}) == (Literal["a", "b"], False)


def test_function_signature_docstring_and_call() -> None:
    client = Recorder()
    (crop,) = tool_functions(client, trajectory_id="t1")  # type: ignore[arg-type]
    assert crop.__name__ == "image_crop"
    params = inspect.signature(crop).parameters
    assert list(params) == ["bbox_2d", "coords", "label"]
    assert params["coords"].default == "pixels"
    assert crop.__annotations__["bbox_2d"] == list[float]
    assert crop.__doc__.startswith("Zoom in: crop a region.\n\nArgs:\n    bbox_2d: Box.")
    assert crop([1, 2, 3, 4]) == "done"
    assert client.calls == [("image_crop", {"bbox_2d": [1, 2, 3, 4]}, "t1")]  # defaults: the tool's


def test_environment_releases_each_rollout() -> None:
    client = Recorder()
    Env = environment_class(client)  # type: ignore[arg-type]
    env = Env()
    public = [n for n, _ in inspect.getmembers(Env, inspect.isfunction) if not n.startswith("_")]
    assert sorted(public) == ["image_crop", "reset"]
    env.reset()
    first = env.trajectory_id
    env.image_crop(bbox_2d=[0, 0, 1, 1])
    env.reset()
    assert client.released == [first] and env.trajectory_id != first
    env.reset()  # no call in that rollout: nothing to release
    assert client.released == [first]


def test_hermes_skips_calls_in_reasoning() -> None:
    call = '<tool_call>{"name": "%s", "arguments": {}}</tool_call>'
    turn = f"<think>I could {call % 'a'}</think>\n{call % 'b'}"
    assert [c.tool for c in HermesParser().parse(turn).calls] == ["b"]
    opened_by_template = f"so {call % 'a'} maybe</think>{call % 'c'}"
    assert [c.tool for c in HermesParser().parse(opened_by_template).calls] == ["c"]
    still_thinking = f"<think>{call % 'a'}"
    assert HermesParser().parse(still_thinking).calls == []
    assert [c.tool for c in HermesParser(skip_reasoning=False).parse(turn).calls] == ["a", "b"]

"""toolfleet's tools as typed Python callables, for trainers that take tools as functions
(TRL's ``GRPOTrainer(tools=...)`` and ``environment_factory``, verl's ``function_tool_path``,
anything that reads a tool's schema with ``transformers.utils.get_json_schema``).

Each callable is generated from the gateway's tool list: its name is the tool's, its
parameters are the tool's arguments with type hints from their JSON Schema (``str``, ``int``,
``float``, ``bool``, ``list[...]``, ``dict``, ``Literal[...]``; optional ones ``X | None = None``),
and its docstring is Google style (summary, ``Args:``, ``Returns:``), which is what
``get_json_schema`` needs. Calling it calls the tool and returns the observation's text (a
failed call's diagnostic and hint included: the model reads why).

    client = ToolfleetClient()
    python, search = tool_functions(client, ["python", "search"])
    trainer = GRPOTrainer(..., tools=[python, search])          # stateless calls

    Env = environment_class(client, ["python"])                 # one trajectory per rollout
    trainer = GRPOTrainer(..., environment_factory=Env)
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from toolfleet.client.adapters.text import observation_text
from toolfleet.client.http import ToolfleetClient
from toolfleet.protocol import Observation, ToolSpec

Render = Callable[[Observation], str]

_SCALARS: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool}


def python_type(schema: dict[str, Any]) -> tuple[Any, bool]:
    """The type hint of a JSON Schema, and whether it admits null."""
    if "enum" in schema and all(isinstance(v, str | int | bool) for v in schema["enum"]):
        return Literal[tuple(schema["enum"])], False
    variants = schema.get("anyOf") or schema.get("oneOf")
    if variants:
        types, nullable = [], False
        for variant in variants:
            if variant.get("type") == "null":
                nullable = True
                continue
            hint, null = python_type(variant)
            nullable = nullable or null
            if hint not in types:
                types.append(hint)
        if not types:
            return Any, True
        union = types[0]
        for extra in types[1:]:
            union = union | extra
        return union, nullable
    kind = schema.get("type")
    if isinstance(kind, list):
        nullable = "null" in kind
        hint, _ = python_type({**schema, "type": next((k for k in kind if k != "null"), None)})
        return hint, nullable
    if kind == "array":
        item, _ = python_type(schema.get("items") or {})
        return list[item], False  # type: ignore[valid-type]
    if kind == "object":
        return dict, False
    return _SCALARS.get(kind, Any), False  # type: ignore[arg-type]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def signature_of(spec: ToolSpec) -> tuple[list[inspect.Parameter], dict[str, Any], list[str]]:
    """Parameters (required first), annotations and the ``Args:`` lines of a tool."""
    schema = spec.input_schema
    required = set(schema.get("required") or [])
    props: dict[str, Any] = schema.get("properties") or {}
    params, hints, lines = [], {}, []
    order = [n for n in props if n in required] + [n for n in props if n not in required]
    for name in order:
        prop = props[name]
        hint, nullable = python_type(prop)
        if name not in required or nullable:
            hint = hint | None if hint is not Any else Any
        default = inspect.Parameter.empty if name in required else prop.get("default")
        params.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=hint
            )
        )
        hints[name] = hint
        described = _one_line(prop.get("description") or prop.get("title") or name)
        lines.append(f"    {name}: {described}")
    return params, hints, lines


def docstring(spec: ToolSpec, args: list[str]) -> str:
    """A Google-style docstring of the tool."""
    parts = [_one_line(spec.description)]
    if args:
        parts.append("Args:\n" + "\n".join(args))
    parts.append("Returns:\n    What the tool printed or found, or why the call failed.")
    return "\n\n".join(parts)


def _specs(client: ToolfleetClient, names: Iterable[str] | None) -> list[ToolSpec]:
    served = {s.name: s for s in client.tools()}
    if names is None:
        return list(served.values())
    wanted = list(names)
    missing = [n for n in wanted if n not in served]
    if missing:
        raise KeyError(f"the gateway serves no tool named {', '.join(missing)}")
    return [served[n] for n in wanted]


def _typed(fn: Callable[..., str], spec: ToolSpec, method: bool) -> Callable[..., str]:
    """``fn`` dressed as the tool: its name, signature (required parameters first, ``self``
    first for a method), type hints and docstring."""
    params, hints, lines = signature_of(spec)
    positional = [p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in params]
    if method:
        positional.insert(0, inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD))
    fn.__signature__ = inspect.Signature(positional, return_annotation=str)  # type: ignore[attr-defined]
    fn.__annotations__ = {**hints, "return": str}
    fn.__name__ = fn.__qualname__ = spec.name
    fn.__doc__ = docstring(spec, lines)
    return fn


def _arguments(spec: ToolSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments by name; None (an optional argument left out) is not sent."""
    params, _, _ = signature_of(spec)
    given = dict(zip([p.name for p in params], args, strict=False))
    given.update(kwargs)
    return {k: v for k, v in given.items() if v is not None}


def _make(spec: ToolSpec, call: Callable[[dict[str, Any]], str]) -> Callable[..., str]:
    def tool(*args: Any, **kwargs: Any) -> str:
        return call(_arguments(spec, args, kwargs))

    return _typed(tool, spec, method=False)


def tool_functions(
    client: ToolfleetClient,
    names: Sequence[str] | None = None,
    *,
    trajectory_id: str | None = None,
    render: Render = observation_text,
) -> list[Callable[..., str]]:
    """One callable per tool (``names``, default every tool the gateway lists), calling it
    with ``trajectory_id`` (None: each call stateless) and returning ``render(observation)``."""

    def caller(name: str) -> Callable[[dict[str, Any]], str]:
        def call(arguments: dict[str, Any]) -> str:
            return render(client.call(name, arguments, trajectory_id=trajectory_id))

        return call

    return [_make(spec, caller(spec.name)) for spec in _specs(client, names)]


class ToolfleetEnvironment:
    """Base of the classes :func:`environment_class` makes: one trajectory per rollout.

    ``reset`` (TRL calls it before each rollout) releases the previous rollout's trajectory
    (its sessions and state) and starts a new one; every tool method calls its tool in it, so
    state persists within a rollout and never leaks into the next. ``_release`` releases the
    last one (TRL keeps environments for the whole run and does not close them: the
    gateway's session TTL frees an environment's last trajectory otherwise). Every public
    function of the class but ``reset`` is a tool to TRL, hence the underscores.
    """

    client: ToolfleetClient
    _render: Render = staticmethod(observation_text)
    _prefix: str = "trl"

    def __init__(self) -> None:
        self.trajectory_id: str | None = None
        self.calls = 0

    def reset(self, **example: Any) -> str | None:
        """Start the next rollout: a fresh trajectory. Nothing is added to the prompt."""
        self._release()
        self.trajectory_id = f"{self._prefix}-{uuid.uuid4().hex}"
        return None

    def _release(self) -> None:
        """Release the current trajectory, if it called any tool."""
        if self.trajectory_id is not None and self.calls:
            self.client.release(self.trajectory_id)
        self.trajectory_id, self.calls = None, 0

    def _call(self, tool: str, arguments: dict[str, Any]) -> str:
        if self.trajectory_id is None:
            self.reset()
        self.calls += 1
        return type(self)._render(
            self.client.call(tool, arguments, trajectory_id=self.trajectory_id)
        )


def environment_class(
    client: ToolfleetClient,
    names: Sequence[str] | None = None,
    *,
    render: Render = observation_text,
    class_name: str = "ToolfleetTools",
) -> type[ToolfleetEnvironment]:
    """A :class:`ToolfleetEnvironment` subclass with one typed method per tool, for TRL's
    ``environment_factory`` (the class itself is the factory)."""
    methods: dict[str, Any] = {"client": client, "_render": staticmethod(render)}
    for spec in _specs(client, names):
        methods[spec.name] = _bound_method(spec)
    return type(class_name, (ToolfleetEnvironment,), methods)


def _bound_method(spec: ToolSpec) -> Callable[..., str]:
    def method(self: ToolfleetEnvironment, *args: Any, **kwargs: Any) -> str:
        return self._call(spec.name, _arguments(spec, args, kwargs))

    return _typed(method, spec, method=True)

"""verl-tool's tool server, drop-in: ``POST /get_observation``.

The request is verl-tool's: ``trajectory_ids`` and ``actions`` (the model's raw turns), plus
per-trajectory lists (``finish``, ``is_last_step`` …) or an ``extra_fields`` list of objects.
The answer is verl-tool's: ``{"observations", "dones", "valids"}``. Each action goes to the
first tool that recognises it, as verl-tool's tools do:

- ``python``: code in ``<python>…</python>`` or fenced python blocks (all blocks, joined),
  stdin from ``extra_fields[i].stdin`` or a fenced ``input`` block; it runs in the
  trajectory's session, so variables persist across turns (like verl-tool's ipython tool);
  the observation is wrapped by how the action ended, as verl-tool's python tool does;
- ``search``: ``<search>query</search>`` → Search-R1's ``<information>Doc i(Title: …) …``;
- nothing recognised: observation ``{"obs": "", "invalid_reason": …}``, valid false.

``finish: true`` ends the trajectory: its sessions are released (state freed) and the answer
is an empty observation, done.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel
from toolfleet.core.errors import TrajectoryNotFoundError
from toolfleet.core.protocol import CallRequest, Observation
from toolfleet.core.runtime import Runtime
from toolfleet.gateway.auth import Tenant
from toolfleet.gateway.routes.tools import runtime

router = APIRouter(tags=["compatibility"])

PYTHON_TAG = re.compile(r"<python>(.*?)</python>", re.DOTALL)
PYTHON_FENCE = re.compile(r"```\n?python(.*?)```", re.DOTALL)
INPUT_FENCE = re.compile(r"```input\n(.*?)\n```", re.DOTALL)
SEARCH_TAG = re.compile(r"<search>(.*?)</search>", re.DOTALL)


class AgentResponse(BaseModel):
    """verl-tool's answer."""

    observations: list[str | dict[str, Any]]
    dones: list[bool]
    valids: list[bool]


def _extra_fields(data: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """verl-tool's rule: per-trajectory values of every other top-level key, merged into
    ``extra_fields`` when it is given."""
    others = [k for k in data if k not in ("trajectory_ids", "actions", "extra_fields")]
    for key in others:
        if not isinstance(data[key], list) or len(data[key]) != count:
            raise HTTPException(400, f"Length mismatch for {key}")
    base = data.get("extra_fields")
    if base is not None and (not isinstance(base, list) or len(base) != count):
        raise HTTPException(400, "Length mismatch for extra_fields")
    fields = [dict(f or {}) for f in base] if base is not None else [{} for _ in range(count)]
    for key in others:
        for i in range(count):
            fields[i][key] = data[key][i]
    return fields


@router.post("/get_observation", summary="verl-tool tool server (drop-in)")
async def get_observation(request: Request, tenant: Tenant) -> AgentResponse:
    """Observations for a batch of trajectories' actions."""
    try:
        data = await request.json()
    except ValueError as exc:
        raise HTTPException(400, "the body is not JSON") from exc
    if not isinstance(data, dict):
        raise HTTPException(400, "the body must be a JSON object")
    trajectory_ids = [str(t) for t in data.get("trajectory_ids") or []]
    actions = data.get("actions") or []
    if not trajectory_ids or not actions:
        raise HTTPException(400, "Missing trajectory_ids or actions")
    if len(trajectory_ids) != len(actions) or not all(isinstance(a, str) for a in actions):
        raise HTTPException(400, "trajectory_ids and actions length mismatch")
    fields = _extra_fields(data, len(actions))
    rt = runtime(request)
    rt.admit(len(actions))
    results = await asyncio.gather(
        *(
            _one(rt, tenant, t, a, f)
            for t, a, f in zip(trajectory_ids, actions, fields, strict=True)
        )
    )
    return AgentResponse(
        observations=[r[0] for r in results],
        dones=[r[1] for r in results],
        valids=[r[2] for r in results],
    )


async def _one(
    rt: Runtime, tenant: str, trajectory_id: str, action: str, field: dict[str, Any]
) -> tuple[str | dict[str, Any], bool, bool]:
    if field.get("finish"):
        with contextlib.suppress(TrajectoryNotFoundError):  # it never called a tool
            await rt.release_trajectory(tenant, trajectory_id)
        return "", True, True
    code = PYTHON_TAG.findall(action) or PYTHON_FENCE.findall(action)
    if code and rt.has_tool("python"):
        return await _python(rt, tenant, trajectory_id, action, field, code), False, True
    query = SEARCH_TAG.findall(action)
    if query and rt.has_tool("search"):
        return await _search(rt, tenant, trajectory_id, query[-1].strip()), False, True
    return {"obs": "", "invalid_reason": "no valid tool found for action"}, False, False


async def _python(
    rt: Runtime,
    tenant: str,
    trajectory_id: str,
    action: str,
    field: dict[str, Any],
    blocks: list[str],
) -> str:
    stdin = field.get("stdin") or None
    given = INPUT_FENCE.findall(action)
    if given:
        stdin = given[0].strip()
    arguments: dict[str, Any] = {"code": "\n".join(b.strip() for b in blocks)}
    if stdin:
        arguments["stdin"] = stdin
    obs = await rt.call(
        tenant, "python", CallRequest(arguments=arguments, trajectory_id=trajectory_id)
    )
    return _wrap(action, _execution_result(obs))


def _execution_result(obs: Observation) -> str:
    data = obs.data or {}
    text = f"{data.get('stdout', '')}\n{data.get('stderr', '')}"
    if data.get("result") is not None:
        text = f"{data.get('stdout', '')}{data['result']}\n{data.get('stderr', '')}"
    if obs.error is not None:
        text += f"\n{obs.error.detail or obs.error.message}"
    return text.strip(" \n")


def _wrap(action: str, result: str) -> str:
    """How verl-tool's python tool frames the output, from how the action ended."""
    stripped = action.strip(" \n")
    if action.endswith("```output"):
        return f"\n{result}\n```\n"
    if action.endswith("</tool_call>"):
        return f"\n```output\n{result}\n```\n"
    if action.endswith("<output>"):
        return f"\n{result}\n</output>\n"
    if "</python>" in action:
        return f"\n<output>\n{result}\n</output>\n"
    if stripped.endswith("```") or "```python" in action:
        if action.count("```") % 2 == 0:
            return f"\n```output\n{result}\n```\n"
        return f"output\n{result}\n```\n"
    return f"\n{result}\n"


async def _search(rt: Runtime, tenant: str, trajectory_id: str, query: str) -> str:
    obs = await rt.call(
        tenant, "search", CallRequest(arguments={"query": query}, trajectory_id=trajectory_id)
    )
    if not obs.ok:
        text = obs.error.message if obs.error else "search failed"
    else:
        text = obs.content[0].text if obs.content else ""  # type: ignore[union-attr]
    return f"\n\n<information>{text}</information>\n\n"

"""verl-tool's tool server, drop-in: ``POST /get_observation``.

The request is what verl-tool's agent loop posts: ``trajectory_ids`` and ``actions`` (the
model's raw turns, each cut after its stop token), ``finish`` and ``is_last_step`` per
trajectory, and ``extra_fields`` (the sample's ``extra_info``: ``db_id``, ``stdin``,
``images`` …). The answer is its server's: ``{"observations", "dones", "valids"}``.

verl-tool's server is started with ``--tool_type a,b``; here the URL's query says the same
(``/get_observation?tool_type=python_code,search_retrieval``), or, without it, every tool type
whose toolfleet tools this gateway serves (:data:`~.verl_tool_tools.DEFAULT_TYPES`). Each
action goes to the first tool type that recognises it (:mod:`.verl_tool_tools`); one that
none recognises answers ``{"obs": "", "invalid_reason": "No valid tool found for action",
"available_tools": …}``, not valid. ``finish: true`` ends the trajectory: its session is
released (state freed) and the answer is an empty observation, done.

Other options of the query: ``framing=output`` (python_code's framing before 2025-08),
``pre_import_lib=true`` (verl-tool's imports before python code), ``topk=N`` (passages per
search), ``done_if_invalid=true``.

The request is checked as verl-tool's server checks it (a pydantic model): a malformed one is
422 naming the field (``actions.1``: not a string, ``trajectory_ids``: a string instead of a
list, ``extra_fields.0``: not an object, lengths that differ), never a 500; top-level keys it
does not know are ignored as verl-tool ignores them, and named in the
``X-Toolfleet-Ignored-Keys`` header.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from toolfleet.core.errors import TrajectoryNotFoundError
from toolfleet.core.runtime import Runtime
from toolfleet.gateway.auth import Tenant
from toolfleet.gateway.openapi_docs import examples
from toolfleet.gateway.routes.tools import runtime
from toolfleet.sandbox.routes.verl_tool_tools import (
    BY_TYPE,
    DEFAULT_TYPES,
    ObsValue,
    Options,
    ToolSet,
    Turn,
)

log = logging.getLogger(__name__)

router = APIRouter(tags=["compatibility"])

IGNORED_HEADER = "X-Toolfleet-Ignored-Keys"


class ActionRequest(BaseModel):
    """verl-tool's request (its server's ``ActionRequest``)."""

    model_config = ConfigDict(extra="allow")

    trajectory_ids: list[str] = Field(min_length=1, description="One id per trajectory.")
    actions: list[str] = Field(min_length=1, description="The model's turn, per trajectory.")
    extra_fields: list[dict[str, Any]] | None = Field(
        default=None, description="Per trajectory: the sample's extra_info."
    )
    finish: list[bool] | None = Field(default=None, description="True: end the trajectory.")
    is_last_step: list[bool] | None = Field(default=None, description="The rollout's last turn.")

    @model_validator(mode="after")
    def _lengths(self) -> ActionRequest:
        count = len(self.trajectory_ids)
        for name in ("actions", "extra_fields", "finish", "is_last_step"):
            value = getattr(self, name)
            if value is not None and len(value) != count:
                raise ValueError(
                    f"{name} has {len(value)} items for {count} trajectory_ids (one each)"
                )
        return self

    def fields(self) -> list[dict[str, Any]]:
        """Per trajectory, its ``extra_fields`` with ``finish`` and ``is_last_step`` added
        (unless the extra fields give them), as verl-tool's server merges them."""
        fields = [dict(f) for f in self.extra_fields or [{} for _ in self.trajectory_ids]]
        for key in ("finish", "is_last_step"):
            values = getattr(self, key)
            if values is not None and key not in fields[0]:
                for f, v in zip(fields, values, strict=True):
                    f[key] = v
        return fields


class AgentResponse(BaseModel):
    """verl-tool's answer."""

    observations: list[str | dict[str, Any]]
    dones: list[bool]
    valids: list[bool]


def tool_set(rt: Runtime, tool_type: str | None) -> ToolSet:
    """The tool types asked for (all served ones by default), or a 400 naming what is
    unknown or not served."""
    if tool_type is None:
        names = [t for t in DEFAULT_TYPES if all(rt.has_tool(n) for n in BY_TYPE[t].needs)]
    else:
        names = [n.strip() for n in tool_type.split(",") if n.strip() and n.strip() != "finish"]
        unknown = [n for n in names if n not in BY_TYPE]
        if unknown:
            raise HTTPException(
                400,
                f"tool_type: unknown verl-tool tool type(s) {', '.join(unknown)}; served: "
                f"{', '.join(BY_TYPE)}",
            )
        for name in names:
            missing = [n for n in BY_TYPE[name].needs if not rt.has_tool(n)]
            if missing:
                raise HTTPException(
                    400,
                    f"tool_type: {name} runs on toolfleet's {', '.join(missing)} tool, which "
                    "this gateway does not serve",
                )
    return ToolSet([BY_TYPE[n]() for n in names])


@router.post(
    "/get_observation",
    summary="verl-tool tool server (drop-in)",
    response_model=AgentResponse,
    openapi_extra=examples(
        {
            "trajectory_ids": ["t1"],
            "actions": ["<python>print(6*7)</python>"],
            "finish": [False],
            "is_last_step": [False],
        },
        {"observations": ["\n<result>\n42\n</result>\n"], "dones": [False], "valids": [True]},
    ),
)
async def get_observation(
    body: ActionRequest,
    request: Request,
    tenant: Tenant,
    tool_type: str | None = Query(
        default=None, description="verl-tool's --tool_type: comma-separated tool types."
    ),
    framing: str = Query(default="result", pattern="^(result|output)$"),
    pre_import_lib: bool = Query(default=False),
    topk: int | None = Query(default=None, ge=1),
    done_if_invalid: bool = Query(default=False),
) -> JSONResponse:
    """Observations for a batch of trajectories' actions."""
    rt = runtime(request)
    tools = tool_set(rt, tool_type)
    options = Options(framing, pre_import_lib, topk, done_if_invalid)  # type: ignore[arg-type]
    fields = body.fields()
    rt.admit(len(body.actions))
    results = await asyncio.gather(
        *(
            _one(tools, Turn(rt, tenant, t, a, f, options))
            for t, a, f in zip(body.trajectory_ids, body.actions, fields, strict=True)
        )
    )
    answer = AgentResponse(
        observations=[r[0] for r in results],
        dones=[r[1] for r in results],
        valids=[r[2] for r in results],
    )
    headers = {}
    ignored = sorted(body.model_extra or {})
    if ignored:
        log.info("get_observation ignored keys: %s", ", ".join(ignored))
        headers[IGNORED_HEADER] = ", ".join(ignored).encode("ascii", "replace").decode()[:1000]
    return JSONResponse(answer.model_dump(), headers=headers)


async def _one(tools: ToolSet, turn: Turn) -> tuple[ObsValue, bool, bool]:
    if turn.extra.get("finish"):
        with contextlib.suppress(TrajectoryNotFoundError):  # it never called a tool
            await turn.rt.release_trajectory(turn.tenant, turn.trajectory_id)
        return "", True, True
    found = tools.identify(turn.action)
    if found is None:
        invalid = {
            "obs": "",
            "invalid_reason": "No valid tool found for action",
            "available_tools": tools.usage(),
        }
        return invalid, turn.options.done_if_invalid, False
    tool, parsed = found
    return await tool.run(turn, parsed)

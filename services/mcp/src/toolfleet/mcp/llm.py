"""The ``llm`` tool kind: a model behind an OpenAI-compatible endpoint, called as a tool.

As in ToolOrchestra, an orchestrating model may hand a sub-task to another model; what that
costs is what an efficiency reward needs. Each call POSTs ``{url}/chat/completions`` and
returns the answer's text; the endpoint's token counts (``usage``) are priced with the
configured per-token prices and booked as the call's cost in the usage ledger, the tokens
with it (``input_tokens``, ``output_tokens``: the call's ``usage`` and the trajectory's
ledger), and shown in the observation's ``data``.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Literal

import httpx
from pydantic import Field
from toolfleet.core.errors import ToolError
from toolfleet.core.protocol import ErrorKind
from toolfleet.core.tool import CallContext, Tool, ToolArguments, ToolResult
from toolfleet.mcp.settings import LlmConfig

if TYPE_CHECKING:
    from toolfleet.mcp.service import McpService


class Message(ToolArguments):
    """One chat message."""

    role: Literal["system", "user", "assistant"] = Field(description="Who says it.")
    content: str = Field(description="What is said.")


class LlmArgs(ToolArguments):
    """Arguments of a model tool: a prompt, or messages."""

    prompt: str | None = Field(default=None, min_length=1, description="The request.")
    messages: list[Message] | None = Field(
        default=None, min_length=1, description="A conversation, instead of a prompt."
    )
    max_tokens: int | None = Field(default=None, ge=1, description="Longest answer, in tokens.")
    temperature: float | None = Field(default=None, ge=0, le=2, description="Sampling heat.")


class LlmTool(Tool[LlmArgs]):
    """One configured model."""

    name = "llm"
    description = ""
    Arguments = LlmArgs
    max_concurrency = 64

    def __init__(self, service: McpService, config: LlmConfig) -> None:
        super().__init__(service)
        self.config = config
        self.name = config.name  # type: ignore[misc]
        self.description = config.description or (  # type: ignore[misc]
            f"Asks the {config.model} model; give a prompt (or messages), get its answer. "
            "Each call costs by the tokens read and written."
        )
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        headers = {}
        if self.config.api_key_env:
            key = os.environ.get(self.config.api_key_env)
            if not key:
                raise RuntimeError(
                    f"[mcp] llm {self.config.name!r}: ${self.config.api_key_env} is not set"
                )
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.AsyncClient(base_url=self.config.url.rstrip("/"), headers=headers)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def call(self, args: LlmArgs, ctx: CallContext) -> ToolResult:
        if (args.prompt is None) == (args.messages is None):
            raise ToolError(
                ErrorKind.invalid_arguments,
                "give either prompt or messages",
                hint='Send {"prompt": "..."} or {"messages": [{"role": "user", "content": ...}]}.',
            )
        messages: list[dict[str, Any]] = []
        if self.config.system:
            messages.append({"role": "system", "content": self.config.system})
        if args.prompt is not None:
            messages.append({"role": "user", "content": args.prompt})
        else:
            messages += [m.model_dump() for m in args.messages or []]
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "max_tokens": min(args.max_tokens or self.config.max_tokens, self.config.max_tokens),
        }
        if args.temperature is not None:
            body["temperature"] = args.temperature
        assert self._client is not None
        try:
            response = await self._client.post(
                "/chat/completions", json=body, timeout=max(0.1, ctx.deadline - time.monotonic())
            )
        except httpx.HTTPError as exc:
            raise ToolError(
                ErrorKind.unavailable,
                f"the {self.config.name} model endpoint cannot be reached: {type(exc).__name__}",
                detail=str(exc)[:1000] or None,
                hint="Send the call again later.",
                retryable=True,
            ) from None
        if response.status_code != 200:
            kind = ErrorKind.rate_limited if response.status_code == 429 else ErrorKind.unavailable
            raise ToolError(
                kind,
                f"the {self.config.name} model endpoint answered HTTP {response.status_code}",
                detail=response.text[:2000] or None,
                hint="Send the call again later.",
                retryable=response.status_code in (429, 500, 502, 503, 504),
            )
        try:
            payload = response.json()
            text = payload["choices"][0]["message"].get("content") or ""
            usage = payload.get("usage") or {}
            # counts the ledger books: whole and not negative
            tokens_in = max(0, int(usage.get("prompt_tokens") or 0))
            tokens_out = max(0, int(usage.get("completion_tokens") or 0))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise ToolError(
                ErrorKind.internal,
                f"the {self.config.name} model endpoint's answer is not a chat completion",
                detail=response.text[:2000] or None,
                retryable=True,
            ) from None
        cost = tokens_in * self.config.price_input + tokens_out * self.config.price_output
        data = {
            "model": payload.get("model", self.config.model),
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "cost": cost,
            "finish_reason": payload["choices"][0].get("finish_reason"),
        }
        return ToolResult.text(
            text or "(empty answer)",
            data=data,
            cost=cost,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
        )

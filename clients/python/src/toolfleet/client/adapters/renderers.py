"""Observations rendered in each trainer's convention, the text appended to the model's context
after its turn (or, for chat loops, ``role: "tool"`` messages).

- :class:`SearchR1Renderer`: Search-R1 (and verl-tool's search),
  ``\\n\\n<information>Doc 1(Title: …) …</information>\\n\\n``;
- :class:`VerlToolRenderer`: verl-tool's code tools, ``<result>``, a fenced
  ```` ```result ```` block or ``<tool_response>``, by how the turn ended;
- :class:`SkyRLRenderer`: SkyRL-SQL,
  ``\\n\\n<observation>…\\n<reminder>…</reminder></observation>\\n\\n`` (a user message);
- :class:`ToRLRenderer`: ToRL, ``\\n```output\\n…\\n```\\n``;
- :class:`ReToolRenderer`: ReTool, ``\\n\\n<interpreter>\\n…\\n</interpreter>\\n\\n``;
- :class:`HermesRenderer`: Hermes / Qwen chat templates as text,
  ``<tool_response>\\n…\\n</tool_response>`` per call;
- :func:`tool_messages`: OpenAI / Hermes chat messages, ``{"role": "tool", …}`` per call.

Each takes a :class:`~toolfleet.client.adapters.truncation.Truncation` (None: no cap).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from toolfleet.client.adapters.calls import ParsedCall
from toolfleet.client.adapters.text import (
    IMAGE_PLACEHOLDER,
    as_list,
    observation_text,
    search_passages,
    search_r1_passages,
)
from toolfleet.client.adapters.truncation import Truncation
from toolfleet.protocol import ImagePart, Observation

Observations = Observation | Sequence[Observation]


@dataclass(frozen=True)
class TextRenderer:
    """Base of the text renderers: the observations' text (joined by ``separator``), cut by
    ``truncation``, wrapped by :meth:`wrap`."""

    truncation: Truncation | None = None
    errors: bool = True
    """Show failed calls' diagnostics."""
    hints: bool = True
    """Show diagnostics' hints (written for the model)."""
    image: str = IMAGE_PLACEHOLDER
    """How an image part reads in text ("" drops it)."""
    separator: str = "\n"

    def text(self, obs: Observation) -> str:
        """One observation's text."""
        return observation_text(obs, errors=self.errors, hints=self.hints, image=self.image)

    def body(self, observations: Sequence[Observation]) -> str:
        """The text inside the wrapper."""
        return self.separator.join(self.text(o) for o in observations)

    def wrap(self, body: str, turn: str, **context: Any) -> str:
        """``body`` in the trainer's wrapper (``turn``: the model's turn, for renderers whose
        shape depends on it)."""
        return body

    def render(self, observations: Observations, turn: str = "", **context: Any) -> str:
        """The text to append after the model's ``turn``."""
        body = self.body(as_list(observations))
        cap = self.truncation
        if cap is not None and cap.scope == "body":
            body, _ = cap.apply(body)
        text = self.wrap(body, turn, **context)
        if cap is not None and cap.scope == "whole":
            text, _ = cap.apply(text)
        return text


#: What Search-R1 appends when a turn has neither a search nor an answer.
SEARCH_R1_INVALID = (
    "\nMy previous action is invalid. If I want to search, I should put the query between "
    "<search> and </search>. If I want to give the final answer, I should put the answer "
    "between <answer> and </answer>. Let me try again.\n"
)


@dataclass(frozen=True)
class SearchR1Renderer(TextRenderer):
    """Search-R1's ``<information>`` block. Search results (the ``search`` tool's
    ``data.results``) read ``Doc i(Title: title) text``, one line per passage, queries
    separated by ``---``; any other observation reads as its text."""

    invalid_message: str = SEARCH_R1_INVALID

    def text(self, obs: Observation) -> str:
        """Passages of a search observation, else the observation's text."""
        passages = search_passages(obs) if obs.ok else None
        if passages is None:
            return super().text(obs)
        return "\n---\n".join(search_r1_passages(hits).strip() for hits in passages)

    def wrap(self, body: str, turn: str, **context: Any) -> str:
        """``\\n\\n<information>body</information>\\n\\n``."""
        return f"\n\n<information>{body.strip()}</information>\n\n"

    def invalid(self) -> str:
        """What Search-R1 shows after a turn with no valid action."""
        return self.invalid_message


@dataclass(frozen=True)
class VerlToolRenderer(TextRenderer):
    """verl-tool's code-tool observation, whose shape follows how the model's turn ended:

    - a fenced ```` ```python ```` turn → ```` \\n```result\\n…\\n```\\n ```` (just the body
      and a closing fence when the turn left a fence open, as when it stops at
      ```` ```output ````);
    - a ``</tool_call>`` turn → ``<tool_response>`` around a fenced ```` ```result ```` block;
    - otherwise (``<python>`` …) → ``\\n<result>\\n…\\n</result>\\n`` (just the body and the
      closing tag when the turn already opened ``<result>``).

    ``tag`` is ``result`` for verl-tool's current tools; its older ``python_code`` tool used
    ``output``.
    """

    tag: str = "result"

    def body(self, observations: Sequence[Observation]) -> str:
        """The observations' text, stripped of surrounding blank lines as verl-tool does."""
        return super().body(observations).strip(" \n")

    def wrap(self, body: str, turn: str, **context: Any) -> str:
        """The shape for ``turn``."""
        tag = self.tag
        if "```output" in turn or "```python" in turn:
            if turn.count("```") % 2 == 0:
                return f"\n```{tag}\n{body}\n```\n"
            return f"\n{body}\n```\n"
        if "</tool_call>" in turn:
            return f"\n<tool_response>\n```{tag}\n{body}\n```\n</tool_response>\n"
        if turn.strip(" \n").endswith(f"<{tag}>"):
            return f"\n{body}\n</{tag}>\n"
        return f"\n<{tag}>\n{body}\n</{tag}>\n"


@dataclass(frozen=True)
class SkyRLRenderer(TextRenderer):
    """SkyRL-SQL's ``<observation>`` block, with the turns-left reminder when
    ``turns_left`` is given (here or per call of :meth:`render`). SkyRL sends it as a user
    message (:meth:`message`). For SkyRL's own result text, call the sql tool with
    ``format="skyrl"``."""

    turns_left: int | None = None

    def wrap(self, body: str, turn: str, **context: Any) -> str:
        """``\\n\\n<observation>body\\n<reminder>…</reminder></observation>\\n\\n``."""
        left = context.get("turns_left", self.turns_left)
        reminder = (
            f"\n<reminder>You have {left} turns left to complete the task.</reminder>"
            if left is not None
            else ""
        )
        return f"\n\n<observation>{body}{reminder}</observation>\n\n"

    def message(self, observations: Observations, **context: Any) -> dict[str, str]:
        """The observation as SkyRL's environment returns it: a user message."""
        return {"role": "user", "content": self.render(observations, **context)}


@dataclass(frozen=True)
class ToRLRenderer(TextRenderer):
    """ToRL's interpreter output: a fenced ```` ```output ```` block after the code."""

    def wrap(self, body: str, turn: str, **context: Any) -> str:
        """``\\n```output\\nbody\\n```\\n``."""
        return f"\n```output\n{body.strip(chr(10))}\n```\n"


@dataclass(frozen=True)
class ReToolRenderer(TextRenderer):
    """ReTool's interpreter feedback: an ``<interpreter>`` block after ``</code>``."""

    def wrap(self, body: str, turn: str, **context: Any) -> str:
        """``\\n\\n<interpreter>\\nbody\\n</interpreter>\\n\\n``."""
        return f"\n\n<interpreter>\n{body.strip(chr(10))}\n</interpreter>\n\n"


@dataclass(frozen=True)
class HermesRenderer(TextRenderer):
    """Tool responses as the Hermes / Qwen chat templates write them: one
    ``<tool_response>\\n…\\n</tool_response>`` per observation, each cut on its own. With
    ``chatml`` the block is a whole ChatML user turn, closing the assistant's turn first
    (``<|im_end|>\\n<|im_start|>user\\n…<|im_end|>\\n<|im_start|>assistant\\n``), for loops
    that append text to the token stream rather than messages."""

    chatml: bool = False

    def render(self, observations: Observations, turn: str = "", **context: Any) -> str:
        """The tool responses."""
        blocks = []
        for obs in as_list(observations):
            text = self.text(obs)
            if self.truncation is not None:
                text, _ = self.truncation.apply(text)
            blocks.append(f"<tool_response>\n{text}\n</tool_response>")
        joined = "\n".join(blocks)
        if self.chatml:
            return f"<|im_end|>\n<|im_start|>user\n{joined}<|im_end|>\n<|im_start|>assistant\n"
        return joined


def _image_url(part: ImagePart) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": f"data:{part.mime_type};base64,{part.data}"}}


def tool_messages(
    calls: Sequence[ParsedCall | None],
    observations: Sequence[Observation],
    *,
    style: Literal["openai", "hermes"] = "openai",
    truncation: Truncation | None = None,
    images: Literal["text", "parts"] = "text",
    errors: bool = True,
    hints: bool = True,
) -> list[dict[str, Any]]:
    """One ``role: "tool"`` message per observation, in order.

    ``openai``: ``{"role": "tool", "tool_call_id": <call id>, "content": …}``;
    ``hermes``: ``{"role": "tool", "name": <tool>, "content": …}`` (what Qwen's and Hermes'
    chat templates render as ``<tool_response>``). With ``images="parts"`` an observation
    holding images gets list content: its text, then ``image_url`` parts with data URLs (for
    vision models whose template accepts them); else images read as placeholders. ``calls``
    pairs each observation with its call (None for a parse error's observation).
    """
    if len(calls) != len(observations):
        raise ValueError(f"{len(calls)} calls for {len(observations)} observations")
    messages = []
    for i, (call, obs) in enumerate(zip(calls, observations, strict=True)):
        placeholder = "" if images == "parts" else IMAGE_PLACEHOLDER
        text = observation_text(obs, errors=errors, hints=hints, image=placeholder)
        if truncation is not None:
            text, _ = truncation.apply(text)
        content: Any = text
        pictures = [p for p in obs.content if isinstance(p, ImagePart)]
        if images == "parts" and pictures:
            content = ([{"type": "text", "text": text}] if text else []) + [
                _image_url(p) for p in pictures
            ]
        message: dict[str, Any] = {"role": "tool", "content": content}
        if style == "openai":
            message["tool_call_id"] = call.id if call is not None and call.id else f"invalid_{i}"
        else:
            message["name"] = call.tool if call is not None else obs.tool
        messages.append(message)
    return messages


def assistant_message(content: str | None, calls: Sequence[ParsedCall]) -> dict[str, Any]:
    """The OpenAI assistant message that made ``calls`` (``tool_calls`` with JSON-string
    arguments), to keep a chat history consistent with :func:`tool_messages`."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {
                "id": c.id or f"call_{i}",
                "type": "function",
                "function": {"name": c.tool, "arguments": json.dumps(c.arguments)},
            }
            for i, c in enumerate(calls)
        ]
    return message

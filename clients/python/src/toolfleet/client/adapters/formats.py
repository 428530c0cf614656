"""Each trainer's convention as one object: how its model writes calls, how it is shown the
results, where generation stops, what marks the final answer.

Every preset takes ``hints``: toolfleet adds a diagnostic's hint (a line written for the
model: what to try next) to a failed call's text; ``hints=False`` renders only what the
trainer's own tools showed, byte for byte where toolfleet's tool text matches theirs (the sql
tool's ``format="skyrl"``, the interpreter's traceback).

    fmt = formats.search_r1()
    parsed = fmt.parse(turn)                      # -> ParseResult
    observations = client.batch(parsed.tool_calls(trajectory_id=tid))
    context += turn + fmt.render(observations, turn)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from toolfleet.client.adapters.calls import ParseResult
from toolfleet.client.adapters.parsers import (
    FencedCodeParser,
    FirstOf,
    HermesParser,
    Parser,
    Select,
    TagParser,
    final_answer,
)
from toolfleet.client.adapters.renderers import (
    HermesRenderer,
    Observations,
    ReToolRenderer,
    SearchR1Renderer,
    SkyRLRenderer,
    TextRenderer,
    ToRLRenderer,
    VerlToolRenderer,
)
from toolfleet.client.adapters.truncation import Truncation


@dataclass(frozen=True)
class TrainerFormat:
    """A trainer's conventions: parser, renderer, stop strings, answer tag."""

    name: str
    parser: Parser
    renderer: TextRenderer
    stop: Sequence[str] = ()
    """Stop strings to give the inference engine so a turn ends at its call."""
    answer_tag: str | None = "answer"
    """The tag of the final answer (None: the format has none)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def parse(self, turn: str) -> ParseResult:
        """The calls of the model's turn."""
        return self.parser.parse(turn)

    def render(self, observations: Observations, turn: str = "", **context: Any) -> str:
        """The observations in this trainer's convention."""
        return self.renderer.render(observations, turn, **context)

    def answer(self, turn: str) -> str | None:
        """The final answer of the turn, if it gives one."""
        return final_answer(turn, self.answer_tag) if self.answer_tag else None


def search_r1(
    truncation: Truncation | None = None,
    select: Select = "first",
    top_k: int | None = None,
    hints: bool = True,
) -> TrainerFormat:
    """Search-R1: ``<search>query</search>`` (the first one of a turn) → the ``search`` tool
    (``top_k`` passages; the index's default when None); results in ``<information>``;
    ``<answer>`` ends the trajectory."""
    extra = {} if top_k is None else {"top_k": top_k}
    return TrainerFormat(
        "search-r1",
        TagParser("search", "search", "query", select=select, extra_arguments=extra),
        SearchR1Renderer(truncation=truncation, hints=hints),
        stop=("</search>", "</answer>"),
    )


def verl_tool_python(
    truncation: Truncation | None = None, tag: str = "result", hints: bool = True
) -> TrainerFormat:
    """verl-tool's code tool: every ``<python>`` block of a turn (else every fenced python
    block), joined into one program; the result shaped by how the turn ended."""
    return TrainerFormat(
        "verl-tool-python",
        FirstOf(
            TagParser("python", "python", "code", select="all", join="\n"),
            FencedCodeParser(select="all", join="\n"),
        ),
        VerlToolRenderer(truncation=truncation, tag=tag, hints=hints),
        stop=("</python>", "```output", "<output>", "</tool_call>"),
    )


def verl_tool_search(
    truncation: Truncation | None = None, top_k: int | None = None, hints: bool = True
) -> TrainerFormat:
    """verl-tool's retrieval tool: the last ``<search>`` of a turn, Search-R1's rendering."""
    extra = {} if top_k is None else {"top_k": top_k}
    return TrainerFormat(
        "verl-tool-search",
        TagParser("search", "search", "query", select="last", extra_arguments=extra),
        SearchR1Renderer(truncation=truncation, hints=hints),
        stop=("</search>", "</answer>"),
    )


def skyrl_sql(
    db_id: str,
    turns_left: int | None = None,
    truncation: Truncation | None = None,
    hints: bool = True,
) -> TrainerFormat:
    """SkyRL-SQL: ``<sql>query</sql>`` (the first of a turn) → the ``sql`` tool on ``db_id``
    with SkyRL's result text (``format="skyrl"``); ``<observation>`` with the turns-left
    reminder; ``<solution>`` is the final SQL."""
    return TrainerFormat(
        "skyrl-sql",
        TagParser("sql", "sql", "query", extra_arguments={"db_id": db_id, "format": "skyrl"}),
        SkyRLRenderer(truncation=truncation, turns_left=turns_left, hints=hints),
        stop=("</sql>", "</solution>"),
        answer_tag="solution",
    )


def torl(truncation: Truncation | None = None, hints: bool = True) -> TrainerFormat:
    """ToRL: the last fenced python block of a turn; its output in a ```` ```output ````
    block (generation stops at ```` ```output ````)."""
    return TrainerFormat(
        "torl",
        FencedCodeParser(select="last"),
        ToRLRenderer(truncation=truncation, hints=hints),
        stop=("```output",),
        answer_tag=None,
    )


def retool(truncation: Truncation | None = None, hints: bool = True) -> TrainerFormat:
    """ReTool: ``<code>```python …```</code>`` (else a fenced block) → the ``python`` tool;
    feedback in ``<interpreter>``."""
    return TrainerFormat(
        "retool",
        FirstOf(
            TagParser("code", "python", "code", unwrap=True),
            FencedCodeParser(select="first"),
        ),
        ReToolRenderer(truncation=truncation, hints=hints),
        stop=("</code>",),
    )


def hermes(
    truncation: Truncation | None = None,
    select: Select = "all",
    chatml: bool = False,
    hints: bool = True,
) -> TrainerFormat:
    """Hermes / Qwen function calling: ``<tool_call>`` JSON blocks, ``<tool_response>``
    blocks back (as a ChatML user turn with ``chatml``)."""
    return TrainerFormat(
        "hermes",
        HermesParser(select=select),
        HermesRenderer(truncation=truncation, chatml=chatml, hints=hints),
        answer_tag=None,
    )

"""Read the tool calls out of a model's turn, in the conventions trainers use.

- :class:`HermesParser`: Hermes / Qwen ``<tool_call>{"name": ..., "arguments": ...}</tool_call>``
  (arguments an object or a JSON string; every block, the first or the last);
- :class:`TagParser`: one tag, one tool, one argument — ``<search>`` (Search-R1), ``<sql>``
  (SkyRL-SQL), ``<python>`` (verl-tool), ``<code>`` (ReTool, fence inside unwrapped);
- :class:`FencedCodeParser`: fenced ```` ```python ```` blocks (ToRL, verl-tool);
- :class:`FirstOf`: the first of several parsers that finds anything.

Parsers never raise on model output: what cannot be read is a :class:`ParseError` in the
result, with a message to show the model. Inference servers usually strip the stop string, so
a last block left open at the very end of the turn is accepted (``allow_unclosed``).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from toolfleet.client.adapters.calls import ParsedCall, ParseError, ParseResult

Select = Literal["all", "first", "last"]

#: End-of-turn tokens a decoded turn may still carry after an unclosed block.
END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "</s>", "<|end|>", "<eos>")


class Parser(Protocol):
    """Anything that reads calls out of a turn."""

    def parse(self, text: str) -> ParseResult:
        """The calls (and unreadable blocks) of ``text``."""
        ...


@dataclass(frozen=True)
class Block:
    """A tagged span of a turn."""

    content: str
    raw: str
    start: int
    end: int
    closed: bool


def find_blocks(text: str, open_tag: str, close_tag: str) -> list[Block]:
    """Every ``open_tag … close_tag`` span of ``text``, in order. A block opened again before
    it is closed, or still open at the end, is returned with ``closed`` False."""
    blocks: list[Block] = []
    pos = 0
    while True:
        start = text.find(open_tag, pos)
        if start < 0:
            return blocks
        inner = start + len(open_tag)
        close = text.find(close_tag, inner)
        reopen = text.find(open_tag, inner)
        if close < 0 or 0 <= reopen < close:
            end = reopen if reopen >= 0 else len(text)
            blocks.append(Block(text[inner:end], text[start:end], start, end, False))
        else:
            end = close + len(close_tag)
            blocks.append(Block(text[inner:close], text[start:end], start, end, True))
        pos = end


def select_blocks(blocks: list[Block], select: Select) -> list[Block]:
    """The blocks ``select`` keeps."""
    if not blocks or select == "all":
        return blocks
    return blocks[:1] if select == "first" else blocks[-1:]


def _strip_end_tokens(text: str) -> str:
    text = text.rstrip()
    changed = True
    while changed:
        changed = False
        for token in END_TOKENS:
            if text.endswith(token):
                text = text[: -len(token)].rstrip()
                changed = True
    return text


def _usable(block: Block, is_last: bool, allow_unclosed: bool) -> bool:
    return block.closed or (allow_unclosed and is_last)


def _unclosed_error(block: Block, open_tag: str, close_tag: str, tool: str | None) -> ParseError:
    return ParseError(
        f"{open_tag} is not closed by {close_tag}",
        block.raw,
        block.start,
        block.end,
        tool,
        hint=f"Close every {open_tag} block with {close_tag}.",
    )


def unwrap_fence(text: str) -> str:
    """The code inside a fenced block (```` ```python … ``` ````), or ``text`` itself."""
    stripped = text.strip()
    m = re.match(r"^```[ \t]*[\w+.-]*[ \t]*\n(.*?)(?:\n?```)?\s*$", stripped, re.S)
    return m.group(1) if m else stripped


# --------------------------------------------------------------------------- JSON


def decode_json(text: str, lenient: bool = True) -> tuple[Any, str | None]:
    """``(value, None)``, or ``(None, why)`` when ``text`` is not JSON. Lenient decoding also
    accepts raw newlines inside strings (code written across lines) and Python literals
    (single-quoted dicts)."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        why = f"{exc.msg} (line {exc.lineno}, column {exc.colno})"
    if not lenient:
        return None, why
    try:
        return json.loads(text, strict=False), None
    except json.JSONDecodeError:
        pass
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None, why
    if isinstance(value, dict | list):
        return value, None
    return None, why


# --------------------------------------------------------------------------- Hermes / Qwen


@dataclass(frozen=True)
class HermesParser:
    """Hermes / Qwen tool calls: ``<tool_call>{"name": "python", "arguments": {...}}
    </tool_call>``.

    ``arguments`` may be an object or a JSON string of one (``parameters`` is read as a
    synonym, and the OpenAI ``{"function": {"name", "arguments"}}`` shape is accepted); a
    block may hold a list of calls. ``select`` keeps every block, the first or the last.
    ``known_tools`` turns a call of any other tool into a :class:`ParseError` naming the
    known ones.
    """

    select: Select = "all"
    open_tag: str = "<tool_call>"
    close_tag: str = "</tool_call>"
    allow_unclosed: bool = True
    lenient: bool = True
    known_tools: Collection[str] | None = None
    skip_reasoning: bool = True
    """Calls quoted in the model's reasoning (``<think>…</think>``, Qwen3 and the like) are
    not calls, as TRL's response parsers read them."""

    def parse(self, text: str) -> ParseResult:
        """The calls of ``text``."""
        result = ParseResult()
        if self.skip_reasoning:
            text = blank_reasoning(text)
        blocks = find_blocks(text, self.open_tag, self.close_tag)
        chosen = select_blocks(blocks, self.select)
        for block in chosen:
            is_last = block is blocks[-1] and block.end == len(text)
            if not _usable(block, is_last, self.allow_unclosed):
                result.errors.append(_unclosed_error(block, self.open_tag, self.close_tag, None))
                continue
            body = block.content if block.closed else _strip_end_tokens(block.content)
            self._read(block, unwrap_fence(body), result)
        return result

    def _read(self, block: Block, body: str, result: ParseResult) -> None:
        def error(message: str, tool: str | None = None, hint: str | None = None) -> None:
            result.errors.append(
                ParseError(
                    message,
                    block.raw,
                    block.start,
                    block.end,
                    tool,
                    hint=hint
                    or 'Write each call as <tool_call>{"name": "<tool>", "arguments": {...}}'
                    "</tool_call> with valid JSON.",
                )
            )

        if not body.strip():
            error(f"{self.open_tag} block is empty")
            return
        value, why = decode_json(body, self.lenient)
        if why is not None:
            error(f"{self.open_tag} block is not valid JSON: {why}")
            return
        items = value if isinstance(value, list) else [value]
        for item in items:
            if not isinstance(item, dict):
                error(f"{self.open_tag} block must hold a JSON object, not {type(item).__name__}")
                continue
            if isinstance(item.get("function"), dict) and "name" not in item:
                call_id = item.get("id")
                item = {**item["function"], "id": call_id}
            name = item.get("name")
            if not isinstance(name, str) or not name.strip():
                error(f'{self.open_tag} block has no "name" of the tool to call')
                continue
            name = name.strip()
            raw_args = item.get("arguments", item.get("parameters"))
            arguments, problem = _arguments(raw_args, self.lenient)
            if problem is not None:
                error(f"arguments of the {name} call {problem}", tool=name)
                continue
            if self.known_tools is not None and name not in self.known_tools:
                error(
                    f"there is no tool named {name!r}",
                    tool=name,
                    hint=f"Call one of: {', '.join(sorted(self.known_tools))}.",
                )
                continue
            call_id = item.get("id")
            if not isinstance(call_id, str) or not call_id:
                call_id = f"call_{len(result.calls)}"
            result.calls.append(
                ParsedCall(
                    name,
                    arguments,
                    call_id,
                    block.raw,
                    block.start,
                    block.end,
                )
            )


def blank_reasoning(text: str, open_tag: str = "<think>", close_tag: str = "</think>") -> str:
    """``text`` with its reasoning blanked out (spaces, so positions stay): every closed
    ``<think>…</think>``, the text before a ``</think>`` that has no opener (templates that
    open the turn with ``<think>`` themselves), and an unclosed ``<think>`` to the end (the
    model was still reasoning)."""
    spans = []
    first_close = text.find(close_tag)
    first_open = text.find(open_tag)
    if first_close >= 0 and (first_open < 0 or first_close < first_open):
        spans.append((0, first_close + len(close_tag)))
    for block in find_blocks(text, open_tag, close_tag):
        spans.append((block.start, block.end))
    for start, end in spans:
        text = text[:start] + " " * (end - start) + text[end:]
    return text


def _arguments(raw: Any, lenient: bool) -> tuple[dict[str, Any], str | None]:
    if raw is None:
        return {}, None
    if isinstance(raw, str):
        if not raw.strip():
            return {}, None
        value, why = decode_json(raw, lenient)
        if why is not None:
            return {}, f"are a string that is not valid JSON: {why}"
        raw = value
    if not isinstance(raw, dict):
        return {}, f"must be a JSON object, not {type(raw).__name__}"
    return raw, None


# --------------------------------------------------------------------------- one tag, one tool


@dataclass(frozen=True)
class TagParser:
    """``<tag>content</tag>`` → a call of ``tool`` with ``{argument: content}`` (plus
    ``extra_arguments``, e.g. the ``db_id`` of a SQL task).

    ``select``: the first block (Search-R1, SkyRL), the last (verl-tool's search and sql),
    or all, each its own call — or, with ``join``, all blocks' contents joined into one call
    (verl-tool runs every ``<python>`` block of a turn as one program). ``unwrap`` takes the
    code out of a fence inside the tag (ReTool's ``<code>```python …```</code>``).
    """

    tag: str
    tool: str
    argument: str
    select: Select = "first"
    join: str | None = None
    unwrap: bool = False
    strip: bool = True
    allow_unclosed: bool = True
    extra_arguments: Mapping[str, Any] = field(default_factory=dict)

    @property
    def open_tag(self) -> str:
        """``<tag>``."""
        return f"<{self.tag}>"

    @property
    def close_tag(self) -> str:
        """``</tag>``."""
        return f"</{self.tag}>"

    def parse(self, text: str) -> ParseResult:
        """The calls of ``text``."""
        result = ParseResult()
        blocks = find_blocks(text, self.open_tag, self.close_tag)
        usable: list[tuple[Block, str]] = []
        for block in select_blocks(blocks, self.select):
            is_last = block is blocks[-1] and block.end == len(text)
            if not _usable(block, is_last, self.allow_unclosed):
                result.errors.append(
                    _unclosed_error(block, self.open_tag, self.close_tag, self.tool)
                )
                continue
            content = block.content if block.closed else _strip_end_tokens(block.content)
            if self.unwrap:
                content = unwrap_fence(content)
            if self.strip:
                content = content.strip()
            if not content.strip():
                result.errors.append(
                    ParseError(
                        f"{self.open_tag} block is empty",
                        block.raw,
                        block.start,
                        block.end,
                        self.tool,
                        hint=f"Put the {self.argument} between {self.open_tag} and "
                        f"{self.close_tag}.",
                    )
                )
                continue
            usable.append((block, content))
        if self.join is not None and len(usable) > 1:
            first, last = usable[0][0], usable[-1][0]
            joined = self.join.join(content for _, content in usable)
            raw = text[first.start : last.end]
            usable = [(Block(joined, raw, first.start, last.end, True), joined)]
        for block, content in usable:
            arguments = {**self.extra_arguments, self.argument: content}
            result.calls.append(
                ParsedCall(
                    self.tool,
                    arguments,
                    f"call_{len(result.calls)}",
                    block.raw,
                    block.start,
                    block.end,
                )
            )
        return result


# --------------------------------------------------------------------------- fenced code

_FENCE = re.compile(r"```[ \t]*([\w+.-]*)[ \t]*\n(.*?)(```|\Z)", re.S)


@dataclass(frozen=True)
class FencedCodeParser:
    """Fenced code blocks in one of ``languages`` → calls of ``tool`` with
    ``{argument: code}``. ToRL runs the last block of a turn; verl-tool joins every block.
    Fences of other languages (``output``, ``json`` …) are ignored."""

    tool: str = "python"
    argument: str = "code"
    languages: tuple[str, ...] = ("python", "py", "python3")
    select: Select = "last"
    join: str | None = None
    allow_unclosed: bool = True
    extra_arguments: Mapping[str, Any] = field(default_factory=dict)

    def parse(self, text: str) -> ParseResult:
        """The calls of ``text``."""
        result = ParseResult()
        blocks = [
            Block(m.group(2), m.group(0), m.start(), m.end(), m.group(3) == "```")
            for m in _FENCE.finditer(text)
            if m.group(1).lower() in self.languages
        ]
        usable: list[Block] = []
        for block in select_blocks(blocks, self.select):
            if not _usable(block, block is blocks[-1], self.allow_unclosed):
                result.errors.append(
                    ParseError(
                        "the ```python block is not closed by ```",
                        block.raw,
                        block.start,
                        block.end,
                        self.tool,
                        hint="Close the code block with ``` before asking for its output.",
                    )
                )
                continue
            code = block.content if block.closed else _strip_end_tokens(block.content)
            if not code.strip():
                result.errors.append(
                    ParseError(
                        "the ```python block is empty",
                        block.raw,
                        block.start,
                        block.end,
                        self.tool,
                        hint="Write the code inside the block.",
                    )
                )
                continue
            usable.append(Block(code.strip("\n"), block.raw, block.start, block.end, True))
        if self.join is not None and len(usable) > 1:
            joined = self.join.join(b.content for b in usable)
            raw = text[usable[0].start : usable[-1].end]
            usable = [Block(joined, raw, usable[0].start, usable[-1].end, True)]
        for block in usable:
            result.calls.append(
                ParsedCall(
                    self.tool,
                    {**self.extra_arguments, self.argument: block.content},
                    f"call_{len(result.calls)}",
                    block.raw,
                    block.start,
                    block.end,
                )
            )
        return result


# --------------------------------------------------------------------------- combinators


@dataclass(frozen=True)
class FirstOf:
    """The result of the first parser that finds a call or an error in the turn."""

    parsers: tuple[Parser, ...]

    def __init__(self, *parsers: Parser) -> None:
        object.__setattr__(self, "parsers", parsers)

    def parse(self, text: str) -> ParseResult:
        """The first non-empty result (an empty one if none finds anything)."""
        for parser in self.parsers:
            result = parser.parse(text)
            if not result.empty:
                return result
        return ParseResult()


def final_answer(text: str, tag: str = "answer", select: Select = "last") -> str | None:
    """The content of the turn's ``<answer>`` (or ``tag``) block, stripped; None without one.
    Only closed blocks count."""
    blocks = [b for b in find_blocks(text, f"<{tag}>", f"</{tag}>") if b.closed]
    chosen = select_blocks(blocks, "first" if select == "first" else "last")
    return chosen[0].content.strip() if chosen else None


def stop_at(text: str, stops: Collection[str]) -> str:
    """``text`` cut just after the first of ``stops`` it contains (kept), as Search-R1 cuts
    a generation after ``</search>`` or ``</answer>``."""
    cut = None
    for stop in stops:
        i = text.find(stop)
        if i >= 0 and (cut is None or i + len(stop) < cut):
            cut = i + len(stop)
    return text if cut is None else text[:cut]

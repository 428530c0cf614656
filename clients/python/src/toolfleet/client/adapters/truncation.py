"""How long an observation may be, and which part is kept when it is longer.

Trainers cap observations in their own units and directions: Search-R1 keeps the first
``max_obs_length`` tokens of the whole observation, verl-tool keeps the last ones by default
(``truncate_obs_side='left'``), SkyRL-SQL keeps the first 50 rows of a result over 9,000
characters. One :class:`Truncation` describes each of these; the presets below name them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol


class Tokenizer(Protocol):
    """What :class:`Truncation` needs of a tokenizer (Hugging Face tokenizers fit)."""

    def encode(self, text: str, *args: Any, **kwargs: Any) -> list[int]: ...

    def decode(self, ids: list[int], *args: Any, **kwargs: Any) -> str: ...


def _encode(tokenizer: Tokenizer, text: str) -> list[int]:
    try:
        return list(tokenizer.encode(text, add_special_tokens=False))
    except TypeError:  # tokenizers without the keyword (tiktoken ...)
        return list(tokenizer.encode(text))


@dataclass(frozen=True)
class Truncation:
    """A length cap and which part of a longer text survives.

    - ``max_chars``, or ``max_tokens`` counted with ``tokenizer``;
    - ``keep``: ``head`` (cut the end; Search-R1), ``tail`` (cut the start; verl-tool's
      ``truncate_obs_side='left'``), or ``both`` (cut the middle, keeping half the cap, rounded
      down, from each end);
    - ``marker`` goes where text was cut, ``prefix`` before a cut text, ``suffix`` after it
      (verl-tool appends ``...(truncated)`` after the end it kept);
    - ``max_lines``: instead of cutting characters, keep the first lines (SkyRL-SQL's
      "first 50 rows" — header plus 50 lines);
    - ``scope``: ``body`` cuts what the tool said, keeping the renderer's tags intact;
      ``whole`` cuts the rendered observation, tags included, as the trainers themselves do.
    """

    max_chars: int | None = None
    max_tokens: int | None = None
    tokenizer: Tokenizer | None = None
    keep: Literal["head", "tail", "both"] = "head"
    marker: str = ""
    prefix: str = ""
    suffix: str = ""
    max_lines: int | None = None
    scope: Literal["body", "whole"] = "body"

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.tokenizer is None:
            raise ValueError("max_tokens needs a tokenizer (or use max_chars)")
        if self.max_chars is None and self.max_tokens is None:
            raise ValueError("give max_chars or max_tokens")
        for name in ("max_chars", "max_tokens", "max_lines"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0")

    def over(self, text: str) -> bool:
        """True when ``text`` is longer than the cap."""
        if self.max_tokens is not None and self.tokenizer is not None:
            return len(_encode(self.tokenizer, text)) > self.max_tokens
        return self.max_chars is not None and len(text) > self.max_chars

    def apply(self, text: str) -> tuple[str, bool]:
        """``(text within the cap, whether it was cut)``."""
        if not self.over(text):
            return text, False
        if self.max_lines is not None:
            return self.prefix + "\n".join(text.split("\n")[: self.max_lines]), True
        if self.max_tokens is not None and self.tokenizer is not None:
            ids = _encode(self.tokenizer, text)
            cut = self._cut(ids, self.max_tokens)
            joined = self._join([self.tokenizer.decode(part) for part in cut])
            return self.prefix + joined + self.suffix, True
        assert self.max_chars is not None
        return self.prefix + self._join(self._cut(text, self.max_chars)) + self.suffix, True

    def _cut(self, seq: Any, n: int) -> list[Any]:
        if self.keep == "head":
            return [seq[:n]]
        if self.keep == "tail":
            return [seq[len(seq) - n :] if n else seq[:0]]
        half = n // 2  # as verl does: half of the cap from each end
        return [seq[:half], seq[len(seq) - half :] if half else seq[:0]]

    def _join(self, parts: list[str]) -> str:
        if self.keep == "head":
            return parts[0] + self.marker
        if self.keep == "tail":
            return self.marker + parts[0]
        return parts[0] + self.marker + parts[1]


def search_r1(tokenizer: Tokenizer, max_obs_length: int = 500) -> Truncation:
    """Search-R1: the first ``max_obs_length`` tokens of the whole observation
    (``data.max_obs_length``, 500 in its training scripts)."""
    return Truncation(max_tokens=max_obs_length, tokenizer=tokenizer, keep="head", scope="whole")


def verl_tool(
    tokenizer: Tokenizer,
    max_obs_length: int,
    side: Literal["left", "right", "middle"] = "left",
) -> Truncation:
    """verl-tool's agent loop: ``max_obs_length`` tokens of the whole observation;
    ``truncate_obs_side`` ``left`` (its default) keeps the last tokens and appends
    ``...(truncated)``, ``right`` keeps the first and appends ``(truncated)...``, ``middle``
    keeps half from each end around ``...(truncated)...``."""
    n = max_obs_length
    if side == "left":
        return Truncation(
            max_tokens=n, tokenizer=tokenizer, keep="tail", suffix="...(truncated)", scope="whole"
        )
    if side == "right":
        return Truncation(
            max_tokens=n, tokenizer=tokenizer, keep="head", marker="(truncated)...", scope="whole"
        )
    return Truncation(
        max_tokens=n, tokenizer=tokenizer, keep="both", marker="...(truncated)...", scope="whole"
    )


def verl(
    max_tool_response_length: int,
    side: Literal["left", "right", "middle"] = "middle",
    since_0_8: bool = True,
) -> Truncation:
    """verl's tool agent loop (``multi_turn.max_tool_response_length`` characters,
    ``tool_response_truncate_side``). verl 0.8 and later (checked on 0.8.0 and 0.9.1):
    ``left`` keeps the end after ``(truncated)...``, ``right`` keeps the start and appends
    ``...(truncated)``, ``middle`` keeps both ends around ``...(truncated)...``. Before 0.8
    (``since_0_8=False``) ``left`` and ``right`` were the other way round."""
    n = max_tool_response_length
    keep_end = (side == "left") == since_0_8
    if side == "middle":
        return Truncation(max_chars=n, keep="both", marker="...(truncated)...")
    if keep_end:
        return Truncation(max_chars=n, keep="tail", marker="(truncated)...")
    return Truncation(max_chars=n, keep="head", marker="...(truncated)")


#: SkyRL-SQL: a result text over 9,000 characters becomes its first 50 rows (header + 50
#: lines) after this notice. (The sql tool with ``format="skyrl"`` already does this itself.)
SKYRL_SQL = Truncation(
    max_chars=9000,
    max_lines=51,
    prefix="Truncated to 50 lines since returned response too long: ",
)

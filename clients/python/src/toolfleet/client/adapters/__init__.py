"""Trainer adapters: no network, only text.

Parse a model's turn into calls (:class:`HermesParser`, :class:`TagParser`,
:class:`FencedCodeParser`, :class:`FirstOf`), render observations in a trainer's convention
(:class:`SearchR1Renderer`, :class:`VerlToolRenderer`, :class:`SkyRLRenderer`,
:class:`ToRLRenderer`, :class:`ReToolRenderer`, :class:`HermesRenderer`,
:func:`tool_messages`), cap them (:class:`Truncation`), or take a trainer's whole convention
from :mod:`~toolfleet.client.adapters.formats`.
"""

from toolfleet.client.adapters import formats, truncation
from toolfleet.client.adapters.calls import ParsedCall, ParseError, ParseResult
from toolfleet.client.adapters.formats import TrainerFormat
from toolfleet.client.adapters.parsers import (
    FencedCodeParser,
    FirstOf,
    HermesParser,
    Parser,
    TagParser,
    decode_json,
    final_answer,
    stop_at,
)
from toolfleet.client.adapters.renderers import (
    SEARCH_R1_INVALID,
    HermesRenderer,
    ReToolRenderer,
    SearchR1Renderer,
    SkyRLRenderer,
    TextRenderer,
    ToRLRenderer,
    VerlToolRenderer,
    assistant_message,
    tool_messages,
)
from toolfleet.client.adapters.text import error_text, observation_text, table_text
from toolfleet.client.adapters.truncation import Truncation

__all__ = [
    "SEARCH_R1_INVALID",
    "FencedCodeParser",
    "FirstOf",
    "HermesParser",
    "HermesRenderer",
    "ParseError",
    "ParseResult",
    "ParsedCall",
    "Parser",
    "ReToolRenderer",
    "SearchR1Renderer",
    "SkyRLRenderer",
    "TagParser",
    "TextRenderer",
    "ToRLRenderer",
    "TrainerFormat",
    "Truncation",
    "VerlToolRenderer",
    "assistant_message",
    "decode_json",
    "error_text",
    "final_answer",
    "formats",
    "observation_text",
    "stop_at",
    "table_text",
    "tool_messages",
    "truncation",
]

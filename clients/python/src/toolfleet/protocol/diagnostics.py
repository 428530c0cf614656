"""A failed observation's diagnostic as text in its content, said once.

A trainer that shows the model ``content[*].text`` must show it why a call failed: every
failed observation's text says its diagnostic. A tool that says the failure in its own text
keeps its words (the code interpreter prints the traceback that is also the diagnostic's
``detail``; a timeout's text is its message); otherwise the runtime adds a text part with the
diagnostic, leaving out what the text already holds, so each fact reaches the model once.
"""

from __future__ import annotations

from toolfleet.protocol import ContentPart, ErrorDiagnostic, Observation, TextPart


def diagnostic_text(error: ErrorDiagnostic, shown: str = "") -> str:
    """``Error (kind): message``, the detail and ``Hint: …``, leaving out each piece that
    ``shown`` (the text the observation already holds) or an earlier piece contains."""
    lines: list[str] = []
    if error.message not in shown:
        lines.append(f"Error ({error.kind.value}): {error.message}")
    detail = (error.detail or "").strip()
    if detail and detail not in shown and not _each_line_in(detail, error.message):
        lines.append(detail)
    if error.hint and error.hint not in shown:
        lines.append(f"Hint: {error.hint}")
    return "\n".join(lines)


def with_diagnostic_text(obs: Observation) -> Observation:
    """``obs`` with its diagnostic's text appended to its content when it failed and its
    text parts do not say the failure already (unchanged otherwise). A tool whose text says
    it (a traceback, a timeout's message, SkyRL's own error line) keeps its own words."""
    if obs.ok or obs.error is None:
        return obs
    shown = "\n".join(p.text for p in obs.content if isinstance(p, TextPart))
    if obs.error.message in shown:
        return obs
    text = diagnostic_text(obs.error, shown)
    return obs.model_copy(update={"content": [*obs.content, TextPart(text=text)]})


def without_diagnostic_text(obs: Observation) -> list[ContentPart]:
    """The content without the text part :func:`with_diagnostic_text` added, for renderers
    that say the diagnostic their own way (the client's adapters, with their ``errors`` and
    ``hints`` options; drop-in routes that answer in another server's words)."""
    if obs.ok or obs.error is None or not obs.content:
        return list(obs.content)
    *rest, last = obs.content
    shown = "\n".join(p.text for p in rest if isinstance(p, TextPart))
    if isinstance(last, TextPart) and last.text == diagnostic_text(obs.error, shown):
        return rest
    return list(obs.content)


def _each_line_in(detail: str, message: str) -> bool:
    """True when the message already says every line of the detail: the field errors of
    ``invalid_arguments`` (``code: Field required`` in both; ``x: unknown argument`` beside
    the message's ``unknown argument 'x'``)."""

    def said(line: str) -> bool:
        where, _, what = line.partition(": ")
        return line in message or (bool(what) and where in message and what in message)

    return all(said(line.strip()) for line in detail.splitlines() if line.strip())

"""A failed query, engine-neutral: what kind of failure, where in the query, what to try.

Each engine module turns its driver's exceptions into a :class:`QueryError`; the tools turn
that into the call's :class:`~toolfleet.core.protocol.ErrorDiagnostic`.
"""

from __future__ import annotations

from dataclasses import dataclass

from toolfleet.core.protocol import ErrorDiagnostic, ErrorKind

#: What the failure is about, when a schema lookup can say more (did-you-mean).
SUBJECTS = ("table", "column", "ambiguous_column", "function")


@dataclass(frozen=True)
class Position:
    """A place in the query text: 0-based character offset, 1-based line and column."""

    offset: int
    line: int
    column: int

    @classmethod
    def at(cls, query: str, offset: int) -> Position:
        """The position of ``offset`` in ``query`` (clamped to the text)."""
        offset = max(0, min(offset, len(query)))
        line = query.count("\n", 0, offset) + 1
        column = offset - (query.rfind("\n", 0, offset) + 1) + 1
        return cls(offset=offset, line=line, column=column)

    def excerpt(self, query: str, width: int = 100) -> str:
        """The query line holding the position, with a caret under it."""
        lines = query.split("\n")
        text = lines[self.line - 1] if self.line - 1 < len(lines) else ""
        col = self.column - 1
        start = max(0, col - width // 2) if len(text) > width else 0
        shown = text[start : start + width]
        prefix = "..." if start else ""
        suffix = "..." if start + width < len(text) else ""
        return f"{prefix}{shown}{suffix}\n{' ' * (len(prefix) + col - start)}^"


class QueryError(Exception):
    """A query that failed, explained."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        engine_message: str | None = None,
        position: Position | None = None,
        hint: str | None = None,
        subject: tuple[str, str] | None = None,
        retryable: bool = False,
        discard_connection: bool = False,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.engine_message = engine_message
        self.position = position
        self.hint = hint
        self.subject = subject  # (one of SUBJECTS, the name the engine complained about)
        self.retryable = retryable
        self.discard_connection = discard_connection

    def diagnostic(self, query: str) -> ErrorDiagnostic:
        """The diagnostic of this failure of ``query``."""
        detail = []
        if self.position is not None:
            detail.append(
                f"at line {self.position.line}, column {self.position.column}:\n"
                + self.position.excerpt(query)
            )
        if self.engine_message and self.engine_message not in self.message:
            detail.append(f"engine said: {self.engine_message}")
        return ErrorDiagnostic(
            kind=self.kind,
            message=self.message,
            detail="\n".join(detail) or None,
            hint=self.hint,
            retryable=self.retryable,
        )


HINTS = {
    ErrorKind.timeout: "Make the query cheaper: filter with WHERE, join every table on a "
    "condition (no cross joins), make recursive CTEs stop, add LIMIT.",
    ErrorKind.permission_denied: "The database is read-only: only SELECT (and WITH ... SELECT) "
    "queries run. Compute what you need in the query instead of storing it.",
    ErrorKind.syntax_error: "Fix the SQL at the position shown, then run it again.",
}


def timeout(limit_s: float, engine_message: str | None = None) -> QueryError:
    """The failure of a query stopped at its time limit."""
    return QueryError(
        ErrorKind.timeout,
        f"the query ran longer than its {limit_s:.3g} s limit and was stopped",
        engine_message=engine_message,
        hint=HINTS[ErrorKind.timeout],
    )


def read_only(what: str, engine_message: str | None = None) -> QueryError:
    """The failure of a statement that would change the database."""
    return QueryError(
        ErrorKind.permission_denied,
        f"refused: the database is read-only ({what})",
        engine_message=engine_message,
        hint=HINTS[ErrorKind.permission_denied],
    )


def refused_function(what: str, why: str, engine_message: str | None = None) -> QueryError:
    """The failure of a query using a function or table that reaches past SQL (loads code,
    touches the process's memory, reads files)."""
    return QueryError(
        ErrorKind.permission_denied,
        f"refused: {what} is not allowed here ({why})",
        engine_message=engine_message,
        hint="Use SQL's ordinary functions; nothing outside the database can be reached "
        "from a query.",
    )


def one_statement(engine_message: str | None = None) -> QueryError:
    """The failure of a call holding several statements."""
    return QueryError(
        ErrorKind.syntax_error,
        "only one SQL statement per call",
        engine_message=engine_message,
        hint="Send one statement per call (a trailing semicolon is fine).",
    )

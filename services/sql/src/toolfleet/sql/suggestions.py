"""Did-you-mean hints from a database's real schema: the closest existing tables and columns
to a name the engine did not find, and the tables an ambiguous column could come from."""

from __future__ import annotations

import difflib
import re

from toolfleet.sql.schema import Schema, TableInfo

#: Functions models often borrow from another SQL dialect, with what the engine offers.
FUNCTION_HINTS: dict[str, dict[str, str]] = {
    "sqlite": {
        "year": "SQLite has no YEAR(); use strftime('%Y', col) (a string; CAST(... AS INTEGER) "
        "for a number).",
        "month": "SQLite has no MONTH(); use strftime('%m', col).",
        "day": "SQLite has no DAY(); use strftime('%d', col).",
        "now": "SQLite has no NOW(); use datetime('now') or date('now').",
        "curdate": "SQLite has no CURDATE(); use date('now').",
        "datediff": "SQLite has no DATEDIFF(); subtract julianday(a) - julianday(b).",
        "concat": "Concatenate with the || operator: a || ' ' || b.",
        "if": "Use iif(cond, a, b) or CASE WHEN cond THEN a ELSE b END.",
        "isnull": "Use IFNULL(x, default) or COALESCE(x, default).",
        "len": "Use length(x).",
        "to_char": "Use strftime(format, col) for dates, printf(format, x) for numbers.",
        "extract": "Use strftime('%Y', col) (or %m, %d ...) instead of EXTRACT.",
        "date_format": "Use strftime(format, col).",
        "std": "SQLite has no STD(); compute sqrt(avg(x*x) - avg(x)*avg(x)).",
        "stddev": "SQLite has no STDDEV(); compute sqrt(avg(x*x) - avg(x)*avg(x)).",
    },
    "postgresql": {
        "ifnull": "Use COALESCE(x, default).",
        "isnull": "Use COALESCE(x, default) or x IS NULL.",
        "year": "Use EXTRACT(YEAR FROM col) or date_part('year', col).",
        "month": "Use EXTRACT(MONTH FROM col).",
        "strftime": "Use to_char(col, 'YYYY-MM-DD').",
        "datediff": "Subtract dates directly (a::date - b::date) or use age(a, b).",
        "iif": "Use CASE WHEN cond THEN a ELSE b END.",
        "if": "Use CASE WHEN cond THEN a ELSE b END.",
        "group_concat": "Use string_agg(x::text, ',').",
        "julianday": "Subtract timestamps, or EXTRACT(EPOCH FROM a - b) / 86400.",
        "instr": "Use strpos(string, substring).",
    },
    "mariadb": {
        "strftime": "Use DATE_FORMAT(col, '%Y-%m-%d').",
        "julianday": "Use TO_DAYS(col) or DATEDIFF(a, b).",
        "iif": "Use IF(cond, a, b).",
        "string_agg": "Use GROUP_CONCAT(x SEPARATOR ',').",
        "to_char": "Use DATE_FORMAT(col, format).",
        "date_part": "Use EXTRACT(YEAR FROM col) or YEAR(col).",
    },
}


def close(name: str, candidates: list[str], n: int = 3) -> list[str]:
    """The candidates closest to ``name``: same name in another letter case first, then by
    similarity (difflib), at most ``n``."""
    lowered = {c.lower(): c for c in candidates}
    exact = [c for c in candidates if c.lower() == name.lower()]
    found = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)
    return list(dict.fromkeys(exact + [lowered[f] for f in found]))[:n]


def unknown_table(name: str, schema: Schema, engine: str) -> str:
    """What to say about a table the engine did not find."""
    bare = name.rsplit(".", 1)[-1].strip('"`[]')
    matches = close(bare, [t.name for t in schema.tables])
    if not matches:
        return f"There is no table {bare!r}. Tables: {_list(t.name for t in schema.tables)}."
    hint = f"Did you mean {_or(matches)}?"
    if engine == "postgresql" and any(m.lower() == bare.lower() and m != bare for m in matches):
        hint += (
            " PostgreSQL folds unquoted names to lower case: write mixed-case names in "
            'double quotes, e.g. "' + matches[0] + '".'
        )
    return hint


def unknown_column(name: str, schema: Schema, query: str, engine: str) -> str:
    """What to say about a column the engine did not find."""
    qualifier, _, bare = name.rpartition(".")
    bare = bare.strip('"`[]')
    tables = schema.mentioned(query) or schema.tables
    if qualifier:
        owner = schema.table(qualifier)
        if owner is not None:
            tables = [owner]
    found = _columns_like(bare, tables) or _columns_like(bare, schema.tables)
    if not found:
        shown = "; ".join(f"{t.name}({', '.join(c.name for c in t.columns)})" for t in tables[:4])
        return f"No column like {bare!r} in {shown}." if shown else f"No column like {bare!r}."
    options = [f"{t.name}.{c}" for c, t in found]
    hint = f"Did you mean {_or(options)}?"
    if engine == "postgresql" and any(c.lower() == bare.lower() and c != bare for c, _ in found):
        hint += " PostgreSQL folds unquoted names to lower case: quote mixed-case columns."
    return hint


def ambiguous_column(name: str, schema: Schema, query: str) -> str:
    """What to say about a column name that several tables of the query have."""
    bare = name.rsplit(".", 1)[-1].strip('"`[]')
    owners = [
        t.name
        for t in schema.mentioned(query)
        if any(c.name.lower() == bare.lower() for c in t.columns)
    ]
    if owners:
        return (
            f"Several tables in the query have a column {bare!r} ({', '.join(owners)}): "
            f"qualify it with the table name or its alias, e.g. {owners[0]}.{bare}."
        )
    return "Qualify the column with its table name or alias, e.g. t.column."


def function_hint(name: str, engine: str) -> str | None:
    """What the engine offers instead of a function models often borrow from another SQL
    dialect (None: not one of those)."""
    return FUNCTION_HINTS.get(engine, {}).get(name.split("(")[0].strip().lower())


def unknown_function(name: str, engine: str) -> str:
    """What to say about a function the engine does not have."""
    bare = name.split("(")[0].strip().lower()
    return function_hint(bare, engine) or (
        f"{engine} has no function {bare}(); check its name and arguments."
    )


#: Keywords whose misspellings are worth pointing out in a syntax error.
KEYWORDS = (
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP",
    "ORDER",
    "HAVING",
    "LIMIT",
    "JOIN",
    "INNER",
    "LEFT",
    "OUTER",
    "UNION",
    "DISTINCT",
    "BETWEEN",
    "LIKE",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "AS",
    "ON",
    "AND",
    "OR",
    "NOT",
    "NULL",
    "IN",
    "EXISTS",
    "WITH",
    "BY",
    "DESC",
    "ASC",
    "OFFSET",
    "COUNT",
    "INTERSECT",
    "EXCEPT",
)


def misspelt_keyword(query: str, offset: int) -> str | None:
    """A hint when a word at or just before ``offset`` looks like a misspelt keyword (FORM
    for FROM: the engine often takes it for an alias and fails one word later)."""
    before = re.findall(r"[A-Za-z_]+", query[: offset + 1])[-2:]
    after = re.match(r"[A-Za-z_]+", query[offset:])
    words = [*before, *([after.group(0)] if after else [])]
    for word in reversed(list(dict.fromkeys(words))):
        if word.upper() in KEYWORDS or len(word) < 3:
            continue
        found = difflib.get_close_matches(word.upper(), KEYWORDS, n=1, cutoff=0.75)
        if found:
            return f"{word!r} looks like a misspelt {found[0]}."
    return None


def _columns_like(name: str, tables: list[TableInfo]) -> list[tuple[str, TableInfo]]:
    pairs = [(c.name, t) for t in tables for c in t.columns]
    names = close(name, [c for c, _ in pairs], n=3)
    return [(c, t) for c, t in pairs if c in names][:5]


def _or(items: list[str]) -> str:
    quoted = [f'"{i}"' if " " in i else i for i in items]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _list(names: object, limit: int = 30) -> str:
    items = list(names)  # type: ignore[call-overload]
    shown = ", ".join(items[:limit])
    return shown + (f" ... ({len(items)} in all)" if len(items) > limit else "")

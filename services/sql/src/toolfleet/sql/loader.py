"""Copy a SQLite database (a Spider/BIRD one, Chinook ...) into a PostgreSQL or MariaDB
database, so the same task can be trained on another engine.

    python -m toolfleet.sql.loader SOURCE.sqlite URL [--replace]

URL is a SQLAlchemy URL of an existing, writable database (an admin role, not the read-only
one the sql tools use). Tables keep their names, columns, primary and foreign keys; types
become the engine's generic equivalents. Idempotent: when every table already holds as many
rows as the source, nothing is done; otherwise the source's tables are dropped and loaded
again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from toolfleet.sql.server import make_url

BATCH = 1000


def _type(col: sa.Column, backend: str) -> sa.types.TypeEngine:
    """A generic type the target engine can create, for a column reflected from SQLite."""
    declared = col.type
    if isinstance(declared, sa.types.NullType):
        return sa.Text()
    try:
        generic = declared.as_generic()
    except NotImplementedError:
        return sa.Text()
    if isinstance(generic, sa.Boolean):
        return sa.Boolean()
    if isinstance(generic, sa.Integer):
        return sa.BigInteger() if isinstance(generic, sa.BigInteger) else sa.Integer()
    if isinstance(generic, sa.Numeric) and not isinstance(generic, sa.Float):
        if generic.precision is None:  # NUMERIC without precision: SQLite stores floats
            return sa.Float(precision=53)
        return sa.Numeric(generic.precision, generic.scale)
    if isinstance(generic, sa.Float):
        return sa.Float(precision=53)
    if isinstance(generic, sa.String) and not isinstance(generic, sa.Text):
        return sa.String(generic.length) if generic.length else sa.Text()
    if isinstance(generic, sa.LargeBinary):
        return mysql.LONGBLOB() if backend == "mysql" else sa.LargeBinary()
    if isinstance(generic, sa.DateTime | sa.Date | sa.Time | sa.Text):
        return generic
    return sa.Text()


def target_tables(source: sa.MetaData, backend: str) -> sa.MetaData:
    """The source's tables, with types the target engine has."""
    target = sa.MetaData()
    for table in source.sorted_tables:
        columns = [
            sa.Column(
                c.name,
                _type(c, backend),
                primary_key=c.primary_key,
                nullable=c.nullable,
                autoincrement=False,
            )
            for c in table.columns
        ]
        fks = [
            sa.ForeignKeyConstraint(
                [e.parent.name for e in fk.elements],
                [f"{fk.referred_table.name}.{e.column.name}" for e in fk.elements],
            )
            for fk in table.foreign_key_constraints
        ]
        sa.Table(table.name, target, *columns, *fks)
    return target


def load(source_path: Path, url: str, *, replace: bool = False, log=print) -> bool:
    """Copy ``source_path`` into the database at ``url``; False when it was up to date."""
    src = sa.create_engine(f"sqlite:///file:{source_path}?mode=ro&uri=true")
    dst = sa.create_engine(make_url(url))
    source = sa.MetaData()
    source.reflect(src)
    target = target_tables(source, dst.dialect.name)
    with src.connect() as s:
        counts = {
            t.name: s.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in source.sorted_tables
        }
    if not replace and _up_to_date(dst, counts):
        log(f"{source_path.name} -> {dst.url.database}: up to date ({len(counts)} tables)")
        return False
    with dst.begin() as d:
        target.drop_all(d, checkfirst=True)
        target.create_all(d)
    with src.connect() as s:
        for table in source.sorted_tables:
            rows = s.execute(sa.select(table)).mappings()
            with dst.begin() as d:
                batch = []
                for row in rows:
                    batch.append(dict(row))
                    if len(batch) == BATCH:
                        d.execute(target.tables[table.name].insert(), batch)
                        batch = []
                if batch:
                    d.execute(target.tables[table.name].insert(), batch)
    log(
        f"{source_path.name} -> {dst.url.database}: loaded {sum(counts.values())} rows "
        f"in {len(counts)} tables"
    )
    src.dispose()
    dst.dispose()
    return True


def _up_to_date(dst: sa.Engine, counts: dict[str, int]) -> bool:
    existing = set(sa.inspect(dst).get_table_names())
    if not set(counts) <= existing:
        return False
    with dst.connect() as d:
        for name, count in counts.items():
            table = sa.table(name)
            if d.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() != count:
                return False
    return True


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="the SQLite file")
    parser.add_argument("url", help="SQLAlchemy URL of the target database (writable)")
    parser.add_argument("--replace", action="store_true", help="reload even when up to date")
    args = parser.parse_args(argv)
    if not args.source.is_file():
        parser.error(f"no such file: {args.source}")
    load(args.source, args.url, replace=args.replace)
    return 0


if __name__ == "__main__":
    sys.exit(main())

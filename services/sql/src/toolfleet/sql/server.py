"""What PostgreSQL and MariaDB databases share: a SQLAlchemy engine for the URL (its
connection pool, sized to the service's threads), the check that the connection role is
read-only, and schema reflection."""

from __future__ import annotations

import abc
import threading
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine.interfaces import ReflectedColumn
from toolfleet.core.protocol import ErrorKind
from toolfleet.sql import errors
from toolfleet.sql.database import Database, Interrupt
from toolfleet.sql.errors import QueryError
from toolfleet.sql.results import Limits, QueryResult
from toolfleet.sql.schema import ColumnInfo, ForeignKeyInfo, TableInfo

#: Drivers for URLs that name none (SQLAlchemy's defaults, psycopg2 and mysqlclient, are not
#: installed).
DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}


def make_url(url: str) -> sa.URL:
    """The URL with this service's driver when it names none."""
    parsed = sa.make_url(url)
    if parsed.drivername in DRIVERS:
        parsed = parsed.set(drivername=DRIVERS[parsed.drivername])
    return parsed


class ServerDatabase(Database):
    """A database on a PostgreSQL or MariaDB server, reached through a pooled engine."""

    def __init__(self, db_id: str, url: sa.URL, *, pool_size: int, require_read_only: bool):
        super().__init__(db_id)
        self.url = url
        self.require_read_only = require_read_only
        self.sa_engine = sa.create_engine(
            url,
            isolation_level="AUTOCOMMIT",  # transactions are begun and ended explicitly
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=30,
            pool_recycle=1800,
            pool_reset_on_return=None,  # each call ends its own transaction
        )
        sa.event.listen(self.sa_engine, "connect", self._on_connect)
        self._role_lock = threading.Lock()
        self._role_problem: str | None = None
        self._role_checked = False

    # ------------------------------------------------------------------ engine specifics

    @abc.abstractmethod
    def _on_connect(self, dbapi_conn: Any, record: Any) -> None:
        """Set up a new connection (session defaults)."""

    @abc.abstractmethod
    def _run(
        self, raw: Any, query: str, limits: Limits, deadline: float, interrupt: Interrupt
    ) -> tuple[QueryResult, bool]:
        """Run the query on a pooled connection; the result and whether the connection may
        go back to the pool (False: discard it, its session state may have changed)."""

    @abc.abstractmethod
    def _role_writes(self, raw: Any) -> str | None:
        """What the connection role may change (None: nothing, it is read-only)."""

    @abc.abstractmethod
    def _is_connection_error(self, exc: BaseException) -> bool:
        """True when ``exc`` means the connection is broken (not the query)."""

    # ------------------------------------------------------------------ queries

    def execute(
        self,
        query: str,
        limits: Limits,
        deadline: float,
        interrupt: Interrupt,
    ) -> QueryResult:
        if time.monotonic() >= deadline:
            raise errors.timeout(0.0)
        raw = self._checkout()
        keep = False
        try:
            self._check_role(raw)
            result, keep = self._run(raw, query, limits, deadline, interrupt)
            return result
        except QueryError as exc:
            keep = not exc.discard_connection
            raise
        except Exception as exc:
            if self._is_connection_error(exc):
                raise QueryError(
                    ErrorKind.unavailable,
                    f"the connection to {self.db_id!r} failed: {exc}",
                    retryable=True,
                ) from None
            raise
        finally:
            if keep:
                raw.close()  # back to the pool
            else:
                raw.invalidate()

    def _checkout(self) -> Any:
        try:
            return self.sa_engine.raw_connection()
        except Exception as exc:
            raise QueryError(
                ErrorKind.unavailable,
                f"the database {self.db_id!r} is unreachable: {_first_line(exc)}",
                hint="The database server is down or refusing connections; try again later.",
                retryable=True,
            ) from None

    def _check_role(self, raw: Any) -> None:
        if not self.require_read_only:
            return
        with self._role_lock:
            if not self._role_checked:
                self._role_problem = self._role_writes(raw)
                self._role_checked = True
        if self._role_problem is not None:
            raise QueryError(
                ErrorKind.unavailable,
                f"the database {self.db_id!r} is not served: its connection role can write "
                f"({self._role_problem})",
                hint="Operators: connect as a read-only role (see docs/sql.md), or set "
                "TOOLFLEET_SQL_REQUIRE_READ_ONLY_ROLE=false.",
            )

    def close(self) -> None:
        self.sa_engine.dispose()

    def status(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "url": self.url.render_as_string(hide_password=True),
            "read_only_role": None if not self._role_checked else self._role_problem is None,
        }

    # ------------------------------------------------------------------ schema

    def load_schema(self, deadline: float) -> list[TableInfo]:
        raw = self._checkout()
        try:
            self._check_role(raw)  # a refused database shows no schema either
        finally:
            raw.close()
        try:
            with self.sa_engine.connect() as conn:
                inspector = sa.inspect(conn)
                kinds = {name: "view" for name in inspector.get_view_names()}
                columns = inspector.get_multi_columns(kind=sa.engine.ObjectKind.ANY)
                pks = inspector.get_multi_pk_constraint(kind=sa.engine.ObjectKind.ANY)
                fks = inspector.get_multi_foreign_keys(kind=sa.engine.ObjectKind.ANY)
                dialect = conn.dialect
        except Exception as exc:
            raise QueryError(
                ErrorKind.unavailable,
                f"the schema of {self.db_id!r} cannot be read: {_first_line(exc)}",
                retryable=True,
            ) from None
        tables = []
        for key in sorted(columns, key=lambda k: k[1]):
            name = key[1]
            pk = (pks.get(key) or {}).get("constrained_columns") or []
            tables.append(
                TableInfo(
                    name=name,
                    kind="view" if kinds.get(name) else "table",  # type: ignore[arg-type]
                    columns=[_column(c, dialect, pk) for c in columns[key]],
                    primary_key=list(pk),
                    foreign_keys=[
                        ForeignKeyInfo(
                            columns=list(fk["constrained_columns"]),
                            ref_table=fk["referred_table"],
                            ref_columns=list(fk["referred_columns"]),
                        )
                        for fk in fks.get(key) or []
                    ],
                )
            )
        return tables


def _column(col: ReflectedColumn, dialect: sa.Dialect, pk: list[str]) -> ColumnInfo:
    try:
        type_name = col["type"].compile(dialect=dialect)
    except Exception:
        type_name = ""
    return ColumnInfo(
        name=col["name"],
        type=type_name,
        nullable=bool(col.get("nullable", True)),
        primary_key=col["name"] in pk,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

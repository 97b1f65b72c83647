"""Reads on the request path (the API key check, one connection), done the cheapest way the
database allows. Writes always go through the async engine and its sessions.

SQLite: aiosqlite runs every statement on a thread of its own, and the hops there and back
cost about 1.3 ms per read, twenty times the read itself (`.venv/bin/python -m
bench.reads` measures both). A point read of a local SQLite file in WAL mode does not wait for
writers, so these reads run right in the event loop, on a plain `sqlite3` connection of the
calling thread: the statement is compiled once by SQLAlchemy's SQLite dialect, and its
parameters and results go through the column types' own bind and result processors. The
connection is read-only (`PRAGMA query_only`) and in autocommit mode, so each SELECT is its own
transaction and sees every commit made before it, by this process or any other.

Other databases (PostgreSQL): the async engine in autocommit mode, so a read is one round trip,
with no BEGIN and ROLLBACK around it.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, TypeVarTuple

from sqlalchemy import Select, inspect
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import make_transient_to_detached

from alloy_oauth.store.base import Base

M = TypeVar("M", bound=Base)
Ts = TypeVarTuple("Ts")

# A reader that finds the file locked (only while SQLite recovers a WAL index) waits this long.
READ_BUSY_TIMEOUT_MS = 2000
_DIALECT = SQLiteDialect_pysqlite()
Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Plan:
    """A statement compiled for SQLite: its SQL, parameter order and type processors."""

    sql: str
    names: tuple[str, ...]
    binds: tuple[Processor, ...]
    # (position, processor) of the result columns that need one (JSON, datetimes).
    results: tuple[tuple[int, Callable[[Any], Any]], ...]

    def parameters(self, params: dict[str, Any]) -> list[Any]:
        return [value if bind is None else bind(value)
                for value, bind in zip((params[n] for n in self.names), self.binds, strict=True)]

    def row(self, raw: tuple[Any, ...]) -> tuple[Any, ...]:
        if not self.results:
            return raw
        values = list(raw)
        for i, proc in self.results:
            if values[i] is not None:
                values[i] = proc(values[i])
        return tuple(values)


@functools.cache
def _plan(stmt: Select[Any]) -> _Plan:
    compiled = stmt.compile(dialect=_DIALECT)
    names = tuple(compiled.positiontup or ())
    return _Plan(
        sql=str(compiled),
        names=names,
        binds=tuple(compiled.binds[n].type.dialect_impl(_DIALECT).bind_processor(_DIALECT)
                    for n in names),
        results=tuple((i, proc) for i, proc in enumerate(
            c.type.dialect_impl(_DIALECT).result_processor(_DIALECT, None)
            for c in stmt.selected_columns) if proc is not None),
    )


@functools.cache
def _attributes(model: type[Base]) -> tuple[str, ...]:
    """The attribute of each mapped column of `model`, in the order `select(model)` reads."""
    by_column = {prop.columns[0].key: prop.key for prop in inspect(model).column_attrs}
    return tuple(by_column[c.key] for c in model.__table__.columns)


def _sqlite_file(engine: AsyncEngine) -> str | None:
    url = engine.url
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:" \
            or database.startswith("file:"):
        return None
    return database


class Reader:
    """`first(stmt, params)` for one row, `entity(Model, select(Model)..., params)` for one ORM
    object (detached, as if loaded by a session). Build `stmt` once, at import, with
    `bindparam()` for the values: constructing a statement costs more than running it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._file = _sqlite_file(engine)
        self._async = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            assert self._file is not None
            conn = sqlite3.connect(self._file, isolation_level=None, check_same_thread=False,
                                   timeout=READ_BUSY_TIMEOUT_MS / 1000)
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    async def first(self, stmt: Select[*Ts], params: dict[str, Any]) -> tuple[*Ts] | None:
        if self._file is not None:
            plan = _plan(stmt)
            raw = self._connection().execute(plan.sql, plan.parameters(params)).fetchone()
            return None if raw is None else plan.row(raw)
        async with self._async.connect() as aconn:
            row = (await aconn.execute(stmt, params)).first()
        return None if row is None else row._tuple()

    async def entity(self, model: type[M], stmt: Select[M],
                     params: dict[str, Any]) -> M | None:
        row = await self.first(stmt, params)
        if row is None:
            return None
        # As the ORM's own loader does: a new instance with its column values in place,
        # then given its identity (about 40 µs less than the constructor's 23 set events).
        obj: M = inspect(model).class_manager.new_instance()  # type: ignore[assignment]
        obj.__dict__.update(zip(_attributes(model), row, strict=True))
        make_transient_to_detached(obj)
        return obj

    def dispose(self) -> None:
        with self._lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()
        self._local = threading.local()

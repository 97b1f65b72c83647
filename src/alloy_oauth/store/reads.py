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

PostgreSQL (asyncpg): the statement (compiled once by SQLAlchemy's asyncpg dialect) runs with one
`fetchrow` on an asyncpg connection of the reader's own (`_PgConnections`, with the JSON codecs
SQLAlchemy sets up): one round trip, where the engine's checkout costs three more (pre-ping,
isolation level set and reset) and SQLAlchemy's greenlet hops. A read that finds its connection
dropped (a database restart) drops the idle ones too and is retried once on a fresh one. Other
async drivers: the engine's own execute.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, TypeVarTuple

import asyncpg
from sqlalchemy import Dialect, Select, inspect
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import make_transient_to_detached

from alloy_oauth.store.base import Base

M = TypeVar("M", bound=Base)
Ts = TypeVarTuple("Ts")

# A reader that finds the file locked (only while SQLite recovers a WAL index) waits this long.
READ_BUSY_TIMEOUT_MS = 2000
# Connections of a reader's PostgreSQL pool (per server process).
READ_POOL_SIZE = 10
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
def _plan(stmt: Select[Any], dialect: Dialect) -> _Plan:
    compiled = stmt.compile(dialect=dialect)
    names = tuple(compiled.positiontup or ())
    return _Plan(
        sql=str(compiled),
        names=names,
        binds=tuple(compiled.binds[n].type.dialect_impl(dialect).bind_processor(dialect)
                    for n in names),
        results=tuple((i, proc) for i, proc in enumerate(
            c.type.dialect_impl(dialect).result_processor(dialect, None)
            for c in stmt.selected_columns) if proc is not None),
    )


@functools.cache
def _attributes(model: type[Base]) -> tuple[str, ...]:
    """The attribute of each mapped column of `model`, in the order `select(model)` reads."""
    by_column = {prop.columns[0].key: prop.key for prop in inspect(model).column_attrs}
    return tuple(by_column[c.key] for c in model.__table__.columns)


async def _json_codecs(conn: asyncpg.Connection) -> None:
    """JSON in and out as Python values, as SQLAlchemy's asyncpg dialect sets them up."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads,
                                  schema="pg_catalog")


# What a dropped connection raises (a database restart, a network cut). InternalClientError:
# the server's notice that it ended the session can arrive just as a read starts on it.
_DROPPED = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
            asyncpg.InternalClientError, OSError)


class _PgConnections:
    """Up to `size` asyncpg connections for single-statement reads, each used by one read at a
    time. asyncpg's own pool costs 40 - 70 µs of CPU per read in its acquire and release
    bookkeeping (timeouts, a shielded release task), more than the `fetchrow` itself (about
    30 µs; docs/benchmarks.md); a single SELECT leaves no session state behind, so a connection
    needs no reset between reads either."""

    def __init__(self, dsn: str, size: int) -> None:
        self._dsn = dsn
        self._size = size
        self._idle: list[asyncpg.Connection] = []
        self._opened = 0  # idle, busy and being opened
        self._waiting: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._closed = False

    async def fetchrow(self, sql: str, args: list[Any]) -> asyncpg.Record | None:
        for attempt in (1, 2):
            conn = await self._acquire()
            try:
                record: asyncpg.Record | None = await conn.fetchrow(sql, *args)
            except _DROPPED:
                self._discard(conn)
                self._drop_idle()  # dropped too, most likely (a restart)
                if attempt == 2:
                    raise
                continue
            except BaseException:  # cancelled mid-read, or a query error: start clean
                self._discard(conn)
                raise
            self._release(conn)
            return record
        raise AssertionError("unreachable")

    async def _acquire(self) -> asyncpg.Connection:
        conn: asyncpg.Connection
        if self._closed:
            raise asyncpg.InterfaceError("the reader is closed")
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed():
                return conn
            self._discard(conn)  # ended while idle
        if self._opened < self._size:
            self._opened += 1
            try:
                conn = await asyncpg.connect(self._dsn)
                await _json_codecs(conn)
            except BaseException:
                self._opened -= 1
                self._wake_one(None)  # its slot is free: a waiter may open one
                raise
            return conn
        waiter: asyncio.Future[asyncpg.Connection | None] = \
            asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            handed = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                self._release(waiter.result())  # handed over as this waiter was cancelled
            raise
        return handed if handed is not None else await self._acquire()

    def _wake_one(self, conn: asyncpg.Connection | None) -> bool:
        """Hand `conn` (None: a free slot) to the first waiter still waiting."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    def _release(self, conn: asyncpg.Connection) -> None:
        if self._closed:
            self._discard(conn)
        elif not self._wake_one(conn):
            self._idle.append(conn)

    def _discard(self, conn: asyncpg.Connection) -> None:
        conn.terminate()
        self._opened -= 1
        self._wake_one(None)

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            self._discard(conn)

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        self._opened -= len(idle)
        await asyncio.gather(*(conn.close() for conn in idle), return_exceptions=True)


def sqlite_file(engine: AsyncEngine) -> str | None:
    """The path of the engine's SQLite database file; None for another database, an
    in-memory one or a `file:` URI."""
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
        self._file = sqlite_file(engine)
        self._async = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._dialect = engine.dialect
        self._pg = (_PgConnections(engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False), READ_POOL_SIZE) if engine.dialect.driver == "asyncpg" else None)
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
            plan = _plan(stmt, _DIALECT)
            raw = self._connection().execute(plan.sql, plan.parameters(params)).fetchone()
            return None if raw is None else plan.row(raw)
        if self._pg is not None:
            plan = _plan(stmt, self._dialect)
            record = await self._pg.fetchrow(plan.sql, plan.parameters(params))
            return None if record is None else plan.row(tuple(record))
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

    async def aclose(self) -> None:
        with self._lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()
        self._local = threading.local()
        if self._pg is not None:
            await self._pg.aclose()

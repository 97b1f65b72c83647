"""Refreshing access tokens: single flight per process, a row lock across processes,
compare-and-swap on `version`, and per-connection health (backoff, cooldown, needs_reauth)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import hashlib
import logging
import math
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from alloy_oauth import oauth, webhooks
from alloy_oauth.backoff import backoff
from alloy_oauth.errors import Conflict, ProviderFailure, ServiceError, connection_not_found
from alloy_oauth.runtime import Runtime
from alloy_oauth.store.models import Connection, utcnow
from alloy_oauth.store.reads import sqlite_file

log = logging.getLogger(__name__)

REFRESH_MARGIN = timedelta(minutes=5)
# Answers after which the same grant cannot work again: the user must connect again. Other
# failures (5xx, timeouts, invalid_client after a secret rotation, ...) are retried with backoff.
REAUTH_ERRORS = frozenset({"invalid_grant", "invalid_refresh_token", "token_revoked"})
# SQLite refreshes exclude each other through flock()ed files beside the database.
LOCK_STRIPES = 64


@dataclass(frozen=True)
class AccessToken:
    access_token: str
    token_type: str
    expires_at: datetime | None

    def __repr__(self) -> str:
        return f"AccessToken(token_type={self.token_type!r}, expires_at={self.expires_at!r})"


def refresh_margin(rt: Runtime, connector_id: str) -> timedelta:
    """5 minutes, or `ALLOY_CONNECTOR_<ID>_REFRESH_MARGIN` seconds for that connector."""
    configured = rt.settings.connector_setting(connector_id, "REFRESH_MARGIN")
    if configured:
        try:
            return timedelta(seconds=max(0.0, float(configured)))
        except ValueError:
            log.warning("ignoring the non-numeric refresh margin of connector %s", connector_id)
    return REFRESH_MARGIN


def needs_refresh(conn: Connection, now: datetime, margin: timedelta = REFRESH_MARGIN) -> bool:
    """Under `margin` left, or under half its lifetime for shorter-lived tokens."""
    return refresh_due(conn.expires_at, conn.issued_at, now, margin)


def refresh_due(expires_at: datetime | None, issued_at: datetime | None, now: datetime,
                margin: timedelta) -> bool:
    """`needs_refresh` on the two times alone."""
    if expires_at is None:
        return False
    if issued_at is not None:
        margin = min(margin, (expires_at - issued_at) / 2)
    return expires_at - now <= margin


def _valid(conn: Connection, now: datetime) -> bool:
    return conn.access_token_enc is not None and (conn.expires_at is None
                                                  or conn.expires_at > now)


def current_token(rt: Runtime, conn: Connection) -> AccessToken:
    assert conn.access_token_enc is not None
    return AccessToken(rt.box.decrypt(conn.access_token_enc, f"conn:{conn.id}:access"),
                       conn.token_type, conn.expires_at)


def needs_reauth_error(conn: Connection) -> Conflict:
    return Conflict(
        f"The connection needs the user again: the provider refused its refresh "
        f"({conn.last_error or 'invalid_grant'}). Run the OAuth flow again to reconnect.",
        code="needs_reauth")


def _cooldown_error(conn: Connection, now: datetime) -> ProviderFailure:
    assert conn.next_retry_at is not None
    wait = max(1, math.ceil((conn.next_retry_at - now).total_seconds()))
    return ProviderFailure(
        f"The provider failed to refresh the token ({conn.last_error or 'temporary failure'}) "
        f"and no valid token is left; the next attempt is allowed in {wait} s.",
        code="provider_error", headers={"Retry-After": str(wait)})


async def fresh(rt: Runtime, conn: Connection, *, force: bool = False) -> Connection:
    """`conn` with a usable access token: refreshed when it expires soon (or when forced),
    unless the connection is cooling down after a provider failure."""
    if conn.status == "needs_reauth":
        raise needs_reauth_error(conn)
    now = utcnow()
    if not force and not needs_refresh(conn, now, refresh_margin(rt, conn.connector_id)):
        return conn
    if conn.next_retry_at is not None and conn.next_retry_at > now:
        if not force and _valid(conn, now):
            return conn  # the provider is failing: keep serving the valid token
        raise _cooldown_error(conn, now)
    refreshed = await refresh(rt, conn, seen_version=conn.version)
    if force and refreshed.version == conn.version and refreshed.next_retry_at is not None \
            and refreshed.next_retry_at > now:
        # A forced refresh asked for a new token: say that it failed (the stored one stays).
        raise ProviderFailure(
            f"The provider failed to refresh the token ({refreshed.last_error}). The stored "
            "token is unchanged and is still served without forceRefresh.",
            code="provider_error")
    return refreshed


# --- single flight within the process ---------------------------------------------------------

_flights: dict[tuple[int, str, int], asyncio.Task[Connection]] = {}


def _landed(key: tuple[int, str, int], task: asyncio.Task[Connection]) -> None:
    if _flights.get(key) is task:
        del _flights[key]
    if not task.cancelled():
        task.exception()  # retrieved here, raised to every waiter


async def refresh(rt: Runtime, conn: Connection, *, seen_version: int,
                  wait: bool = True) -> Connection:
    """Refresh once for everyone in this process who saw `seen_version`; returns the row as
    it is after the refresh (or after someone else's). The refresh runs in a task of its own,
    so a caller that goes away does not cancel it half-way (and lose a rotated token).

    With `wait=False` (the background refresher) a row another process is refreshing right
    now is skipped instead of waited for (PostgreSQL), and `conn` comes back unchanged."""
    key = (id(rt), conn.id, seen_version)
    task = _flights.get(key)
    if task is None:
        task = asyncio.get_running_loop().create_task(
            _refresh_locked(rt, conn, seen_version, wait), name=f"refresh-{conn.id}")
        _flights[key] = task
        task.add_done_callback(functools.partial(_landed, key))
    return await asyncio.shield(task)


# --- exclusion across processes ---------------------------------------------------------------

async def _lock_row(db: AsyncSession, conn_id: str, *, wait: bool) -> Connection | None:
    """PostgreSQL: lock the connection's row for this transaction and read it as it is now
    (`SKIP LOCKED` when not waiting: None then means another process is refreshing it)."""
    return (await db.execute(
        select(Connection).where(Connection.id == conn_id)
        .with_for_update(skip_locked=not wait)
    )).scalar()


def _lock_dir(rt: Runtime) -> Path | None:
    database = sqlite_file(rt.engine)
    if database is None:
        return None  # a private database: only this process can refresh
    path = Path(database).resolve()
    return path.with_name(f".{path.name}.refresh-locks")  # hidden, beside the -wal file


@contextlib.asynccontextmanager
async def _sqlite_refresh_lock(rt: Runtime, conn_id: str, *, wait: bool
                               ) -> AsyncIterator[bool]:
    """SQLite: an exclusive lock (flock) on one of LOCK_STRIPES files beside the database,
    held across the provider call. The kernel releases it if the process dies, so it can be
    neither outlived nor leaked; several runtimes in one process exclude each other too."""
    folder = _lock_dir(rt)
    if folder is None:
        yield True
        return
    folder.mkdir(mode=0o700, exist_ok=True)
    stripe = int(hashlib.sha256(conn_id.encode()).hexdigest()[:8], 16) % LOCK_STRIPES
    fd = os.open(folder / f"{stripe:02x}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        pause = 0.002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    yield False
                    return
                await asyncio.sleep(pause)  # polled: a blocking flock would hold a thread
                pause = min(pause * 2, 0.05)
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


async def _refresh_locked(rt: Runtime, seen: Connection, seen_version: int,
                          wait: bool) -> Connection:
    """Exclusive across processes, then re-read, then refresh.

    PostgreSQL: `SELECT ... FOR UPDATE` in one transaction that lasts until the write.
    SQLite: its lock is the whole database's write lock, and holding that across an HTTP
    call would stall every writer (and deadlock a provider that shares the database, as the
    built-in sandbox does); so the exclusion is a file lock, and the database sees a short
    read and a short serialized write transaction (`BEGIN IMMEDIATE`).
    """
    if rt.engine.dialect.name == "sqlite":
        async with _sqlite_refresh_lock(rt, seen.id, wait=wait) as locked:
            if not locked:
                return seen  # another process is refreshing it right now
            async with rt.sessions() as db:
                row = await db.get(Connection, seen.id)
                if row is not None:
                    db.expunge(row)
            if row is None:
                raise connection_not_found()
            async with rt.sessions() as db:
                return await _refresh_row(rt, db, row, seen_version, serialize_writes=True)
    async with rt.sessions() as db:
        row = await _lock_row(db, seen.id, wait=wait)
        if row is None:
            if not wait:
                return seen  # another process holds the row lock: it is refreshing
            raise connection_not_found()
        db.expunge(row)  # written with explicit UPDATEs only, never flushed from the object
        return await _refresh_row(rt, db, row, seen_version, serialize_writes=False)


async def _refresh_row(rt: Runtime, db: AsyncSession, row: Connection, seen_version: int,
                       *, serialize_writes: bool) -> Connection:
    """The refresh itself, with `row` read under the exclusion. Every write goes through
    `db` (in a serialized write transaction on SQLite) and is a compare-and-swap on
    `version`."""
    async def begin_write() -> None:
        if serialize_writes:
            await db.rollback()  # end the read; the write transaction starts now
            await db.execute(text("BEGIN IMMEDIATE"))

    if row.version != seen_version:
        await db.rollback()
        return row  # refreshed by someone else while we waited for the lock
    if row.status == "needs_reauth":
        raise needs_reauth_error(row)
    now = utcnow()
    if row.next_retry_at is not None and row.next_retry_at > now:
        if _valid(row, now):
            return row
        raise _cooldown_error(row, now)
    connector = rt.catalog.get(row.connector_id)
    creds = await rt.connection_credentials(connector, row, db) if connector else None
    if connector is None or creds is None:
        if _valid(row, now):
            return row
        raise ServiceError("The access token has expired and cannot be refreshed: the "
                           "connector is not configured on this server any more.",
                           code="connector_not_configured", status=503)
    if row.refresh_token_enc is None:
        if _valid(row, now):
            return row
        await begin_write()
        await _mark_needs_reauth(db, row, "expired: the provider issued no refresh token")
        await db.commit()
        raise needs_reauth_error(row)
    old_refresh = rt.box.decrypt(row.refresh_token_enc, f"conn:{row.id}:refresh")
    if serialize_writes:
        await db.rollback()  # no database transaction stays open across the provider call
    try:
        tokens = await oauth.refresh(connector, creds, refresh_token=old_refresh,
                                     scopes=list(row.scopes), data=dict(row.metadata_),
                                     transport=rt.transport, timeout=rt.settings.http_timeout)
    except oauth.ProviderError as exc:
        await begin_write()
        return await _record_failure(rt, db, row, exc)
    recovered = row.status == "error"
    now = utcnow()
    await begin_write()
    written = await db.execute(update(Connection).where(
        Connection.id == row.id, Connection.version == seen_version,
    ).values(
        access_token_enc=rt.box.encrypt(tokens.access_token, f"conn:{row.id}:access"),
        # Keep the old refresh token when the provider returns none.
        refresh_token_enc=rt.box.encrypt(tokens.refresh_token or old_refresh,
                                         f"conn:{row.id}:refresh"),
        token_type=tokens.token_type, expires_at=tokens.expires_at, issued_at=now,
        scopes=list(tokens.scopes) or list(row.scopes),
        metadata_={**row.metadata_, **tokens.extra},
        version=seen_version + 1, status="connected", last_error=None,
        refresh_failures=0, next_retry_at=None, last_refresh_at=now, updated_at=now,
    ).execution_options(synchronize_session=False))
    if written.rowcount != 1:  # type: ignore[attr-defined]
        log.warning("refresh of %s lost a race; keeping the newer token", row.id)
    elif recovered:
        webhooks.add_event(db, row.account_id, webhooks.CONNECTION_RECOVERED,
                           webhooks.connection_data(row, status="connected", lastError=None),
                           connection_id=row.id)
    await db.commit()
    log.info("refreshed connection %s", row.id)
    return await _reread(rt, row.id)


async def _reread(rt: Runtime, conn_id: str) -> Connection:
    async with rt.sessions() as db:
        conn = await db.get(Connection, conn_id)
    if conn is None:
        raise connection_not_found()
    return conn


async def _mark_needs_reauth(db: AsyncSession, row: Connection, error: str) -> None:
    await db.execute(update(Connection).where(Connection.id == row.id).values(
        status="needs_reauth", last_error=error[:500], next_retry_at=None, refresh_failures=0,
        updated_at=utcnow(),
    ).execution_options(synchronize_session=False))
    row.status, row.last_error = "needs_reauth", error[:500]
    webhooks.add_event(db, row.account_id, webhooks.CONNECTION_NEEDS_REAUTH,
                       webhooks.connection_data(row), connection_id=row.id)
    log.warning("connection %s needs the user again: %s", row.id, error.split(":")[0])


async def _record_failure(rt: Runtime, db: AsyncSession, row: Connection,
                          exc: oauth.ProviderError) -> Connection:
    error = f"{exc.code}: {exc.description}"[:500]
    if exc.code in REAUTH_ERRORS:
        # Re-read before deciding: another worker may have rotated the token meanwhile.
        latest = (await db.execute(
            select(Connection).where(Connection.id == row.id)
            .execution_options(populate_existing=True))).scalar()
        if latest is None:
            raise connection_not_found()
        if latest.version != row.version:
            await db.commit()
            return latest
        await _mark_needs_reauth(db, row, error)
        await db.commit()
        raise needs_reauth_error(row)
    now = utcnow()
    failures = row.refresh_failures + 1
    wait = backoff(rt.settings.refresh_retry_base, failures, rt.settings.refresh_retry_max)
    values: dict[str, Any] = dict(status="error", last_error=error, refresh_failures=failures,
                                  next_retry_at=now + timedelta(seconds=wait), updated_at=now)
    await db.execute(update(Connection).where(
        Connection.id == row.id, Connection.version == row.version,
    ).values(**values).execution_options(synchronize_session=False))
    await db.commit()
    for name, value in values.items():
        setattr(row, name, value)
    log.warning("refresh of %s failed (%s, %d in a row); next attempt in %.1f s",
                row.id, exc.code, failures, wait)
    if _valid(row, now):
        return row  # still valid: keep serving it while the provider recovers
    raise ProviderFailure(f"The provider failed to refresh the token ({exc.code}) and no valid "
                          f"token is left; try again in {math.ceil(wait)} s.",
                          code="provider_error", headers={"Retry-After": str(math.ceil(wait))})

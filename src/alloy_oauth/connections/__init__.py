"""Stored connections: read, list, delete (with revocation) and fresh access tokens.

Refreshes are single-flight: one per connection per process (an asyncio lock), one across
processes (a lease in the row), and every write is a compare-and-swap on `version`, so an
overlapping refresh can never overwrite a newer token.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from alloy_oauth import oauth
from alloy_oauth.errors import Conflict, ProviderFailure, connection_not_found
from alloy_oauth.ids import new_id
from alloy_oauth.runtime import Runtime
from alloy_oauth.store.models import Connection, utcnow

log = logging.getLogger(__name__)

REFRESH_MARGIN = timedelta(minutes=5)
LEASE = timedelta(seconds=30)
LEASE_POLL = 0.05


@dataclass(frozen=True)
class AccessToken:
    access_token: str
    token_type: str
    expires_at: datetime | None

    def __repr__(self) -> str:
        return f"AccessToken(token_type={self.token_type!r}, expires_at={self.expires_at!r})"


async def get(rt: Runtime, account_id: str, connection_id: str) -> Connection:
    """The account's connection (by connection or credential id); another account's is 404."""
    async with rt.sessions() as db:
        conn = (await db.execute(select(Connection).where(
            Connection.account_id == account_id,
            (Connection.id == connection_id) | (Connection.credential_id == connection_id),
        ))).scalar()
    if conn is None:
        raise connection_not_found()
    return conn


async def list_for(rt: Runtime, account_id: str, *, user_id: str | None = None,
                   connector_id: str | None = None) -> list[Connection]:
    query = select(Connection).where(Connection.account_id == account_id)
    if user_id:
        query = query.where(Connection.user_id == user_id)
    if connector_id:
        query = query.where(Connection.connector_id == connector_id)
    async with rt.sessions() as db:
        return list((await db.execute(query.order_by(Connection.created_at))).scalars())


def needs_refresh(conn: Connection, now: datetime) -> bool:
    """Under 5 minutes left, or under half its lifetime for shorter-lived tokens."""
    if conn.expires_at is None:
        return False
    margin = REFRESH_MARGIN
    if conn.issued_at is not None:
        margin = min(margin, (conn.expires_at - conn.issued_at) / 2)
    return conn.expires_at - now <= margin


def _current(rt: Runtime, conn: Connection) -> AccessToken:
    assert conn.access_token_enc is not None
    return AccessToken(rt.box.decrypt(conn.access_token_enc, f"conn:{conn.id}:access"),
                       conn.token_type, conn.expires_at)


async def _reread(rt: Runtime, connection_id: str) -> Connection:
    async with rt.sessions() as db:
        conn = await db.get(Connection, connection_id, populate_existing=True)
    if conn is None:
        raise connection_not_found()
    return conn


def _needs_reauth(conn: Connection) -> Conflict:
    return Conflict(
        f"The connection needs the user again: the provider refused its refresh "
        f"({conn.last_error or 'invalid_grant'}). Run the OAuth flow again to reconnect.",
        code="needs_reauth")


async def access_token(rt: Runtime, account_id: str, connection_id: str, *,
                       force_refresh: bool = False) -> AccessToken:
    """A valid access token, refreshed first when it expires soon (or when forced)."""
    conn = await get(rt, account_id, connection_id)
    if conn.credential_type != "oauth2":
        raise Conflict("This connection holds no OAuth token (it is an "
                       f"{conn.credential_type} credential).", code="not_oauth")
    if conn.status == "needs_reauth":
        raise _needs_reauth(conn)
    if not force_refresh and not needs_refresh(conn, utcnow()):
        return _current(rt, conn)
    return _current(rt, await refresh(rt, conn, seen_version=conn.version))


async def refresh(rt: Runtime, conn: Connection, *, seen_version: int) -> Connection:
    """Refresh once for everyone who saw `seen_version`; returns the newer row."""
    async with rt.refresh_lock(conn.id):
        while True:
            conn = await _reread(rt, conn.id)
            if conn.version != seen_version:
                return conn  # another caller refreshed while we waited
            if conn.status == "needs_reauth":
                raise _needs_reauth(conn)
            if await _take_lease(rt, conn):
                break
            await asyncio.sleep(LEASE_POLL)  # another process holds the lease
    try:
        return await _refresh_with_lease(rt, conn)
    finally:
        async with rt.sessions.begin() as db:
            await db.execute(update(Connection).where(
                Connection.id == conn.id, Connection.refresh_lease_owner == conn.refresh_lease_owner
            ).values(refresh_lease_until=None, refresh_lease_owner=None))


async def _take_lease(rt: Runtime, conn: Connection) -> bool:
    now = utcnow()
    owner = new_id("lease")
    async with rt.sessions.begin() as db:
        taken = await db.execute(update(Connection).where(
            Connection.id == conn.id, Connection.version == conn.version,
            (Connection.refresh_lease_until.is_(None)) | (Connection.refresh_lease_until < now),
        ).values(refresh_lease_until=now + LEASE, refresh_lease_owner=owner))
    if taken.rowcount == 1:  # type: ignore[attr-defined]
        conn.refresh_lease_owner = owner
        return True
    return False


async def _refresh_with_lease(rt: Runtime, conn: Connection) -> Connection:
    connector = rt.catalog.get(conn.connector_id)
    creds = rt.client_credentials(connector) if connector else None
    if connector is None or creds is None or conn.refresh_token_enc is None:
        why = "it has no refresh token" if connector else "its connector is gone"
        if conn.expires_at is not None and conn.expires_at > utcnow():
            return conn
        raise ProviderFailure(f"The access token has expired and cannot be refreshed: {why}. "
                              "Run the OAuth flow again to reconnect.", code="needs_reauth",
                              status=409)
    refresh_token = rt.box.decrypt(conn.refresh_token_enc, f"conn:{conn.id}:refresh")
    try:
        tokens = await oauth.refresh(connector, creds, refresh_token=refresh_token,
                                     scopes=list(conn.scopes), data=dict(conn.metadata_),
                                     transport=rt.transport, timeout=rt.settings.http_timeout)
    except oauth.ProviderError as exc:
        return await _record_failure(rt, conn, exc)
    now = utcnow()
    async with rt.sessions.begin() as db:
        written = await db.execute(update(Connection).where(
            Connection.id == conn.id, Connection.version == conn.version,
        ).values(
            access_token_enc=rt.box.encrypt(tokens.access_token, f"conn:{conn.id}:access"),
            refresh_token_enc=rt.box.encrypt(tokens.refresh_token or refresh_token,
                                             f"conn:{conn.id}:refresh"),
            token_type=tokens.token_type, expires_at=tokens.expires_at, issued_at=now,
            scopes=list(tokens.scopes) or list(conn.scopes),
            version=conn.version + 1, status="connected", last_error=None,
            last_refresh_at=now, updated_at=now,
        ))
    if written.rowcount != 1:  # type: ignore[attr-defined]
        log.warning("refresh of %s lost a race; keeping the newer token", conn.id)
    log.info("refreshed connection %s", conn.id)
    return await _reread(rt, conn.id)


async def _record_failure(rt: Runtime, conn: Connection, exc: oauth.ProviderError) -> Connection:
    latest = await _reread(rt, conn.id)
    if latest.version != conn.version:
        return latest  # someone else rotated the token meanwhile: their answer stands
    status = "needs_reauth" if exc.permanent else "error"
    async with rt.sessions.begin() as db:
        await db.execute(update(Connection).where(
            Connection.id == conn.id, Connection.version == conn.version,
        ).values(status=status, last_error=f"{exc.code}: {exc.description}"[:500],
                 updated_at=utcnow()))
    log.warning("refresh of %s failed: %s", conn.id, exc.code)
    if exc.permanent:
        latest.last_error = exc.code
        raise _needs_reauth(latest)
    if conn.expires_at is not None and conn.expires_at > utcnow():
        return conn  # still valid: keep serving it while the provider recovers
    raise ProviderFailure(f"The provider failed to refresh the token ({exc.code}) and no valid "
                          "token is left; try again shortly.", code="provider_error")


async def delete(rt: Runtime, account_id: str, connection_id: str) -> None:
    """Revoke at the provider where possible, then delete locally whatever the provider says."""
    conn = await get(rt, account_id, connection_id)
    connector = rt.catalog.get(conn.connector_id)
    creds = rt.client_credentials(connector) if connector else None
    if connector and creds and connector.revocation_url:
        for enc, hint in ((conn.refresh_token_enc, "refresh_token"),
                          (conn.access_token_enc, "access_token")):
            if enc is None:
                continue
            kind = "refresh" if hint == "refresh_token" else "access"
            try:
                await oauth.revoke(connector, creds,
                                   token=rt.box.decrypt(enc, f"conn:{conn.id}:{kind}"),
                                   token_type_hint=hint, data=dict(conn.metadata_),
                                   transport=rt.transport, timeout=rt.settings.http_timeout)
                break
            except oauth.ProviderError as exc:
                log.warning("revocation of %s at the provider failed: %s", conn.id, exc.code)
    async with rt.sessions.begin() as db:
        row = await db.get(Connection, conn.id)
        if row is not None:
            await db.delete(row)

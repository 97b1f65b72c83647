"""Stored connections: read, list, delete (with revocation) and fresh access tokens.

The one place that decides and performs refreshes (`_refresh.py`):

- within a process, concurrent callers share one refresh (single flight);
- across processes, the refresh holds a database row lock (`SELECT ... FOR UPDATE` on
  PostgreSQL, a serialized write transaction `BEGIN IMMEDIATE` on SQLite) and re-reads the row
  once it has the lock, so a caller that waited finds the token already refreshed;
- the write is a compare-and-swap on `version`: an overlapping refresh never overwrites a newer
  token; the old refresh token is kept when the provider returns none;
- temporary failures keep serving a still-valid token and back off per connection
  (`next_retry_at`); `invalid_grant` marks the connection `needs_reauth` after a re-read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select

from alloy_oauth import oauth, webhooks
from alloy_oauth.connections._refresh import (
    REFRESH_MARGIN,
    AccessToken,
    current_token,
    fresh,
    needs_reauth_error,
    needs_refresh,
    refresh,
    refresh_margin,
)
from alloy_oauth.errors import Conflict, connection_not_found
from alloy_oauth.runtime import Runtime
from alloy_oauth.store.models import Connection

log = logging.getLogger(__name__)

__all__ = [
    "REFRESH_MARGIN",
    "AccessToken",
    "Deleted",
    "access_token",
    "current_token",
    "delete",
    "fresh",
    "get",
    "list_for",
    "needs_refresh",
    "refresh",
    "refresh_margin",
]

# A revocation call must not hold the caller for the provider's full timeout.
REVOKE_TIMEOUT = 10.0


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


async def access_token(rt: Runtime, account_id: str, connection_id: str, *,
                       force_refresh: bool = False) -> AccessToken:
    """A valid access token, refreshed first when it expires soon (or when forced)."""
    conn = await get(rt, account_id, connection_id)
    if conn.credential_type != "oauth2":
        raise Conflict("This connection holds no OAuth token (it is an "
                       f"{conn.credential_type} credential).", code="not_oauth")
    if conn.status == "needs_reauth":
        raise needs_reauth_error(conn)
    return current_token(rt, await fresh(rt, conn, force=force_refresh))


@dataclass(frozen=True)
class Deleted:
    """What happened at the provider: `revoked` is None when it offers no revocation."""

    revoked: bool | None
    revocation_error: str | None


async def _revoke(rt: Runtime, conn: Connection) -> Deleted:
    connector = rt.catalog.get(conn.connector_id)
    creds = await rt.connection_credentials(connector, conn) if connector else None
    if conn.credential_type != "oauth2" or not connector or not connector.revocation_url:
        return Deleted(None, None)
    if creds is None:
        return Deleted(False, "connector_not_configured: the connector has no OAuth app "
                              "configured any more, so the grant could not be revoked")
    error = "no token to revoke"
    # Revoking the refresh token ends the whole grant at most providers; the access token is
    # the fallback for providers that only accept that.
    for enc, hint, kind in ((conn.refresh_token_enc, "refresh_token", "refresh"),
                            (conn.access_token_enc, "access_token", "access")):
        if enc is None:
            continue
        try:
            await oauth.revoke(connector, creds,
                               token=rt.box.decrypt(enc, f"conn:{conn.id}:{kind}"),
                               token_type_hint=hint, data=dict(conn.metadata_),
                               transport=rt.transport,
                               timeout=min(rt.settings.http_timeout, REVOKE_TIMEOUT))
            return Deleted(True, None)
        except oauth.ProviderError as exc:
            error = f"{exc.code}: {exc.description}"[:500]
            log.warning("revocation of %s (%s) at the provider failed: %s", conn.id, hint,
                        exc.code)
    return Deleted(False, error)


async def delete(rt: Runtime, account_id: str, connection_id: str) -> Deleted:
    """Revoke at the provider where possible, then delete locally whatever the provider says.

    A failed revocation is recorded: in the returned `Deleted`, in the log, and in the
    durable `connection.deleted` event (`revoked: false`, `revocationError`), which
    `GET /webhooks/events` lists whether or not a webhook URL is set.
    """
    conn = await get(rt, account_id, connection_id)
    result = await _revoke(rt, conn)
    async with rt.sessions.begin() as db:
        row = await db.get(Connection, conn.id)
        if row is None:
            raise connection_not_found()  # deleted meanwhile by another request
        await db.delete(row)
        webhooks.add_event(db, conn.account_id, webhooks.CONNECTION_DELETED,
                           webhooks.connection_data(conn, status="deleted",
                                                    revoked=result.revoked,
                                                    revocationError=result.revocation_error),
                           connection_id=conn.id)
    log.info("connection %s deleted (revoked: %s)", conn.id, result.revoked)
    return result

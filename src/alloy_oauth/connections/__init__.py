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

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from alloy_oauth import oauth, webhooks
from alloy_oauth.accounts import ACTIVE_KEY, authenticate
from alloy_oauth.connections._refresh import (
    REFRESH_MARGIN,
    AccessToken,
    current_token,
    fresh,
    needs_refresh,
    refresh,
    refresh_due,
    refresh_margin,
)
from alloy_oauth.crypto import sha256
from alloy_oauth.errors import Conflict, ServiceError, connection_not_found
from alloy_oauth.runtime import Runtime
from alloy_oauth.store.models import ApiKey, Connection, utcnow

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
    "get_for_key",
    "list_for",
    "needs_refresh",
    "refresh",
    "refresh_margin",
    "revoke_for_user",
    "valid_token",
]

# A revocation call must not hold the caller for the provider's full timeout.
REVOKE_TIMEOUT = 10.0
# Revocations a user's deletion runs at once.
USER_REVOKE_CONCURRENCY = 4


# A connection named by its connection id or its credential id (the `ref` parameter).
_IS_REF = (Connection.id == bindparam("ref")) | (Connection.credential_id == bindparam("ref"))
_BY_REF = select(Connection).where(Connection.account_id == bindparam("account_id"), _IS_REF)


async def get(rt: Runtime, account_id: str, connection_id: str) -> Connection:
    """The account's connection (by connection or credential id); another account's is 404."""
    conn = await rt.reads.entity(Connection, _BY_REF,
                                 {"account_id": account_id, "ref": connection_id})
    if conn is None:
        raise connection_not_found()
    return conn


_BY_KEY = (select(Connection).join(ApiKey, ApiKey.account_id == Connection.account_id)
           .where(ACTIVE_KEY, _IS_REF))


async def get_for_key(rt: Runtime, api_key: str, connection_id: str) -> Connection:
    """`get` for the caller holding `api_key`, in one read (the key and the connection joined).
    When that finds nothing, the key check and `get` give the exact answer (401 or 404)."""
    conn = await rt.reads.entity(Connection, _BY_KEY,
                                 {"key_hash": sha256(api_key), "ref": connection_id})
    if conn is None:
        who = await authenticate(rt.reads, api_key)
        conn = await get(rt, who.account_id, connection_id)
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
    """A valid access token, refreshed first when it expires soon (or when forced); 409
    needs_reauth (from `fresh`) when the provider refused the grant."""
    conn = await get(rt, account_id, connection_id)
    if conn.credential_type != "oauth2":
        raise Conflict("This connection holds no OAuth token (it is an "
                       f"{conn.credential_type} credential).", code="not_oauth")
    return current_token(rt, await fresh(rt, conn, force=force_refresh))


# The token endpoint's one read: the API key and the connection together, only the columns a
# still-valid token needs.
_VALID_TOKEN = (
    select(Connection.id, Connection.connector_id, Connection.credential_type,
           Connection.status, Connection.access_token_enc, Connection.token_type,
           Connection.expires_at, Connection.issued_at)
    .join(ApiKey, ApiKey.account_id == Connection.account_id)
    .where(ACTIVE_KEY, _IS_REF)
)


async def valid_token(rt: Runtime, api_key: str, connection_id: str) -> AccessToken | None:
    """The stored access token when the key is valid, the connection its account's, and the
    token not due for a refresh: the common case of `GET /connections/{id}/token`, in one read
    (`access_token` would read the key and the whole connection apart). None otherwise, and
    the caller takes the full path, which gives the exact answer (401, 404, 409, a refresh)."""
    row = await rt.reads.first(_VALID_TOKEN, {"key_hash": sha256(api_key), "ref": connection_id})
    if row is None:
        return None
    conn_id, connector_id, kind, status, access_enc, token_type, expires_at, issued_at = row
    if kind != "oauth2" or status == "needs_reauth" or access_enc is None or refresh_due(
            expires_at, issued_at, utcnow(), refresh_margin(rt, connector_id)):
        return None
    return AccessToken(rt.box.decrypt(access_enc, f"conn:{conn_id}:access"), token_type,
                       expires_at)


@dataclass(frozen=True)
class Deleted:
    """What happened at the provider: `revoked` is None when it offers no revocation."""

    revoked: bool | None
    revocation_error: str | None


async def _revoke(rt: Runtime, conn: Connection) -> Deleted:
    connector = rt.catalog.get(conn.connector_id)
    if conn.credential_type != "oauth2" or not connector or not connector.revocable:
        return Deleted(None, None)
    creds = await rt.connection_credentials(connector, conn)
    if creds is None:
        return Deleted(False, "connector_not_configured: the connector has no OAuth app "
                              "configured any more, so the grant could not be revoked")
    hints = oauth.revocation_tokens(connector)
    if hints == ("access_token",) and conn.refresh_token_enc is not None \
            and conn.expires_at is not None and conn.expires_at <= utcnow():
        # The provider's call takes the access token (GitHub, Dropbox) and wants a valid one.
        try:
            conn = await fresh(rt, conn)
        except ServiceError as exc:
            log.warning("refresh before revoking %s failed: %s", conn.id, exc.code)
    error = f"no {hints[0].replace('_', ' ')} to revoke"
    # RFC 7009: revoking the refresh token ends the whole grant at most providers; the access
    # token is the fallback for providers that only accept that.
    stored = {"refresh_token": (conn.refresh_token_enc, "refresh"),
              "access_token": (conn.access_token_enc, "access")}
    for hint in hints:
        enc, kind = stored[hint]
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


async def _revoke_recorded(rt: Runtime, conn: Connection, gate: asyncio.Semaphore) -> Deleted:
    async with gate:
        try:
            return await _revoke(rt, conn)
        except Exception as exc:  # one connection's surprise must not stop the user's deletion
            log.exception("revocation of %s failed unexpectedly", conn.id)
            return Deleted(False, f"internal_error: the revocation failed ({type(exc).__name__})")


async def revoke_for_user(rt: Runtime, account_id: str, user_id: str, *,
                          concurrency: int = USER_REVOKE_CONCURRENCY,
                          ) -> Callable[[AsyncSession], Awaitable[int]]:
    """Revoke each of a user's connections at its provider, `concurrency` at a time.

    A failed revocation is recorded, never raised. Returns the step to run inside the
    transaction that deletes the user: it deletes the user's connections, adds one durable
    `connection.deleted` event for each (as `delete` does; a connection made while revoking is
    reported `revoked: false`), and returns how many it deleted.
    """
    gate = asyncio.Semaphore(max(1, concurrency))
    found = await list_for(rt, account_id, user_id=user_id)
    results = await asyncio.gather(*(_revoke_recorded(rt, c, gate) for c in found))
    revoked = {c.id: r for c, r in zip(found, results, strict=True)}
    late = Deleted(False, "not revoked: the connection was made while its user was being "
                          "deleted")

    async def finish(db: AsyncSession) -> int:
        rows = list((await db.execute(select(Connection).where(
            Connection.account_id == account_id, Connection.user_id == user_id))).scalars())
        for row in rows:
            result = revoked.get(row.id, late)
            webhooks.add_event(db, row.account_id, webhooks.CONNECTION_DELETED,
                               webhooks.connection_data(row, status="deleted",
                                                        revoked=result.revoked,
                                                        revocationError=result.revocation_error),
                               connection_id=row.id)
            await db.delete(row)
        log.info("user %s: %d connections deleted (%d revoked)", user_id, len(rows),
                 sum(1 for r in rows if revoked.get(r.id, late).revoked))
        return len(rows)

    return finish

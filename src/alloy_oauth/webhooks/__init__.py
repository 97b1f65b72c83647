"""Webhooks: an account-level URL receives connection events, signed, from a durable outbox.

Events are rows of `webhook_outbox`, written in the same database transaction as the change
they report, so an event is never lost nor sent for a change that was rolled back. A
dispatcher (`dispatcher.py`) delivers them with retries and logs every attempt.

Signature: header `Alloy-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import threading
from datetime import datetime
from typing import Any

from sqlalchemy import delete, event, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from alloy_oauth.crypto import random_token
from alloy_oauth.errors import BadRequest, NotFound
from alloy_oauth.ids import new_id
from alloy_oauth.runtime import Runtime
from alloy_oauth.store.models import Connection, utcnow
from alloy_oauth.webhooks import guard
from alloy_oauth.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent

log = logging.getLogger(__name__)

CONNECTION_CREATED = "connection.created"
CONNECTION_NEEDS_REAUTH = "connection.needs_reauth"
CONNECTION_RECOVERED = "connection.recovered"
CONNECTION_DELETED = "connection.deleted"
WEBHOOK_TEST = "webhook.test"
EVENT_TYPES = (CONNECTION_CREATED, CONNECTION_NEEDS_REAUTH, CONNECTION_RECOVERED,
               CONNECTION_DELETED, WEBHOOK_TEST)

SIGNATURE_HEADER = "Alloy-Signature"
SECRET_PREFIX = "whsec_"
_PENDING_FLAG = "alloy_webhook_events"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def connection_data(conn: Connection, **extra: Any) -> dict[str, Any]:
    """What an event tells about a connection: identifiers and health, never a secret."""
    return {
        "connectionId": conn.id,
        "credentialId": conn.credential_id,
        "connectorId": conn.connector_id,
        "userId": conn.user_id,
        "status": conn.status,
        "lastError": conn.last_error,
        **extra,
    }


def new_event(account_id: str, type_: str, data: dict[str, Any], *,
              connection_id: str | None = None) -> WebhookEvent:
    now = utcnow()
    return WebhookEvent(id=new_id("evt"), account_id=account_id, type=type_,
                        connection_id=connection_id, payload=data, status="pending",
                        attempts=0, next_attempt_at=now, created_at=now)


def add_event(db: AsyncSession | Session, account_id: str, type_: str, data: dict[str, Any], *,
              connection_id: str | None = None) -> WebhookEvent:
    """Put an event in the outbox as part of `db`'s transaction (delivered once it commits)."""
    evt = new_event(account_id, type_, data, connection_id=connection_id)
    db.add(evt)
    db.info[_PENDING_FLAG] = True
    return evt


def envelope(evt: WebhookEvent) -> bytes:
    """The JSON body delivered for an event (the same bytes on every attempt)."""
    return json.dumps({"id": evt.id, "type": evt.type, "createdAt": _iso(evt.created_at),
                       "data": evt.payload}, separators=(",", ":")).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `Alloy-Signature` header value for a body sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


# --- connection.created for every new connection, whichever code path creates it ------------

def _before_flush(session: Session, _ctx: Any, _instances: Any) -> None:
    for obj in list(session.new):
        if isinstance(obj, Connection):
            add_event(session, obj.account_id, CONNECTION_CREATED,
                      connection_data(obj, createdAt=_iso(obj.created_at or utcnow())),
                      connection_id=obj.id)


# --- waking the dispatchers of this process when an event commits ------------------------

_wakers: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
_wakers_lock = threading.Lock()


def register_waker(loop: asyncio.AbstractEventLoop, wake: asyncio.Event) -> None:
    with _wakers_lock:
        _wakers.add((loop, wake))


def unregister_waker(loop: asyncio.AbstractEventLoop, wake: asyncio.Event) -> None:
    with _wakers_lock:
        _wakers.discard((loop, wake))


def _after_commit(session: Session) -> None:
    if not session.info.pop(_PENDING_FLAG, False):
        return
    with _wakers_lock:
        wakers = list(_wakers)
    for loop, wake in wakers:
        if not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING_FLAG, None)


event.listen(Session, "before_flush", _before_flush)
event.listen(Session, "after_commit", _after_commit)
event.listen(Session, "after_soft_rollback", lambda s, _t: _after_rollback(s))


# --- the account's endpoint ------------------------------------------------------------------

async def check_url(rt: Runtime, url: str) -> str:
    """`url` if it may receive webhooks, else BadRequest naming why (see guard.py): https
    (http://localhost too in development) and, in production, a host that is and resolves to
    public addresses only, unless `ALLOY_WEBHOOK_ALLOW_PRIVATE`. The message names the host,
    never the rest of the URL (it may carry a token)."""
    settings = rt.settings
    problem = guard.url_problem(url, production=settings.is_production)
    if problem is None and settings.is_production and not settings.webhook_allow_private:
        problem = await guard.host_problem(url, timeout=min(settings.webhook_timeout, 5.0))
    if problem is not None:
        raise BadRequest(f"Invalid webhook URL: {problem}.", code="invalid_webhook_url")
    return url


def check_events(events: list[str]) -> list[str]:
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown:
        raise BadRequest(f"Unknown event type '{unknown[0]}': use any of "
                         f"{', '.join(EVENT_TYPES)}.", code="invalid_event_type")
    return list(dict.fromkeys(events))


def _secret_context(endpoint_id: str) -> str:
    return f"webhook:{endpoint_id}:secret"


def endpoint_secret(rt: Runtime, endpoint: WebhookEndpoint) -> str:
    return rt.box.decrypt(endpoint.secret_enc, _secret_context(endpoint.id))


def _new_secret() -> str:
    return SECRET_PREFIX + random_token(32)


async def find_endpoint(db: AsyncSession, account_id: str) -> WebhookEndpoint | None:
    """The account's endpoint, read in `db`."""
    return (await db.execute(select(WebhookEndpoint).where(
        WebhookEndpoint.account_id == account_id))).scalar()


async def get_endpoint(rt: Runtime, account_id: str) -> WebhookEndpoint | None:
    async with rt.sessions() as db:
        return await find_endpoint(db, account_id)


def no_endpoint() -> NotFound:
    return NotFound("Webhook not found: this account has no webhook URL yet; set one with "
                    "PUT /webhooks.", code="not_found")


async def put_endpoint(rt: Runtime, account_id: str, *, url: str, events: list[str],
                       enabled: bool) -> tuple[WebhookEndpoint, str | None]:
    """Set the account's webhook URL. Returns the endpoint and, when it is new, its secret."""
    await check_url(rt, url)
    events = check_events(events)
    async with rt.sessions.begin() as db:
        endpoint = await find_endpoint(db, account_id)
        secret: str | None = None
        if endpoint is None:
            secret = _new_secret()
            endpoint_id = new_id("whk")
            endpoint = WebhookEndpoint(
                id=endpoint_id, account_id=account_id, url=url, events=events,
                enabled=enabled, secret_enc=rt.box.encrypt(secret, _secret_context(endpoint_id)))
            db.add(endpoint)
        else:
            endpoint.url, endpoint.events, endpoint.enabled = url, events, enabled
            endpoint.updated_at = utcnow()
    return endpoint, secret


async def rotate_secret(rt: Runtime, account_id: str) -> tuple[WebhookEndpoint, str]:
    async with rt.sessions.begin() as db:
        endpoint = await find_endpoint(db, account_id)
        if endpoint is None:
            raise no_endpoint()
        secret = _new_secret()
        endpoint.secret_enc = rt.box.encrypt(secret, _secret_context(endpoint.id))
        endpoint.updated_at = utcnow()
    return endpoint, secret


async def delete_endpoint(rt: Runtime, account_id: str) -> None:
    async with rt.sessions.begin() as db:
        gone = await db.execute(delete(WebhookEndpoint).where(
            WebhookEndpoint.account_id == account_id))
        if gone.rowcount == 0:  # type: ignore[attr-defined]
            raise no_endpoint()


async def send_test_event(rt: Runtime, account_id: str) -> WebhookEvent:
    async with rt.sessions.begin() as db:
        if await find_endpoint(db, account_id) is None:
            raise no_endpoint()
        return add_event(db, account_id, WEBHOOK_TEST, {"message": "A test event."})


async def list_events(rt: Runtime, account_id: str, *, limit: int = 50,
                      type_: str | None = None, connection_id: str | None = None,
                      ) -> list[WebhookEvent]:
    query = select(WebhookEvent).where(WebhookEvent.account_id == account_id)
    if type_:
        query = query.where(WebhookEvent.type == type_)
    if connection_id:
        query = query.where(WebhookEvent.connection_id == connection_id)
    async with rt.sessions() as db:
        return list((await db.execute(
            query.order_by(WebhookEvent.created_at.desc(), WebhookEvent.id).limit(limit)
        )).scalars())


async def list_deliveries(rt: Runtime, account_id: str, *, limit: int = 50,
                          event_id: str | None = None) -> list[WebhookDelivery]:
    query = select(WebhookDelivery).where(WebhookDelivery.account_id == account_id)
    if event_id:
        query = query.where(WebhookDelivery.event_id == event_id)
    async with rt.sessions() as db:
        return list((await db.execute(
            query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id).limit(limit)
        )).scalars())


def event_shape(evt: WebhookEvent) -> dict[str, Any]:
    return {"eventId": evt.id, "type": evt.type, "connectionId": evt.connection_id,
            "data": evt.payload, "status": evt.status, "attempts": evt.attempts,
            "nextAttemptAt": _iso(evt.next_attempt_at) if evt.status == "pending" else None,
            "lastError": evt.last_error, "createdAt": _iso(evt.created_at),
            "finishedAt": _iso(evt.finished_at)}


def delivery_shape(d: WebhookDelivery) -> dict[str, Any]:
    return {"deliveryId": d.id, "eventId": d.event_id, "url": d.url, "attempt": d.attempt,
            "statusCode": d.status_code, "error": d.error, "durationMs": d.duration_ms,
            "createdAt": _iso(d.created_at)}


def endpoint_shape(endpoint: WebhookEndpoint, secret: str | None = None) -> dict[str, Any]:
    shape: dict[str, Any] = {
        "url": endpoint.url, "events": list(endpoint.events) or list(EVENT_TYPES[:4]),
        "enabled": endpoint.enabled, "createdAt": _iso(endpoint.created_at),
        "updatedAt": _iso(endpoint.updated_at)}
    if secret is not None:
        shape["secret"] = secret
    return shape

"""Webhooks: an account-level URL gets signed connection events from a durable outbox,
retried with backoff, with a delivery log; the Python client verifies the signature."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from alloy_oauth import WebhookSignatureError, parse_webhook, verify_webhook_signature
from alloy_oauth.runtime import build_runtime
from alloy_oauth.server.app import create_app
from alloy_oauth.store.models import utcnow
from alloy_oauth.webhooks.dispatcher import WebhookDispatcher
from alloy_oauth.webhooks.models import WebhookEvent
from tests.conftest import Alloy, StartAlloy
from tests.support.servers import run_asgi
from tests.test_refresh import Receiver, start_receiver

KEYED = {"keyed": {"name": "Keyed API", "auth_types": ["apiKey"],
                   "api_base_url": "https://api.keyed.example", "api_auth": "header",
                   "api_auth_name": "X-Key"}}
FAST = {"webhook_delivery": True, "webhook_poll_interval": 0.1, "webhook_retry_base": 0.2}


@contextlib.contextmanager
def hooked(start_alloy: StartAlloy, statuses: list[int] | None = None,
           **settings: Any) -> Iterator[tuple[Alloy, Receiver]]:
    with start_receiver(statuses) as receiver, start_alloy(
            providers=KEYED, **{**FAST, **settings}) as alloy:
        yield alloy, receiver


async def new_connection(alloy: Alloy) -> str:
    async with alloy.api() as api:
        made = await api.post("/connectors/keyed/credentials", json={
            "credentialType": "apiKey", "data": {"apiKey": "key-abcdef123456"}})
    assert made.status_code == 200, made.text
    conn_id: str = made.json()["connectionId"]
    return conn_id


async def set_webhook(alloy: Alloy, url: str, **body: Any) -> str:
    async with alloy.api() as api:
        answer = await api.put("/webhooks", json={"url": url, **body})
    assert answer.status_code == 200, answer.text
    secret: str = answer.json()["webhook"]["secret"]
    return secret


async def wait_status(alloy: Alloy, event_id: str, status: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alloy.rows("webhook_outbox", f"id = '{event_id}' AND status = '{status}'"):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"event {event_id} did not become {status}")


async def test_connection_events_arrive_signed_at_the_account_url(
        start_alloy: StartAlloy) -> None:
    with hooked(start_alloy) as (alloy, receiver):
        secret = await set_webhook(alloy, receiver.url)
        assert secret.startswith("whsec_")
        conn_id = await new_connection(alloy)
        [(headers, body)] = await receiver.wait_for("connection.created")
        async with alloy.api() as api:
            shown = (await api.get("/webhooks")).json()["webhook"]
            assert (await api.delete(f"/connections/{conn_id}")).status_code == 200
        [(_, deleted_body)] = await receiver.wait_for("connection.deleted")
    assert "secret" not in shown and shown["url"] == receiver.url
    assert verify_webhook_signature(body, headers["alloy-signature"], secret)
    event = json.loads(body)
    assert set(event) == {"id", "type", "createdAt", "data"}
    assert headers["alloy-event-id"] == event["id"] and event["id"].startswith("evt_")
    assert headers["alloy-event-type"] == "connection.created"
    assert headers["content-type"] == "application/json"
    assert event["data"]["connectionId"] == conn_id
    assert event["data"]["connectorId"] == "keyed" and event["data"]["status"] == "connected"
    deleted = json.loads(deleted_body)
    assert deleted["data"]["connectionId"] == conn_id and deleted["data"]["revoked"] is None
    assert b"key-abcdef123456" not in body + deleted_body


async def test_failed_deliveries_are_retried_with_backoff_and_logged(
        start_alloy: StartAlloy) -> None:
    with hooked(start_alloy, statuses=[500, 503]) as (alloy, receiver):
        await set_webhook(alloy, receiver.url)
        await new_connection(alloy)
        got = await receiver.wait_for("connection.created", count=3)
        async with alloy.api() as api:
            [event] = (await api.get("/webhooks/events",
                                     params={"type": "connection.created"})).json()["events"]
            await wait_status(alloy, event["eventId"], "delivered")
            log = (await api.get("/webhooks/deliveries",
                                 params={"eventId": event["eventId"]})).json()["deliveries"]
    assert len(got) == 3 and len({b for _, b in got}) == 1  # the same body every time
    assert [h["alloy-delivery-attempt"] for h, _ in got] == ["1", "2", "3"]
    assert [(d["attempt"], d["statusCode"]) for d in reversed(log)] == [
        (1, 500), (2, 503), (3, 200)]
    assert log[-1]["error"] == "the endpoint answered HTTP 500"
    assert all(d["url"] == receiver.url for d in log)


async def test_delivery_gives_up_after_the_last_attempt(start_alloy: StartAlloy) -> None:
    with hooked(start_alloy, statuses=[500] * 10, webhook_max_attempts=3) as (alloy, receiver):
        await set_webhook(alloy, receiver.url)
        await new_connection(alloy)
        await receiver.wait_for("connection.created", count=3)
        async with alloy.api() as api:
            [event] = (await api.get("/webhooks/events")).json()["events"]
            await wait_status(alloy, event["eventId"], "failed")
            await asyncio.sleep(0.8)
            [event] = (await api.get("/webhooks/events")).json()["events"]
    assert len(receiver.received) == 3
    assert event["status"] == "failed" and event["attempts"] == 3
    assert event["lastError"] == "the endpoint answered HTTP 500"


async def test_the_outbox_keeps_events_until_a_dispatcher_runs(start_alloy: StartAlloy) -> None:
    with hooked(start_alloy, webhook_delivery=False) as (alloy, receiver):
        await set_webhook(alloy, receiver.url)
        conn_id = await new_connection(alloy)
        await asyncio.sleep(0.5)
        assert receiver.received == []
        assert alloy.rows("webhook_outbox", "status = 'pending'") == 1
        # Another server process (a restart) on the same database delivers it.
        with run_asgi(create_app(alloy.settings.model_copy(update={"webhook_delivery": True}))):
            await receiver.wait_for("connection.created")
    assert receiver.events()[0]["data"]["connectionId"] == conn_id


async def test_several_dispatchers_deliver_each_event_once(start_alloy: StartAlloy) -> None:
    with hooked(start_alloy) as (alloy, receiver):
        await set_webhook(alloy, receiver.url)
        with run_asgi(create_app(alloy.settings)), run_asgi(create_app(alloy.settings)):
            made = [await new_connection(alloy) for _ in range(10)]
            await receiver.wait_for("connection.created", count=10)
            await asyncio.sleep(0.6)
    ids = [e["id"] for e in receiver.events()]
    assert len(ids) == 10 and len(set(ids)) == 10
    assert {e["data"]["connectionId"] for e in receiver.events()} == set(made)


async def test_subscribed_events_only_and_other_accounts_see_nothing(
        start_alloy: StartAlloy) -> None:
    with hooked(start_alloy) as (alloy, receiver), start_receiver() as other_receiver:
        await set_webhook(alloy, receiver.url, events=["connection.deleted"])
        _, other_key = alloy.new_account()
        async with alloy.api() as api:
            api.headers["Authorization"] = f"Bearer {other_key}"
            assert (await api.put("/webhooks", json={"url": other_receiver.url})).status_code \
                == 200
        conn_id = await new_connection(alloy)
        async with alloy.api() as api:
            await api.delete(f"/connections/{conn_id}")
        await receiver.wait_for("connection.deleted")
        await asyncio.sleep(0.5)
    assert [e["type"] for e in receiver.events()] == ["connection.deleted"]
    assert other_receiver.received == []
    assert alloy.rows("webhook_outbox", "type = 'connection.created' AND status = 'skipped'") \
        == 1


async def test_rotated_secret_signs_from_then_on(start_alloy: StartAlloy) -> None:
    with hooked(start_alloy) as (alloy, receiver):
        old = await set_webhook(alloy, receiver.url)
        async with alloy.api() as api:
            new = (await api.post("/webhooks/rotate-secret")).json()["webhook"]["secret"]
            test = await api.post("/webhooks/test")
        assert test.status_code == 200
        [(headers, body)] = await receiver.wait_for("webhook.test")
    assert new != old
    assert verify_webhook_signature(body, headers["alloy-signature"], new)
    assert not verify_webhook_signature(body, headers["alloy-signature"], old)


async def test_webhook_settings_are_validated(start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        async with alloy.api() as api:
            missing = await api.get("/webhooks")
            plain_http = await api.put("/webhooks", json={"url": "http://hooks.example/x"})
            bad_event = await api.put("/webhooks", json={"url": "https://hooks.example/x",
                                                         "events": ["connection.eaten"]})
            good = await api.put("/webhooks", json={"url": "https://hooks.example/x"})
            again = await api.put("/webhooks", json={"url": "https://hooks.example/y"})
            removed = await api.delete("/webhooks")
            gone = await api.post("/webhooks/test")
    assert missing.status_code == 404
    assert plain_http.status_code == 400 and plain_http.json()["error"] == "invalid_webhook_url"
    assert bad_event.status_code == 400 and bad_event.json()["error"] == "invalid_event_type"
    assert good.status_code == 200 and "secret" in good.json()["webhook"]
    assert "secret" not in again.json()["webhook"]  # the URL changed, the secret did not
    assert again.json()["webhook"]["url"] == "https://hooks.example/y"
    assert removed.json() == {"success": True}
    assert gone.status_code == 404


def _sign(secret: str, stamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


def test_client_verifies_signature_body_and_age() -> None:
    body = b'{"id":"evt_1","type":"connection.created","createdAt":null,"data":{}}'
    now = int(time.time())
    header = _sign("whsec_a", now, body)
    assert verify_webhook_signature(body, header, "whsec_a")
    assert verify_webhook_signature(body.decode(), header, "whsec_a")
    assert not verify_webhook_signature(body + b" ", header, "whsec_a")
    assert not verify_webhook_signature(body, header, "whsec_b")
    assert not verify_webhook_signature(body, None, "whsec_a")
    assert not verify_webhook_signature(body, "v1=abc", "whsec_a")
    old = _sign("whsec_a", now - 600, body)
    assert not verify_webhook_signature(body, old, "whsec_a")
    assert verify_webhook_signature(body, old, "whsec_a", tolerance=900)
    # Several v1 values (a secret being rotated): any one may match.
    both = f"{header},v1={'0' * 64}"
    assert verify_webhook_signature(body, both, "whsec_a")
    event = parse_webhook(body, {"Alloy-Signature": header}, "whsec_a")
    assert event["type"] == "connection.created"
    with pytest.raises(WebhookSignatureError):
        parse_webhook(body, {"Alloy-Signature": header}, "whsec_b")


async def test_finished_events_and_their_log_are_dropped_after_the_retention(
        start_alloy: StartAlloy) -> None:
    with hooked(start_alloy) as (alloy, receiver):
        await set_webhook(alloy, receiver.url)
        await new_connection(alloy)
        await receiver.wait_for("connection.created")
        async with alloy.api() as api:
            [event] = (await api.get("/webhooks/events")).json()["events"]
        await wait_status(alloy, event["eventId"], "delivered")
    assert alloy.rows("webhook_deliveries") == 1
    rt = build_runtime(alloy.settings)
    try:
        async with rt.sessions.begin() as db:
            db.add(WebhookEvent(id="evt_pending", account_id=alloy.account_id, type="x",
                                payload={}, status="pending", attempts=0,
                                next_attempt_at=utcnow() + timedelta(days=1),
                                created_at=utcnow() - timedelta(days=90)))
        dispatcher = WebhookDispatcher(rt)
        await dispatcher._cleanup()
        assert alloy.rows("webhook_outbox") == 2  # recent enough, and pending
        async with rt.sessions.begin() as db:
            await db.execute(update(WebhookEvent).where(WebhookEvent.id == event["eventId"])
                             .values(finished_at=utcnow() - timedelta(days=31)))
        await dispatcher._cleanup()
        await dispatcher.client.aclose()
    finally:
        await rt.aclose()
    assert alloy.rows("webhook_outbox") == 1
    assert alloy.rows("webhook_outbox", "id = 'evt_pending'") == 1
    assert alloy.rows("webhook_deliveries") == 0

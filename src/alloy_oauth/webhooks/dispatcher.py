"""Delivers the outbox: claims due events (a compare-and-swap, so many processes can run one
each), POSTs them signed, logs every attempt, and retries with jittered exponential backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from datetime import timedelta

import httpx2
from sqlalchemy import delete, or_, select, update

from alloy_oauth import webhooks
from alloy_oauth.backoff import backoff
from alloy_oauth.ids import new_id
from alloy_oauth.runtime import Runtime
from alloy_oauth.store.models import utcnow
from alloy_oauth.webhooks.guard import GuardedTransport, TargetRefused, url_problem
from alloy_oauth.webhooks.models import WebhookDelivery, WebhookEvent

log = logging.getLogger(__name__)

BATCH = 50
CONCURRENCY = 8
RETENTION = timedelta(days=30)
RETRY_CAP = 6 * 3600.0


class WebhookDispatcher:
    """One per process; `start()` runs it in the background until `stop()`."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.owner = new_id("disp")
        # In production every connection goes through the SSRF guard (see guard.py): the host
        # is resolved, every address checked, and the socket opened to a checked address.
        # Redirects are never followed, so a receiver cannot bounce a delivery elsewhere.
        settings = rt.settings
        self.guarded = settings.is_production and not settings.webhook_allow_private
        self.client = httpx2.AsyncClient(
            timeout=settings.webhook_timeout, follow_redirects=False,
            transport=GuardedTransport() if self.guarded else None)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_cleanup = 0.0

    @property
    def lease(self) -> timedelta:
        # Longer than one delivery can take, so a live claim is never taken over.
        return timedelta(seconds=self.rt.settings.webhook_timeout * 3 + 30)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        webhooks.register_waker(loop, self._wake)
        self._task = loop.create_task(self._run(), name="alloy-webhook-dispatcher")

    async def stop(self) -> None:
        webhooks.unregister_waker(asyncio.get_running_loop(), self._wake)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.client.aclose()

    async def _run(self) -> None:
        interval = self.rt.settings.webhook_poll_interval
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a database hiccup must not end the loop
                log.warning("webhook dispatch failed: %s", type(exc).__name__)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(),
                                       interval * random.uniform(0.8, 1.2))

    async def run_once(self) -> int:
        """Deliver every due event once; returns how many were attempted."""
        now = utcnow()
        async with self.rt.sessions() as db:
            due = list((await db.execute(
                select(WebhookEvent.id).where(
                    WebhookEvent.status == "pending", WebhookEvent.next_attempt_at <= now,
                    or_(WebhookEvent.claimed_until.is_(None), WebhookEvent.claimed_until < now),
                ).order_by(WebhookEvent.next_attempt_at).limit(BATCH)
            )).scalars())
        claimed = [event_id for event_id in due if await self._claim(event_id)]
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(event_id: str) -> None:
            async with gate:
                await self._deliver(event_id)

        await asyncio.gather(*(one(e) for e in claimed))
        if time.monotonic() - self._last_cleanup > 3600:
            self._last_cleanup = time.monotonic()
            await self._cleanup()
        return len(claimed)

    async def _claim(self, event_id: str) -> bool:
        now = utcnow()
        async with self.rt.sessions.begin() as db:
            taken = await db.execute(update(WebhookEvent).where(
                WebhookEvent.id == event_id, WebhookEvent.status == "pending",
                or_(WebhookEvent.claimed_until.is_(None), WebhookEvent.claimed_until < now),
            ).values(claimed_until=now + self.lease, claimed_by=self.owner))
        return bool(taken.rowcount == 1)  # type: ignore[attr-defined]

    async def _finish(self, evt: WebhookEvent, **values: object) -> None:
        async with self.rt.sessions.begin() as db:
            await db.execute(update(WebhookEvent).where(
                WebhookEvent.id == evt.id, WebhookEvent.claimed_by == self.owner,
            ).values(claimed_until=None, claimed_by=None, **values))

    async def _deliver(self, event_id: str) -> None:
        async with self.rt.sessions() as db:
            evt = await db.get(WebhookEvent, event_id)
            endpoint = await webhooks.find_endpoint(db, evt.account_id) if evt else None
        if evt is None:
            return
        if (endpoint is None or not endpoint.enabled or (
                endpoint.events and evt.type not in endpoint.events
                and evt.type != webhooks.WEBHOOK_TEST)):
            await self._finish(evt, status="skipped", finished_at=utcnow())
            return
        attempt = evt.attempts + 1
        body = webhooks.envelope(evt)
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "alloy-oauth-webhooks",
            webhooks.SIGNATURE_HEADER: webhooks.sign(webhooks.endpoint_secret(self.rt, endpoint),
                                                     stamp, body),
            "Alloy-Event-Id": evt.id,
            "Alloy-Event-Type": evt.type,
            "Alloy-Delivery-Attempt": str(attempt),
        }
        started = time.monotonic()
        status_code: int | None = None
        error: str | None = None
        # A target the policy refuses (the URL here, its addresses in the transport) is a
        # final failure: retrying would not make it allowed.
        refused = url_problem(endpoint.url, production=self.rt.settings.is_production)
        try:
            if refused is None:
                response = await self.client.post(endpoint.url, content=body, headers=headers)
                status_code = response.status_code
                if not 200 <= status_code < 300:
                    error = f"the endpoint answered HTTP {status_code}"
        except TargetRefused as exc:
            refused = exc.reason
        except httpx2.TimeoutException:
            error = "the endpoint did not answer in time"
        except httpx2.HTTPError as exc:
            error = f"cannot reach the endpoint ({type(exc).__name__})"
        if refused is not None:
            error = f"refused: {refused}"
        duration = int((time.monotonic() - started) * 1000)
        now = utcnow()
        async with self.rt.sessions.begin() as db:
            db.add(WebhookDelivery(id=new_id("whd"), event_id=evt.id, account_id=evt.account_id,
                                   url=endpoint.url, attempt=attempt, status_code=status_code,
                                   error=error, duration_ms=duration, created_at=now))
        if error is None:
            await self._finish(evt, status="delivered", attempts=attempt, last_error=None,
                               finished_at=now)
            log.info("webhook %s (%s) delivered", evt.id, evt.type)
        elif refused is not None or attempt >= self.rt.settings.webhook_max_attempts:
            await self._finish(evt, status="failed", attempts=attempt, last_error=error,
                               finished_at=now)
            log.warning("webhook %s (%s) failed for good: %s", evt.id, evt.type, error)
        else:
            wait = backoff(self.rt.settings.webhook_retry_base, attempt, RETRY_CAP)
            await self._finish(evt, attempts=attempt, last_error=error,
                               next_attempt_at=now + timedelta(seconds=wait))
            log.info("webhook %s (%s) attempt %d failed (%s); retrying in %.1f s",
                     evt.id, evt.type, attempt, error, wait)

    async def _cleanup(self) -> None:
        # Finished events (and their delivery log, by cascade) are kept for RETENTION.
        cutoff = utcnow() - RETENTION
        async with self.rt.sessions.begin() as db:
            await db.execute(delete(WebhookDelivery).where(WebhookDelivery.event_id.in_(
                select(WebhookEvent.id).where(WebhookEvent.status != "pending",
                                              WebhookEvent.finished_at < cutoff))))
            await db.execute(delete(WebhookEvent).where(
                WebhookEvent.status != "pending", WebhookEvent.finished_at < cutoff))

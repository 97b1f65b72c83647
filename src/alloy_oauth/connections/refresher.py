"""The background refresher: renews tokens nearing expiry before anyone asks for them.

Safe with many processes: every refresh goes through the same row lock and version check as a
request's, and on PostgreSQL a row another process is refreshing is skipped, not waited for.
Concurrency is bounded per process; connections cooling down after a failure are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import timedelta

from sqlalchemy import or_, select

from alloy_oauth.connections._refresh import (
    REFRESH_MARGIN,
    needs_refresh,
    refresh,
    refresh_margin,
)
from alloy_oauth.errors import ServiceError
from alloy_oauth.runtime import Runtime
from alloy_oauth.store.models import Connection, utcnow

log = logging.getLogger(__name__)

BATCH = 200


class BackgroundRefresher:
    """One per process; `start()` runs it every `refresh_interval` (jittered) until `stop()`."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(),
                                                            name="alloy-refresher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        interval = self.rt.settings.refresh_interval
        while True:
            # Jitter, so that processes started together do not tick together.
            await asyncio.sleep(interval * random.uniform(0.5, 1.0))
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a database hiccup must not end the loop
                log.warning("background refresh failed: %s", type(exc).__name__)

    def _margins(self) -> timedelta:
        margins = [refresh_margin(self.rt, c) for c in self.rt.catalog]
        return max([REFRESH_MARGIN, *margins])

    async def run_once(self) -> int:
        """Refresh every connection within its refresh margin (which is far longer than a tick
        for ordinary tokens); returns how many refreshes were attempted."""
        now = utcnow()
        async with self.rt.sessions() as db:
            candidates = list((await db.execute(
                select(Connection).where(
                    Connection.credential_type == "oauth2",
                    Connection.status != "needs_reauth",
                    Connection.refresh_token_enc.is_not(None),
                    Connection.expires_at.is_not(None),
                    Connection.expires_at <= now + self._margins(),
                    or_(Connection.next_retry_at.is_(None), Connection.next_retry_at <= now),
                ).order_by(Connection.expires_at).limit(BATCH)
            )).scalars())
        due = [c for c in candidates
               if needs_refresh(c, now, refresh_margin(self.rt, c.connector_id))]
        gate = asyncio.Semaphore(self.rt.settings.refresh_concurrency)

        async def one(conn: Connection) -> None:
            async with gate:
                try:
                    await refresh(self.rt, conn, seen_version=conn.version, wait=False)
                except ServiceError as exc:
                    log.info("background refresh of %s: %s", conn.id, exc.code)

        await asyncio.gather(*(one(c) for c in due))
        return len(due)

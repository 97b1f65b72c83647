"""The server's background work: the token refresher and the webhook dispatcher."""

from __future__ import annotations

from alloy_oauth.connections.refresher import BackgroundRefresher
from alloy_oauth.runtime import Runtime
from alloy_oauth.webhooks.dispatcher import WebhookDispatcher


class BackgroundWork:
    """Starts what the settings turn on; a setting left unset follows `default` (on under
    `alloy-oauth serve`, off for an app built in-process, as tests do)."""

    def __init__(self, rt: Runtime, *, default: bool) -> None:
        settings = rt.settings
        refresh_on = settings.background_refresh
        deliver_on = settings.webhook_delivery
        self.refresher = (BackgroundRefresher(rt)
                          if (default if refresh_on is None else refresh_on) else None)
        self.dispatcher = (WebhookDispatcher(rt)
                           if (default if deliver_on is None else deliver_on) else None)

    def start(self) -> None:
        if self.refresher is not None:
            self.refresher.start()
        if self.dispatcher is not None:
            self.dispatcher.start()

    async def stop(self) -> None:
        if self.refresher is not None:
            await self.refresher.stop()
        if self.dispatcher is not None:
            await self.dispatcher.stop()

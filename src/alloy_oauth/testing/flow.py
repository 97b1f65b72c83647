"""Drive the whole connect flow against a running alloy-oauth server, without a browser.

For tests of apps built on alloy-oauth, with an auto-approving emulator as the provider:

    with NotionEmulator() as notion:   # server started with notion.providers_entry() etc.
        result = await connect_flow(api, "notion", redirect_uri="http://localhost:3000/cb")
        result.connection_id
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx2

MAX_HOPS = 20


@dataclass(frozen=True)
class FlowResult:
    """Where the flow ended: a connection, or the error the app's callback received."""

    query: dict[str, str] = field(repr=False)
    connection_id: str | None = None
    credential_id: str | None = None

    @property
    def error(self) -> str | None:
        return self.query.get("error")


async def follow_to(url: str, stop_at: str, *, client: httpx2.AsyncClient | None = None
                    ) -> httpx2.URL | httpx2.Response:
    """GET `url` and follow redirects until one points at `stop_at` (returned, not requested)
    or an answer is not a redirect (returned)."""
    own = client is None
    browser = client or httpx2.AsyncClient(follow_redirects=False, timeout=20)
    try:
        response = await browser.get(url)
        for _ in range(MAX_HOPS):
            location = response.headers.get("location")
            if response.status_code not in (301, 302, 303, 307, 308) or not location:
                return response
            target = response.url.join(location)
            if str(target).startswith(stop_at):
                return target
            response = await browser.get(target)
        raise RuntimeError(f"more than {MAX_HOPS} redirects from {url}")
    finally:
        if own:
            await browser.aclose()


async def connect_flow(api: httpx2.AsyncClient, connector_id: str, *, redirect_uri: str,
                       exchange: bool = True, **body: Any) -> FlowResult:
    """Initiate, open oauthUrl, let the provider approve, and exchange the app's code.

    `api` is an httpx2 client with the server's base URL and API key. Extra keyword arguments
    go into the initiate body (`scopes`, `data`, `authConfigId`, `state`, ...).
    """
    started = await api.post(f"/connectors/{connector_id}/credentials",
                             json={"credentialType": "oauth2", "redirectUri": redirect_uri,
                                   **body})
    if started.status_code != 200:
        raise RuntimeError(f"initiate failed: {started.status_code} {started.text}")
    landed = await follow_to(started.json()["oauthUrl"], redirect_uri)
    if not isinstance(landed, httpx2.URL):
        raise RuntimeError(f"the flow stopped at {landed.url}: {landed.status_code} "
                           f"{landed.text[:300]}")
    query = dict(landed.params.items())
    if "code" not in query or not exchange:
        return FlowResult(query=query)
    done = await api.post(f"/connectors/{connector_id}/credentials/callback",
                          json={"code": query["code"], "state": query.get("state")})
    if done.status_code != 200:
        raise RuntimeError(f"code exchange failed: {done.status_code} {done.text}")
    answer = done.json()
    return FlowResult(query=query, connection_id=answer["connectionId"],
                      credential_id=answer["credentialId"])

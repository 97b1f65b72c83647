"""The browser SDK in Debian's Chromium against the built-in sandbox provider.

The app page lives on an origin of its own (tests/support/chromium.py); the SDK comes from the
server's /sdk/alloy.js and runs the hosted pages in a popup (or a full-page redirect).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import jwt as pyjwt
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, Route

from alloy_oauth.runtime import encryption_box
from tests.conftest import Alloy, StartAlloy
from tests.support.chromium import (
    app_page_server,
    events,
    launch_chromium,
    only_event,
    open_app,
    start_connect,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

CONNECT_PAGE = re.compile(r"/connect/sandbox\?token=")
CONSENT_PAGE = re.compile(r"/sandbox/oauth/authorize")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with launch_chromium() as launched:
        yield launched


@contextlib.contextmanager
def running(start_alloy: StartAlloy) -> Iterator[tuple[Alloy, str]]:
    """A server and the test app page on another origin."""
    with start_alloy() as alloy, app_page_server(alloy.base_url) as app:
        yield alloy, app


async def user_token(alloy: Alloy, username: str = "alice") -> tuple[str, str]:
    """A user of the account and its SDK token: (user id, JWT)."""
    async with alloy.api() as api:
        made = await api.post("/users", json={"username": username})
        assert made.status_code == 200, made.text
        user_id = made.json()["userId"]
        answer = await api.get(f"/users/{user_id}/token")
        assert answer.status_code == 200, answer.text
        return user_id, answer.json()["token"]


@contextlib.asynccontextmanager
async def signed_in(browser: Browser,
                    start_alloy: StartAlloy) -> AsyncIterator[tuple[Alloy, str, str, Page]]:
    """A server, the test app page on another origin and a new user signed in there:
    (alloy, app URL, user id, page)."""
    with running(start_alloy) as (alloy, app):
        user_id, token = await user_token(alloy)
        async with open_app(browser, app, token) as page:
            yield alloy, app, user_id, page


async def consent(popup: Page, decision: str = "Allow") -> None:
    """Continue on the connect page, then decide on the sandbox's consent page."""
    await popup.get_by_role("button", name="Continue").click()
    await popup.wait_for_url(CONSENT_PAGE)
    await popup.fill("#username", "alice")
    await popup.get_by_role("button", name=decision).click()


async def connection(alloy: Alloy, connection_id: str) -> httpx2.Response:
    async with alloy.api() as api:
        return await api.get(f"/connections/{connection_id}")


async def test_connect_in_a_popup_reports_a_connection_the_api_knows(
        browser: Browser, start_alloy: StartAlloy) -> None:
    async with signed_in(browser, start_alloy) as (alloy, _, user_id, page):
        popup = await start_connect(page)
        await consent(popup, "Allow")
        connection_id = await only_event(page, "success")
        assert connection_id.startswith("conn_")
        info = await connection(alloy, connection_id)
        assert info.status_code == 200
        assert info.json()["userId"] == user_id and info.json()["connectorId"] == "sandbox"
        assert info.json()["status"] == "connected"
        result = await page.evaluate("window.result")
        assert result["status"] == "connected" and result["connectionId"] == connection_id
        await page.wait_for_timeout(300)
        assert popup.is_closed()
        assert await page.evaluate("window.events.length") == 1  # exactly one callback


async def test_denying_at_the_provider_calls_on_error_with_access_denied(
        browser: Browser, start_alloy: StartAlloy) -> None:
    async with signed_in(browser, start_alloy) as (alloy, _, _, page):
        popup = await start_connect(page)
        await consent(popup, "Deny")
        assert (await only_event(page, "error"))["code"] == "access_denied"
        assert alloy.rows("connections") == 0


async def test_closing_the_popup_calls_on_close_and_creates_nothing(
        browser: Browser, start_alloy: StartAlloy) -> None:
    async with signed_in(browser, start_alloy) as (alloy, _, _, page):
        popup = await start_connect(page)
        started = time.monotonic()
        await popup.close()
        await only_event(page, "close")
        assert time.monotonic() - started < 3
        assert alloy.rows("sdk_sessions", "status = 'cancelled'") == 1
        assert alloy.rows("connections") == 0 and alloy.rows("oauth_flows") == 0


async def test_closing_the_popup_at_the_provider_calls_on_close(
        browser: Browser, start_alloy: StartAlloy) -> None:
    async with signed_in(browser, start_alloy) as (alloy, _, _, page):
        popup = await start_connect(page)
        await popup.get_by_role("button", name="Continue").click()
        await popup.wait_for_url(CONSENT_PAGE)
        await page.wait_for_timeout(3500)  # long enough not to look like a COOP cut-off
        await popup.close()
        await only_event(page, "close")
        assert alloy.rows("sdk_sessions", "status = 'cancelled'") == 1
        assert alloy.rows("connections") == 0


async def test_the_cancel_button_calls_on_close(browser: Browser,
                                                start_alloy: StartAlloy) -> None:
    async with signed_in(browser, start_alloy) as (_, _, _, page):
        popup = await start_connect(page)
        await popup.get_by_role("button", name="Cancel").click()
        await only_event(page, "close")
        await page.wait_for_timeout(300)
        assert popup.is_closed()


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def expired_token(alloy: Alloy, user_id: str) -> str:
    now = int(time.time())
    return pyjwt.encode(
        {"sub": user_id, "acct": alloy.account_id, "iat": now - 7200, "nbf": now - 7200,
         "exp": now - 3600, "iss": alloy.base_url, "aud": "alloy-sdk"},
        encryption_box(alloy.settings).derive("sdk-jwt"), algorithm="HS256")


def tampered_token(token: str, other_user_id: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return ".".join([header, _b64({**claims, "sub": other_user_id}), signature])


@pytest.mark.parametrize("kind", ["expired", "tampered"])
async def test_a_bad_jwt_calls_on_error_and_creates_nothing(
        kind: str, browser: Browser, start_alloy: StartAlloy) -> None:
    with running(start_alloy) as (alloy, app):
        user_id, token = await user_token(alloy)
        other_id, _ = await user_token(alloy, "mallory")
        bad = expired_token(alloy, user_id) if kind == "expired" else tampered_token(token,
                                                                                     other_id)
        async with open_app(browser, app, bad) as page:
            async with page.expect_popup() as popup_info:
                await page.evaluate("() => { alloy.connect('sandbox', callbacks()); }")
            popup = await popup_info.value
            assert (await only_event(page, "error"))["code"] == "invalid_token"
            await page.wait_for_timeout(200)
            assert popup.is_closed()
            for table in ("sdk_sessions", "oauth_flows", "connections"):
                assert alloy.rows(table) == 0, table


async def test_a_message_from_another_origin_or_window_is_ignored(
        browser: Browser, start_alloy: StartAlloy) -> None:
    async with signed_in(browser, start_alloy) as (alloy, _, _, page):
        with app_page_server(alloy.base_url) as evil:
            async with page.expect_response(re.compile(r"/sdk/sessions$")) as created:
                popup = await start_connect(page)
            session_id = (await (await created.value).json())["sessionId"]
            forged = {"type": "alloy:connect", "sessionId": session_id, "status": "succeeded",
                      "connectionId": "conn_forged"}
            # From a frame of another origin, inside the app page...
            await page.evaluate("(src) => new Promise((ok) => { const f = document.createElement("
                                "'iframe'); f.src = src; f.onload = ok; document.body.append(f); "
                                "})", f"{evil}/frame")
            frame = page.frames[1]
            await frame.evaluate("(m) => parent.postMessage(m, '*')", forged)
            # ...from the popup itself while it shows a page of another origin...
            connect_url = popup.url
            await popup.goto(f"{evil}/phishing")
            await popup.evaluate("(m) => window.opener.postMessage(m, '*')", forged)
            await popup.goto(connect_url)
            # ...and from a page of the server's own origin that is not the popup.
            async with page.expect_popup() as other_info:
                await page.evaluate("(url) => { window.other = window.open(url, 'other'); }",
                                    f"{alloy.base_url}/healthz")
            other = await other_info.value
            await other.wait_for_load_state()
            await other.evaluate("(m) => window.opener.postMessage(m, '*')", forged)
            await page.wait_for_timeout(500)
            assert await page.evaluate("window.events") == []
            await consent(popup, "Allow")
            connection_id = await only_event(page, "success")
            assert connection_id != "conn_forged"
            assert (await connection(alloy, connection_id)).status_code == 200


async def test_a_lost_opener_falls_back_to_polling_the_server(
        browser: Browser, start_alloy: StartAlloy) -> None:
    async with signed_in(browser, start_alloy) as (alloy, _, user_id, page):
        popup = await start_connect(page)
        await popup.evaluate("window.opener = null")  # as a blocker or COOP would leave it
        await consent(popup, "Allow")
        await popup.wait_for_url(re.compile(r"/connect/result"))
        await popup.get_by_text("You can close this window").wait_for()
        info = await connection(alloy, await only_event(page, "success"))
        assert info.json()["userId"] == user_id


async def test_a_provider_that_cuts_the_popup_off_with_coop_still_reports_the_outcome(
        browser: Browser, start_alloy: StartAlloy) -> None:
    async with signed_in(browser, start_alloy) as (alloy, _, _, page):

        async def with_coop(route: Route) -> None:
            response = await route.fetch()
            await route.fulfill(response=response, headers={
                **response.headers, "cross-origin-opener-policy": "same-origin"})

        await page.context.route(CONSENT_PAGE, with_coop)
        popup = await start_connect(page)
        await popup.get_by_role("button", name="Continue").click()
        await popup.wait_for_url(CONSENT_PAGE)
        assert await page.evaluate("window.events") == []
        # The app sees the popup as closed now; the user is still deciding.
        await page.wait_for_timeout(2500)
        assert await page.evaluate("window.events") == []
        await popup.fill("#username", "alice")
        await popup.get_by_role("button", name="Allow").click()
        connection_id = await only_event(page, "success")
        assert (await connection(alloy, connection_id)).status_code == 200


async def test_redirect_mode_returns_to_the_app_page_with_the_outcome(
        browser: Browser, start_alloy: StartAlloy) -> None:
    async with signed_in(browser, start_alloy) as (alloy, app, user_id, page):
        await page.goto(f"{app}/settings?tab=accounts")
        await page.evaluate("() => alloy.connect('sandbox', Object.assign({mode: 'redirect'}, "
                            "callbacks()))")
        await page.wait_for_url(CONNECT_PAGE)
        await consent(page, "Allow")
        await page.wait_for_url(re.compile(r"/settings\?tab=accounts"))
        info = await connection(alloy, await only_event(page, "success"))
        assert info.json()["userId"] == user_id
        assert page.url == f"{app}/settings?tab=accounts"  # the session id left the URL


async def test_the_connections_page_disconnects_and_reconnects(
        browser: Browser, start_alloy: StartAlloy) -> None:
    async with signed_in(browser, start_alloy) as (alloy, _, _, page):
        ids = []
        for _ in range(2):
            popup = await start_connect(page)
            await consent(popup, "Allow")
            ids.append((await events(page, len(ids) + 1))[-1]["value"])
        keep, drop = ids
        async with alloy.api() as api:
            before = (await api.get(f"/connections/{keep}/token")).json()["accessToken"]

        async with page.expect_popup() as popup_info:
            await page.evaluate("() => { window.managed = alloy.manageConnections({"
                                "onDisconnect: record('disconnect'), "
                                "onReconnect: record('reconnect'), onClose: record('closed')}); }")
        manage = await popup_info.value
        await manage.wait_for_url(re.compile(r"/connect/connections\?token="))
        await manage.get_by_role("heading", name="Your connected accounts").wait_for()
        assert await manage.get_by_role("button", name="Disconnect Sandbox").count() == 2

        await manage.locator("form", has=manage.locator(f"input[value='{drop}']")).get_by_role(
            "button", name="Disconnect").click()
        await manage.get_by_role("status").filter(has_text="Disconnected Sandbox").wait_for()
        found = await events(page, 3)
        assert found[2] == {"kind": "disconnect", "value": drop}
        assert (await connection(alloy, drop)).status_code == 404

        await manage.get_by_role("button", name="Reconnect Sandbox").click()
        await manage.wait_for_url(CONNECT_PAGE)
        await consent(manage, "Allow")
        await manage.get_by_role("status").filter(has_text="Reconnected Sandbox").wait_for()
        found = await events(page, 4)
        assert found[3] == {"kind": "reconnect", "value": keep}  # the same connection ID
        async with alloy.api() as api:
            after = await api.get(f"/connections/{keep}/token")
        assert after.status_code == 200 and after.json()["accessToken"] != before
        assert alloy.rows("connections") == 1

        await manage.close()
        found = await events(page, 5)
        assert found[4]["kind"] == "closed"


async def test_a_blocked_popup_or_a_missing_jwt_calls_on_error_and_starts_nothing(
        browser: Browser, start_alloy: StartAlloy) -> None:
    async with signed_in(browser, start_alloy) as (alloy, _, _, page):
        await page.evaluate("() => { window.open = () => null; "
                            "return alloy.connect('sandbox', callbacks()); }")
        await page.evaluate("() => { alloy.signOut(); return alloy.connect('sandbox', "
                            "callbacks()); }")
        found = await events(page, 2)
        assert [(e["kind"], e["value"]["code"]) for e in found] == [
            ("error", "popup_blocked"), ("error", "not_authenticated")]
        assert alloy.rows("sdk_sessions") == 0


async def test_the_sdk_loads_as_an_es_module_from_another_origin(
        browser: Browser, start_alloy: StartAlloy) -> None:
    async with signed_in(browser, start_alloy) as (alloy, _, _, page):
        kinds = await page.evaluate(
            "(url) => import(url).then((m) => [typeof m.default.connect, typeof m.connect, "
            "typeof m.authenticate, m.default.server])", f"{alloy.base_url}/sdk/alloy.mjs")
        assert kinds == ["function", "function", "function", alloy.base_url]

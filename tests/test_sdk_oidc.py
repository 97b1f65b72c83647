"""The browser SDK in Debian's Chromium against a real authorization server (`oidc-provider`),
which lives on an origin of its own: sign-in and consent happen there, in the popup."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterator

import httpx2
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page

from tests.conftest import Alloy, StartAlloy
from tests.support.chromium import (
    app_page_server,
    launch_chromium,
    only_event,
    open_app,
    start_connect,
)
from tests.support.oidc import OidcProvider, alloy_with_oidc

pytestmark = pytest.mark.asyncio(loop_scope="module")

CONNECT_PAGE = re.compile(r"/connect/oidc\?token=")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with launch_chromium() as launched:
        yield launched


@contextlib.contextmanager
def running(start_alloy: StartAlloy) -> Iterator[tuple[Alloy, OidcProvider, str]]:
    """The server with connector `oidc` = a real oidc-provider, and the SDK test app page."""
    with alloy_with_oidc(start_alloy) as (alloy, oidc), \
            app_page_server(alloy.base_url) as app:
        yield alloy, oidc, app


async def user_token(alloy: Alloy) -> tuple[str, str]:
    async with alloy.api() as api:
        user_id = (await api.post("/users", json={"username": "alice"})).json()["userId"]
        return user_id, (await api.get(f"/users/{user_id}/token")).json()["token"]


async def sign_in(window: Page, oidc: OidcProvider) -> None:
    """Continue on the connect page, then sign in at oidc-provider (its dev login page)."""
    await window.get_by_role("button", name="Continue").click()
    await window.wait_for_url(re.compile(re.escape(oidc.issuer) + r"/interaction/"))
    await window.fill("input[name=login]", "alice")
    await window.fill("input[name=password]", "any-password")
    await window.get_by_role("button", name="Sign-in").click()


async def test_connect_through_oidc_provider_gives_a_working_connection(
        browser: Browser, start_alloy: StartAlloy) -> None:
    with running(start_alloy) as (alloy, oidc, app):
        user_id, token = await user_token(alloy)
        async with open_app(browser, app, token) as page:
            popup = await start_connect(page, "oidc")
            await sign_in(popup, oidc)
            await popup.get_by_role("button", name="Continue").click()  # oidc-provider's consent
            connection_id = await only_event(page, "success")
            async with alloy.api() as api:
                info = (await api.get(f"/connections/{connection_id}")).json()
                access = (await api.get(f"/connections/{connection_id}/token")).json()
            assert info["userId"] == user_id and info["connectorId"] == "oidc"
            async with httpx2.AsyncClient() as http:
                me = await http.get(oidc.userinfo_url,
                                    headers={"Authorization": f"Bearer {access['accessToken']}"})
            assert me.status_code == 200 and me.json()["sub"] == "alice"


async def test_cancelling_at_oidc_provider_calls_on_error_with_access_denied(
        browser: Browser, start_alloy: StartAlloy) -> None:
    with running(start_alloy) as (alloy, oidc, app):
        _, token = await user_token(alloy)
        async with open_app(browser, app, token) as page:
            popup = await start_connect(page, "oidc")
            await popup.get_by_role("button", name="Continue").click()
            await popup.wait_for_url(re.compile(re.escape(oidc.issuer) + r"/interaction/"))
            await popup.get_by_role("link", name="[ Cancel ]").click()
            assert (await only_event(page, "error"))["code"] == "access_denied"
            assert alloy.rows("connections") == 0


async def test_redirect_mode_through_oidc_provider(browser: Browser,
                                                   start_alloy: StartAlloy) -> None:
    with running(start_alloy) as (alloy, oidc, app):
        user_id, token = await user_token(alloy)
        async with open_app(browser, app, token) as page:
            await page.evaluate("() => alloy.connect('oidc', Object.assign({mode: 'redirect'}, "
                                "callbacks()))")
            await page.wait_for_url(CONNECT_PAGE)
            await sign_in(page, oidc)
            await page.get_by_role("button", name="Continue").click()
            await page.wait_for_url(f"{app}/app")
            connection_id = await only_event(page, "success")
            async with alloy.api() as api:
                info = (await api.get(f"/connections/{connection_id}")).json()
            assert info["userId"] == user_id

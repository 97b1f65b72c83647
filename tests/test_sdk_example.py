"""The example app's SDK page in Debian's Chromium, and a screenshot of every hosted page.

Screenshots go to the test's temporary directory; with ALLOY_UPDATE_SCREENSHOTS=1 they are
written to docs/screenshots/ as well (how the pictures in docs/frontend.md are made).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page

from alloy_oauth.crypto import new_key
from alloy_oauth.example import create_app as create_example
from alloy_oauth.runtime import encryption_box
from alloy_oauth.settings import Settings
from tests.conftest import Alloy, StartAlloy
from tests.support.chromium import launch_chromium
from tests.support.servers import free_port, run_asgi

pytestmark = pytest.mark.asyncio(loop_scope="module")

DOCS_SHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with launch_chromium() as launched:
        yield launched


@contextlib.contextmanager
def example_app(alloy: Alloy, tmp_path: Path, connectors: list[str]) -> Iterator[str]:
    port = free_port()
    app = create_example(alloy_base_url=alloy.base_url, api_key=alloy.api_key,
                         public_url=f"http://127.0.0.1:{port}", db_path=tmp_path / "example.db",
                         session_secret=secrets.token_urlsafe(32), connectors=connectors)
    with run_asgi(app, port=port) as url:
        yield url


async def test_the_example_sdk_page_connects_in_a_popup_and_keeps_the_connection(
        browser: Browser, start_alloy: StartAlloy, tmp_path: Path) -> None:
    with start_alloy() as alloy, example_app(alloy, tmp_path, ["sandbox"]) as example:
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(f"{example}/sdk")
        await page.evaluate("window.sdkReady")
        async with page.expect_popup() as popup_info:
            await page.get_by_role("button", name="Connect Sandbox").click()
        popup = await popup_info.value
        await popup.get_by_role("button", name="Continue").click()
        await popup.fill("#username", "alice")
        await popup.get_by_role("button", name="Allow").click()
        result = page.get_by_role("status")
        await result.filter(has_text="Connected: conn_").wait_for()
        connection_id = (await result.inner_text()).split("Connected: ")[1].strip()
        await page.locator("#stored li", has_text=connection_id).wait_for()
        async with alloy.api() as api:
            info = (await api.get(f"/connections/{connection_id}")).json()
            user = (await api.get("/users/default")).json()
        assert info["userId"] == user["userId"] and info["connectorId"] == "sandbox"
        kept = await (await context.request.get(f"{example}/connections")).json()
        assert [(c["connectionId"], c["connector"]) for c in kept] == [(connection_id,
                                                                         "sandbox")]
        forged = await page.evaluate(
            "() => fetch('/api/sdk-connections', {method: 'POST', headers: {'Content-Type': "
            "'application/json'}, body: JSON.stringify({connectionId: 'conn_not_real'})})"
            ".then((r) => r.status)")
        assert forged == 400  # the backend checks what the browser tells it
        await context.close()


async def _shot(page: Page, name: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    if os.environ.get("ALLOY_UPDATE_SCREENSHOTS") == "1":
        DOCS_SHOTS.mkdir(parents=True, exist_ok=True)
        (DOCS_SHOTS / f"{name}.png").write_bytes(path.read_bytes())
    return path


async def test_every_hosted_page_renders_in_the_browser(
        browser: Browser, start_alloy: StartAlloy, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    key = new_key("s")
    secret = encryption_box(Settings(encryption_keys=key)).derive("sandbox-client-secret")
    providers = {"acme-crm": {
        "name": "Acme CRM",
        "authorization_url": f"{base}/sandbox/oauth/authorize?site=${{subdomain}}",
        "token_url": f"{base}/sandbox/oauth/token",
        "scopes": ["contacts.read", "deals.write"],
        "inputs": {"subdomain": {"title": "Acme subdomain", "pattern": "[a-z0-9-]{2,40}",
                                 "example": "your-team",
                                 "description": "The first part of your-team.acme.example."}},
    }}
    env = {"ALLOY_CONNECTOR_ACME_CRM_CLIENT_ID": "alloy-sandbox",
           "ALLOY_CONNECTOR_ACME_CRM_CLIENT_SECRET": secret}
    with start_alloy(providers=providers, connector_env=env, public_url=base,
                     encryption_keys=key) as alloy, \
            example_app(alloy, tmp_path, ["sandbox", "acme-crm"]) as example:
        with contextlib.closing(sqlite3.connect(alloy.db_path)) as db, db:
            db.execute("UPDATE accounts SET name = 'Example App'")  # the name users see
        context = await browser.new_context(viewport={"width": 560, "height": 760})
        page = await context.new_page()
        blocked: list[str] = []
        context.on("console", lambda m: blocked.append(m.text)
                   if "Content Security Policy" in m.text else None)
        await page.goto(f"{example}/sdk")
        await page.evaluate("window.sdkReady")
        shots = [await _shot(page, "example-sdk-page", tmp_path)]

        async with page.expect_popup() as popup_info:
            await page.get_by_role("button", name="Connect Acme CRM").click()
        popup = await popup_info.value
        await popup.get_by_role("heading", name="Connect your Acme CRM account").wait_for()
        field = popup.get_by_label("Acme subdomain")
        await field.fill("your-team")
        shots.append(await _shot(popup, "connect-page", tmp_path))
        await field.fill("not valid!")
        await popup.get_by_role("button", name="Continue").click()
        await popup.get_by_role("alert").wait_for()
        assert await field.get_attribute("aria-invalid") == "true"
        shots.append(await _shot(popup, "connect-page-invalid-input", tmp_path))
        await field.fill("your-team")
        await popup.get_by_role("button", name="Continue").click()
        await popup.wait_for_url(re.compile(r"site=your-team"))
        shots.append(await _shot(popup, "sandbox-consent", tmp_path))
        await popup.get_by_role("button", name="Deny").click()
        await page.get_by_role("status").filter(has_text="access_denied").wait_for()

        # The result page, as a popup that lost its opener shows it.
        async with page.expect_popup() as popup_info:
            await page.get_by_role("button", name="Connect Sandbox").click()
        popup = await popup_info.value
        await popup.get_by_role("heading", name="Connect your Sandbox account").wait_for()
        await popup.evaluate("window.opener = null")
        await popup.get_by_role("button", name="Continue").click()
        await popup.get_by_role("button", name="Allow").click()
        await popup.get_by_text("You can close this window").wait_for()
        shots.append(await _shot(popup, "result-page", tmp_path))
        await page.get_by_role("status").filter(has_text="Connected: conn_").wait_for()
        await popup.close()

        async with page.expect_popup() as popup_info:
            await page.get_by_role("button", name="Manage my connections").click()
        manage = await popup_info.value
        await manage.get_by_role("heading", name="Your connected accounts").wait_for()
        await manage.get_by_role("button", name="Disconnect Sandbox").wait_for()
        shots.append(await _shot(manage, "connections-page", tmp_path))
        await manage.close()
        await context.close()
        assert blocked == []  # nothing of ours was refused by our own CSP
        for shot in shots:
            data = shot.read_bytes()
            assert data.startswith(PNG) and len(data) > 5_000, shot

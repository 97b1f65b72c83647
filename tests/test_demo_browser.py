"""The demo as a person uses it: Chromium clicks through example app, sandbox consent, result."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import async_playwright

from tests.support.chromium import CHROMIUM, CHROMIUM_ARGS
from tests.support.demo import run_demo

# The demo's addresses are localhost ones, as a person types them.
ARGS = [a.replace("EXCLUDE 127.0.0.1", "EXCLUDE 127.0.0.1, EXCLUDE localhost")
        for a in CHROMIUM_ARGS]


async def test_person_connects_the_sandbox_in_the_demo_with_chromium(tmp_path: Path) -> None:
    with run_demo(tmp_path) as demo:
        port, app_port = demo.port, demo.app_port
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            try:
                page = await browser.new_page()
                blocked: list[str] = []
                page.on("console", lambda m: blocked.append(m.text)
                        if "Content Security Policy" in m.text else None)
                await page.goto(f"http://localhost:{app_port}/")
                await page.get_by_role("link", name="Connect Sandbox").click()
                await page.wait_for_url(f"http://localhost:{port}/sandbox/oauth/authorize*")
                await page.get_by_label("Sign in as").fill("ada")
                await page.get_by_role("button", name="Allow").click()
                await page.wait_for_url(f"http://localhost:{app_port}/oauth/callback*")
                heading = await page.locator("h1").inner_text()
                body = await page.locator("body").inner_text()
                assert heading == "Connection Successful!", body
                assert "CONNECTION_ID=conn_" in body
                assert blocked == []
                # Deny: the example app shows the provider's error.
                await page.goto(f"http://localhost:{app_port}/connect/sandbox")
                await page.get_by_role("button", name="Deny").click()
                await page.wait_for_url(f"http://localhost:{app_port}/oauth/callback*")
                assert "OAuth error: access_denied" in await page.locator("body").inner_text()
            finally:
                await browser.close()

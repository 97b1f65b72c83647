"""Debian's Chromium driven by Playwright (async API), and an app page that uses the SDK.

Never `playwright install`: the browser is /usr/bin/chromium (scripts/setup.sh test installs it).
Host names other than 127.0.0.1 resolve to nothing, so a page that reaches for the internet
(oidc-provider's web fonts) fails fast instead of waiting.
"""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, async_playwright
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from .servers import run_asgi

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]


@contextlib.asynccontextmanager
async def launch_chromium() -> AsyncIterator[Browser]:
    """One headless Chromium for the `async with` block."""
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: run `bash scripts/setup.sh test` "
                           "(apt-get install chromium); never `playwright install`.")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                   args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


# An app page that loads the SDK from the server and records every callback in window.events.
# On load it authenticates with the JWT kept in sessionStorage and reports a redirect's result.
_APP_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SDK test app</title>
<script src="{sdk}"></script>
<script>
window.events = [];
window.record = function (kind) {{
  return function (value) {{
    var shown = value && value.code ? {{code: value.code, message: value.message}} : value;
    window.events.push({{kind: kind, value: shown === undefined ? null : shown}});
  }};
}};
window.callbacks = function () {{
  return {{onSuccess: record('success'), onError: record('error'), onClose: record('close')}};
}};
window.ready = (async function () {{
  var jwt = sessionStorage.getItem('jwt');
  if (!jwt) return null;
  await alloy.authenticate(jwt);
  return alloy.redirectResult(callbacks());
}})();
</script></head>
<body><h1>SDK test app</h1><p id="where">{where}</p></body></html>"""


def app_page_server(server_url: str) -> contextlib.AbstractContextManager[str]:
    """Serve the SDK test page (any path) on an origin of its own; yields its base URL."""
    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(_APP_PAGE.format(sdk=html.escape(f"{server_url}/sdk/alloy.js"),
                                             where=html.escape(request.url.path)))

    app = Starlette(routes=[Route("/{path:path}", page)])
    return run_asgi(app)


@contextlib.asynccontextmanager
async def open_app(browser: Browser, app_url: str, jwt: str) -> AsyncIterator[Page]:
    """A fresh browser context on the test app page, authenticated with `jwt`, for the
    `async with` block (the context is closed at its end)."""
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(f"{app_url}/app")
        await page.evaluate(
            "(jwt) => { sessionStorage.setItem('jwt', jwt); return alloy.authenticate(jwt); }",
            jwt)
        yield page
    finally:
        await context.close()


async def start_connect(page: Page, connector: str = "sandbox", **options: Any) -> Page:
    """Call alloy.connect() on the app page (its promise kept in window.result); return the
    popup once it shows the connect page."""
    async with page.expect_popup() as popup_info:
        await page.evaluate(
            "([c, o]) => { window.result = alloy.connect(c, Object.assign(o, callbacks())); }",
            [connector, options])
    popup = await popup_info.value
    await popup.wait_for_url(re.compile(rf"/connect/{re.escape(connector)}\?token="))
    return popup


async def events(page: Page, count: int = 1, timeout: float = 15_000) -> list[dict[str, Any]]:
    """Wait until the page recorded `count` callbacks; return them all."""
    await page.wait_for_function("(n) => window.events.length >= n", arg=count,
                                 timeout=timeout)
    found: list[dict[str, Any]] = await page.evaluate("window.events")
    return found


async def only_event(page: Page, kind: str) -> Any:
    """Wait for the page's first callback, assert it is the only one and of `kind`; its value."""
    found = await events(page)
    assert [e["kind"] for e in found] == [kind], found
    return found[0]["value"]

"""Debian's Chromium driven by Playwright (async API), and an app page that uses the SDK.

Never `playwright install`: the browser is /usr/bin/chromium (scripts/setup.sh test installs it).
Host names other than 127.0.0.1 resolve to nothing, so a page that reaches for the internet
(oidc-provider's web fonts) fails fast instead of waiting.
"""

from __future__ import annotations

import contextlib
import html
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


async def open_app(browser: Browser, app_url: str, jwt: str) -> Page:
    """A fresh browser context on the test app page, authenticated with `jwt`."""
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{app_url}/app")
    await page.evaluate(
        "(jwt) => { sessionStorage.setItem('jwt', jwt); return alloy.authenticate(jwt); }", jwt)
    return page


async def events(page: Page, count: int = 1, timeout: float = 15_000) -> list[dict[str, Any]]:
    """Wait until the page recorded `count` callbacks; return them all."""
    await page.wait_for_function("(n) => window.events.length >= n", arg=count,
                                 timeout=timeout)
    found: list[dict[str, Any]] = await page.evaluate("window.events")
    return found

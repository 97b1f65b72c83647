"""The example app's browser-SDK page: the guide's "Frontend SDK Alternative".

The backend hands the browser a short-lived JWT (``get_user_token``, through the client only);
the page loads ``/sdk/alloy.js`` from the alloy-oauth server, calls ``alloy.authenticate`` and
``alloy.connect``, and tells the backend the new connection ID, which the backend checks with
the server before it keeps it.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from alloy_oauth.client import AlloyError, AsyncAlloyOAuthFlow

_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}

# The page's script: served from this app (not inline), so the page could carry a strict CSP.
SDK_DEMO_JS = """\
(function () {
  'use strict';
  var out = document.getElementById('result');
  function show(text) { out.textContent = text; }
  function remember(connectionId) {
    return fetch('/api/sdk-connections', {
      method: 'POST', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({connectionId: connectionId}),
    }).then(function (r) { return r.json(); });
  }
  var callbacks = {
    onSuccess: function (connectionId) {
      show('Connected: ' + connectionId);
      remember(connectionId).then(function (saved) {
        if (saved.connectionId) {
          var li = document.createElement('li');
          li.textContent = saved.connectionId + ' (' + saved.connector + ')';
          document.getElementById('stored').appendChild(li);
        } else {
          show('Not kept: ' + saved.message);
        }
      });
    },
    onError: function (error) { show('Error: ' + error.code + ': ' + error.message); },
    onClose: function () { show('The window was closed; nothing was connected.'); },
  };
  var ready = fetch('/api/alloy-token')
    .then(function (r) { return r.json(); })
    .then(function (body) { return alloy.authenticate(body.token); })
    .then(function () { return alloy.redirectResult(callbacks); })
    .catch(function (error) { show('Error: ' + (error.code || '') + ' ' + error.message); });
  document.querySelectorAll('button[data-connector]').forEach(function (button) {
    button.addEventListener('click', function () {
      var mode = document.getElementById('redirect').checked ? 'redirect' : 'popup';
      show('Connecting…');
      alloy.connect(button.dataset.connector, Object.assign({mode: mode}, callbacks));
    });
  });
  document.getElementById('manage').addEventListener('click', function () {
    alloy.manageConnections({
      onDisconnect: function (id) { show('Disconnected: ' + id); },
      onReconnect: function (id) { show('Reconnected: ' + id); },
    });
  });
  window.sdkReady = ready;
})();
"""


class _Store(Protocol):
    def add(self, connection_id: str, connector: str) -> None: ...

    def all(self) -> list[dict[str, str]]: ...


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _jwt_subject(token: str) -> str | None:
    """The user ID inside a JWT the server just gave us (read only; the server verifies it)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub if isinstance(sub, str) else None


def add_sdk_page(app: FastAPI, *, store: _Store, connectors: Sequence[str],
                 name_of: Callable[[str], str], alloy_public_url: str,
                 sdk_user: str = "default") -> None:
    """Add ``GET /sdk`` (the page), its script, ``GET /api/alloy-token`` and
    ``POST /api/sdk-connections`` to the example app."""
    sdk_src = f"{alloy_public_url.rstrip('/')}/sdk/alloy.js"

    def flow(request: Request) -> AsyncAlloyOAuthFlow:
        return cast(AsyncAlloyOAuthFlow, request.app.state.flow)

    @app.get("/sdk", response_class=HTMLResponse)
    async def sdk_page() -> HTMLResponse:
        buttons = "".join(
            f"<li><button type='button' data-connector='{_e(c)}'>Connect {_e(name_of(c))}"
            "</button></li>" for c in connectors)
        stored = "".join(f"<li>{_e(s['connectionId'])} ({_e(s['connector'])})</li>"
                         for s in await run_in_threadpool(store.all))
        body = (
            "<h1>Connect with the browser SDK</h1>"
            "<p>This page uses <code>alloy.authenticate()</code> and <code>alloy.connect()</code>"
            " from the alloy-oauth server; <a href='/'>the redirect flow</a> is beside it.</p>"
            f"<ul>{buttons}</ul>"
            "<p><label><input type='checkbox' id='redirect'> Full-page redirect instead of a "
            "popup</label></p>"
            "<p><button type='button' id='manage'>Manage my connections</button></p>"
            "<p id='result' role='status' aria-live='polite'></p>"
            f"<h2>Connections</h2><ul id='stored'>{stored}</ul>"
        )
        document = (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            "<title>Alloy OAuth example: browser SDK</title>"
            f"<script src='{_e(sdk_src)}'></script>"
            "<script src='/static/sdk-demo.js' defer></script>"
            f"</head><body>{body}</body></html>"
        )
        return HTMLResponse(document, headers=_NO_STORE)

    @app.get("/static/sdk-demo.js")
    async def sdk_demo_js() -> Response:
        return Response(SDK_DEMO_JS, media_type="text/javascript; charset=utf-8")

    @app.get("/api/alloy-token")
    async def alloy_token(request: Request) -> JSONResponse:
        # A real app would look up the signed-in user here; the example has one user.
        try:
            token = await flow(request).get_user_token(sdk_user)
        except AlloyError as exc:
            return JSONResponse({"error": exc.code, "message": exc.message}, status_code=502,
                                headers=_NO_STORE)
        return JSONResponse({"token": token}, headers=_NO_STORE)

    @app.post("/api/sdk-connections")
    async def keep_connection(request: Request) -> JSONResponse:
        try:
            body: Any = await request.json()
        except ValueError:
            body = None
        connection_id = body.get("connectionId") if isinstance(body, dict) else None
        if not isinstance(connection_id, str) or not connection_id:
            return JSONResponse({"error": "invalid_request",
                                 "message": "connectionId is required."}, status_code=400)
        # Never trust the browser: the connection must exist and be this user's.
        try:
            info = await flow(request).get_connection(connection_id)
            user_id = _jwt_subject(await flow(request).get_user_token(sdk_user))
        except AlloyError as exc:
            return JSONResponse({"error": exc.code, "message": exc.message}, status_code=400)
        if info.get("userId") != user_id or info.get("connectorId") not in connectors:
            return JSONResponse({"error": "not_yours",
                                 "message": "That connection is not this user's."},
                                status_code=400)
        await run_in_threadpool(store.add, connection_id, str(info["connectorId"]))
        return JSONResponse({"connectionId": connection_id, "connector": info["connectorId"]})

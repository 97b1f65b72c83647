"""The guide's "Complete Web Server Example" as a FastAPI app that uses only the client.

Flow: ``GET /connect/{connector}`` starts it and remembers the state in a signed session
cookie; the server sends the browser back to ``GET /oauth/callback?code=&state=``, which checks
the state (single use: the CSRF defence the guide asks for), exchanges the code and keeps the
connection ID in a small SQLite table.
"""

from __future__ import annotations

import html
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager, closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httpx2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.middleware.sessions import SessionMiddleware

from alloy_oauth.client import AlloyError, AsyncAlloyOAuthFlow
from alloy_oauth.logsafe import QueryRedactingFilter

from .sdk_page import add_sdk_page

__all__ = ["DEFAULT_CONNECTORS", "create_app"]

logger = logging.getLogger("alloy_oauth.example")

DEFAULT_CONNECTORS: tuple[str, ...] = (
    "sandbox",
    "notion",
    "hubspot",
    "salesforce",
    "slack",
    "google-drive",
    "github",
)
_NAMES = {
    "sandbox": "Sandbox",
    "notion": "Notion",
    "hubspot": "HubSpot",
    "salesforce": "Salesforce",
    "slack": "Slack",
    "google-drive": "Google Drive",
    "github": "GitHub",
}
_SESSION_KEY = "oauth_states"
# A started flow may wait this long for its callback; a few may be pending (several tabs).
_STATE_TTL_SECONDS = 3600
_MAX_PENDING_STATES = 10
# The callback URL carries a one-time code: keep it out of Referer headers and caches.
_PRIVATE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _name(connector: str) -> str:
    return _NAMES.get(connector, connector.replace("-", " ").title())


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title></head><body>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=_PRIVATE_HEADERS)


def _message_page(title: str, message: str, status: int) -> HTMLResponse:
    return _page(title, f"<p>{_e(message)}</p><p><a href='/'>Back</a></p>", status)


class ConnectionStore:
    """The app's own record of the connections it made (stdlib sqlite3, one small table)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS example_connections ("
                " connection_id TEXT PRIMARY KEY,"
                " connector TEXT NOT NULL,"
                " created_at TEXT NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    def add(self, connection_id: str, connector: str) -> None:
        created_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        with closing(self._connect()) as db, db:
            db.execute(
                "INSERT OR REPLACE INTO example_connections VALUES (?, ?, ?)",
                (connection_id, connector, created_at),
            )

    def all(self) -> list[dict[str, str]]:
        with closing(self._connect()) as db:
            rows = db.execute(
                "SELECT connection_id, connector, created_at FROM example_connections"
                " ORDER BY created_at, rowid"
            ).fetchall()
        return [{"connectionId": row[0], "connector": row[1], "createdAt": row[2]} for row in rows]


def _pending_states(request: Request) -> dict[str, list[Any]]:
    """The session's started flows, {state: [connector, started_at]}, without stale ones."""
    raw = request.session.get(_SESSION_KEY)
    now = time.time()
    pending: dict[str, list[Any]] = {}
    if isinstance(raw, dict):
        for state, entry in raw.items():
            if (
                isinstance(entry, list)
                and len(entry) == 2
                and isinstance(entry[0], str)
                and isinstance(entry[1], int | float)
                and now - entry[1] < _STATE_TTL_SECONDS
            ):
                pending[str(state)] = entry
    return pending


def _save_states(request: Request, pending: dict[str, list[Any]]) -> None:
    newest = sorted(pending.items(), key=lambda item: item[1][1])[-_MAX_PENDING_STATES:]
    if newest:
        request.session[_SESSION_KEY] = dict(newest)
    else:
        request.session.pop(_SESSION_KEY, None)


def _flow(request: Request) -> AsyncAlloyOAuthFlow:
    return cast(AsyncAlloyOAuthFlow, request.app.state.flow)


def _home_body(connectors: Iterable[str], stored: list[dict[str, str]]) -> str:
    links = "".join(
        f"<li><a href='/connect/{_e(c)}'>Connect {_e(_name(c))}</a></li>" for c in connectors
    )
    if stored:
        rows = "".join(
            f"<tr><td>{_e(s['connectionId'])}</td><td>{_e(_name(s['connector']))}</td>"
            f"<td>{_e(s['createdAt'])}</td></tr>"
            for s in stored
        )
        table = (
            "<table><thead><tr><th>Connection ID</th><th>Connector</th><th>Created</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>"
        )
    else:
        table = "<p>No connections yet.</p>"
    return (
        "<h1>Alloy OAuth example</h1><h2>Connect an account</h2>"
        f"<ul>{links}</ul><p><a href='/sdk'>Or connect with the browser SDK</a></p>"
        f"<h2>Connections</h2>{table}"
    )


def create_app(
    *,
    alloy_base_url: str,
    api_key: str,
    api_version: str = "2025-09",
    public_url: str = "http://localhost:3000",
    db_path: str | Path,
    session_secret: str,
    connectors: Sequence[str] = DEFAULT_CONNECTORS,
    transport: httpx2.AsyncBaseTransport | None = None,
    alloy_public_url: str | None = None,
) -> FastAPI:
    """The example web app: connect links, the OAuth callback, and the stored connections.

    ``public_url`` is where browsers reach this app; its ``/oauth/callback`` is the redirect
    URI sent to the server. ``transport`` is for tests (an httpx2 transport for the client).
    """
    if not session_secret:
        raise ValueError("session_secret must be a non-empty string")
    public = public_url.rstrip("/")
    redirect_uri = f"{public}/oauth/callback"
    known = tuple(connectors)
    store = ConnectionStore(db_path)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        flow = AsyncAlloyOAuthFlow(
            api_key=api_key,
            base_url=alloy_base_url,
            api_version=api_version,
            transport=transport,
        )
        app.state.flow = flow
        # uvicorn's access log would print the callback's ?code=...: redact it.
        access_log = logging.getLogger("uvicorn.access")
        redactor = QueryRedactingFilter()
        access_log.addFilter(redactor)
        try:
            yield
        finally:
            access_log.removeFilter(redactor)
            await flow.aclose()

    app = FastAPI(title="Alloy OAuth example", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret,
        session_cookie="alloy_example_session",
        same_site="lax",
        https_only=urlsplit(public).scheme == "https",
    )

    @app.get("/", response_class=HTMLResponse)
    async def home() -> HTMLResponse:
        stored = await run_in_threadpool(store.all)
        return _page("Alloy OAuth example", _home_body(known, stored))

    @app.get("/connect/{connector}")
    async def connect(connector: str, request: Request) -> Response:
        if connector not in known:
            return _message_page("Unknown connector", f"Unknown connector: {connector}", 404)
        try:
            start = await _flow(request).initiate_oauth_flow(connector, redirect_uri)
        except AlloyError as exc:
            logger.warning("Initiating %s failed: %s", connector, exc.code)
            return _message_page(
                "Error", f"Failed to initiate OAuth flow: {exc.message}", _failure_status(exc)
            )
        pending = _pending_states(request)
        pending[start.state] = [connector, time.time()]
        _save_states(request, pending)
        return RedirectResponse(start.oauth_url, status_code=302, headers=_PRIVATE_HEADERS)

    @app.get("/oauth/callback")
    async def oauth_callback(
        request: Request,
        code: str | None = None,
        state: str | None = None,
        error: str | None = None,
        error_description: str | None = None,
    ) -> Response:
        pending = _pending_states(request)
        entry = pending.pop(state, None) if state else None
        if state and entry is not None:
            _save_states(request, pending)  # single use, whatever the outcome
        if error:
            text = f"OAuth error: {error}"
            if error_description:
                text += f" ({error_description})"
            return _message_page("OAuth error", text, 400)
        if entry is None:
            return _message_page(
                "Invalid state",
                "Invalid state: this callback does not belong to a flow started here "
                "(or it was already used). Start again.",
                400,
            )
        if not code:
            return _message_page("Missing code", "Missing authorization code.", 400)
        connector = entry[0]
        try:
            connection = await _flow(request).handle_oauth_callback(connector, code, state)
        except AlloyError as exc:
            logger.warning("Completing %s failed: %s", connector, exc.code)
            return _message_page("Error", f"Failed to complete OAuth: {exc.message}", 500)
        await run_in_threadpool(store.add, connection.connection_id, connector)
        logger.info("Connection established: %s (%s)", connection.connection_id, connector)
        connection_id = _e(connection.connection_id)
        return _page(
            "Connection Successful",
            "<h1>Connection Successful!</h1>"
            f"<p>Connection ID: {connection_id}</p>"
            f"<p>Add this to your .env file: CONNECTION_ID={connection_id}</p>"
            "<p><a href='/'>Back</a></p>",
        )

    @app.get("/connections")
    async def connections() -> JSONResponse:
        return JSONResponse(await run_in_threadpool(store.all))

    # The guide's "Frontend SDK Alternative"; browsers load the SDK from alloy_public_url.
    add_sdk_page(app, store=store, connectors=known, name_of=_name,
                 alloy_public_url=alloy_public_url or alloy_base_url)
    return app


def _failure_status(exc: AlloyError) -> int:
    # The server could not be reached or failed: a gateway problem, not this app's.
    if exc.status is None or exc.status >= 500:
        return 502
    return 500

"""A small, deliberately misbehaving OAuth provider for failure tests.

Its behaviour is switched by mutating the `BadProvider` between requests:

    with start_bad_provider() as bad:
        bad.token_mode = "500"
        ...  # point a connector at bad.authorization_url / bad.token_url
        assert bad.token_requests[-1].grant_type == "authorization_code"
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from starlette.responses import Response

from .servers import run_asgi

TokenMode = Literal["ok", "400", "500", "html", "no_access_token", "error_200", "slow"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request the bad provider received. Headers and form hold secrets: not in repr."""

    method: str
    path: str
    headers: dict[str, str] = field(repr=False)
    form: dict[str, str] = field(repr=False)

    @property
    def grant_type(self) -> str | None:
        return self.form.get("grant_type")

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        """(client_id, client_secret) from an HTTP Basic Authorization header, if any."""
        value = self.headers.get("authorization", "")
        if not value.lower().startswith("basic "):
            return None
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        return unquote(user), unquote(password)


@dataclass
class BadProvider:
    """State and knobs of a running bad provider."""

    base_url: str
    client_id: str = "bad-client"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(16), repr=False)
    # /authorize: redirect with this error instead of a code (e.g. "access_denied")
    authorize_error: str | None = None
    authorize_error_description: str = "The bad provider refused."
    # /authorize: send this state back instead of the one received (state-mismatch tests)
    authorize_state_override: str | None = None
    # /token behaviour, see TokenMode; "slow" waits slow_seconds, then answers like "ok"
    token_mode: TokenMode = "ok"
    slow_seconds: float = 5.0
    # merged into the JSON of "ok" token answers (e.g. {"expires_in": 1} or extra fields)
    token_extra: dict[str, Any] = field(default_factory=dict)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[RecordedRequest] = field(default_factory=list)
    revoke_requests: list[RecordedRequest] = field(default_factory=list)
    issued_codes: list[str] = field(default_factory=list, repr=False)
    closing: bool = field(default=False, repr=False)

    @property
    def authorization_url(self) -> str:
        return f"{self.base_url}/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    @property
    def revocation_url(self) -> str:
        return f"{self.base_url}/revoke"

    def ok_token(self) -> dict[str, Any]:
        return {
            "access_token": secrets.token_urlsafe(24),
            "refresh_token": secrets.token_urlsafe(24),
            "token_type": "Bearer",
            "expires_in": 3600,
            **self.token_extra,
        }


async def _record(request: Request) -> RecordedRequest:
    form = await request.form()
    return RecordedRequest(
        method=request.method,
        path=request.url.path,
        headers={k.lower(): v for k, v in request.headers.items()},
        form={k: v for k, v in form.items() if isinstance(v, str)},
    )


def build_app(provider: BadProvider) -> FastAPI:
    app = FastAPI()

    @app.get("/authorize")
    async def authorize(request: Request) -> Response:
        params = dict(request.query_params)
        provider.authorize_requests.append(params)
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri:
            return PlainTextResponse("missing redirect_uri", status_code=400)
        state = params.get("state", "")
        if provider.authorize_state_override is not None:
            state = provider.authorize_state_override
        if provider.authorize_error:
            query = {
                "error": provider.authorize_error,
                "error_description": provider.authorize_error_description,
                "state": state,
            }
        else:
            code = secrets.token_urlsafe(16)
            provider.issued_codes.append(code)
            query = {"code": code, "state": state}
        sep = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(f"{redirect_uri}{sep}{urlencode(query)}", status_code=302)

    @app.post("/token")
    async def token(request: Request) -> Response:
        provider.token_requests.append(await _record(request))
        mode = provider.token_mode
        if mode == "ok":
            return JSONResponse(provider.ok_token())
        if mode == "400":
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "grant is invalid or expired"},
                status_code=400,
            )
        if mode == "500":
            return PlainTextResponse("Internal Server Error", status_code=500)
        if mode == "html":
            return HTMLResponse("<!doctype html><html><body><h1>Sign in</h1></body></html>")
        if mode == "no_access_token":
            return JSONResponse({"token_type": "Bearer", "expires_in": 3600})
        if mode == "error_200":
            return JSONResponse(
                {"error": "invalid_request", "error_description": "error with HTTP 200"}
            )
        if mode == "slow":
            # Sleep in steps so shutting the server down does not wait for the full delay.
            deadline = time.monotonic() + provider.slow_seconds
            while time.monotonic() < deadline and not provider.closing:
                await asyncio.sleep(0.05)
            return JSONResponse(provider.ok_token())
        raise AssertionError(f"unknown token_mode {mode!r}")

    @app.post("/revoke")
    async def revoke(request: Request) -> Response:
        provider.revoke_requests.append(await _record(request))
        return Response(status_code=200)

    return app


@contextlib.contextmanager
def start_bad_provider(*, port: int | None = None) -> Iterator[BadProvider]:
    """Run a bad provider on 127.0.0.1; yield its (mutable) state."""
    provider = BadProvider(base_url="")
    app = build_app(provider)
    with run_asgi(app, port=port) as base_url:
        provider.base_url = base_url
        try:
            yield provider
        finally:
            provider.closing = True

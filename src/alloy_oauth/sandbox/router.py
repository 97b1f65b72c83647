"""HTTP endpoints of the sandbox OAuth 2.0 provider.

Mounted by the server under `/sandbox`; the server then talks to it over HTTP like to any other
provider. Paths: `/oauth/authorize` (GET page, POST decision), `/oauth/token`, `/oauth/revoke`,
`/api/me`, `/api/echo`.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from alloy_oauth.sandbox.authorize import (
    AuthorizationRequest,
    AuthorizeError,
    UntrustedRedirect,
    add_query,
    validate_authorization_request,
)
from alloy_oauth.sandbox.client_auth import authenticate_client
from alloy_oauth.sandbox.config import SandboxConfig
from alloy_oauth.sandbox.errors import (
    NO_STORE,
    OAuthError,
    invalid_request,
    invalid_token,
    missing_parameter,
)
from alloy_oauth.sandbox.pages import consent_page, error_page
from alloy_oauth.sandbox.service import AccessInfo, SandboxStore

DEFAULT_USERNAME = "sandbox-user"
_USERNAME = re.compile(r"[A-Za-z0-9._\-]{1,64}")
_MAX_ECHO_BODY = 1024 * 1024
_REDIRECT_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _redirect(location: str, status_code: int) -> RedirectResponse:
    return RedirectResponse(location, status_code=status_code, headers=_REDIRECT_HEADERS)


async def _form_items(request: Request) -> list[tuple[str, str]]:
    async with request.form() as form:
        return [(name, value) for name, value in form.multi_items() if isinstance(value, str)]


async def _oauth_form(request: Request) -> dict[str, str]:
    """Form parameters of a token or revocation request, each at most once (RFC 6749 3.2)."""
    params: dict[str, str] = {}
    for name, value in await _form_items(request):
        if value == "":
            continue  # RFC 6749 3.1: a parameter without a value counts as omitted
        if name in params:
            raise invalid_request(f"Parameter {name} was given more than once.")
        params[name] = value
    return params


def _required(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if value is None:
        raise missing_parameter(name)
    return value


def user_profile(info: AccessInfo) -> dict[str, Any]:
    """The sandbox account behind a username: the same username always gives the same id."""
    digest = hashlib.sha256(f"sandbox-user:{info.username}".encode()).hexdigest()
    words = [word for word in re.split(r"[._\-]+", info.username) if word]
    return {
        "id": f"user_{digest[:16]}",
        "username": info.username,
        "name": " ".join(word.capitalize() for word in words) or info.username,
        "email": f"{info.username.lower()}@sandbox.example",
        "scopes": list(info.scopes),
    }


def create_sandbox_router(
    sessions: async_sessionmaker[AsyncSession], config: SandboxConfig
) -> APIRouter:
    """The sandbox provider's routes; all state lives in the database behind `sessions`."""
    store = SandboxStore(sessions, config)
    # A development-only fake provider, not part of the service's API: kept out of OpenAPI.
    router = APIRouter(tags=["sandbox"], include_in_schema=False)

    @router.get("/oauth/authorize", response_model=None)
    async def authorize_page(request: Request) -> Response:
        try:
            auth = validate_authorization_request(request.query_params.multi_items(), config)
        except UntrustedRedirect as exc:
            return error_page(exc.title, exc.detail)
        except AuthorizeError as exc:
            return _redirect(exc.location(), 302)
        return consent_page(auth, action=request.url.path, username=DEFAULT_USERNAME)

    @router.post("/oauth/authorize", response_model=None)
    async def authorize_decision(request: Request) -> Response:
        items = await _form_items(request)
        try:
            auth = validate_authorization_request(items, config)
            return await _decide(request, auth, items)
        except UntrustedRedirect as exc:
            return error_page(exc.title, exc.detail)
        except AuthorizeError as exc:
            return _redirect(exc.location(), 303)

    async def _decide(
        request: Request, auth: AuthorizationRequest, items: list[tuple[str, str]]
    ) -> Response:
        decisions = [value for name, value in items if name == "decision"]
        if decisions == ["deny"]:
            raise AuthorizeError(
                auth.redirect_uri, "access_denied", "The user denied the request.", auth.state
            )
        if decisions != ["allow"]:
            raise AuthorizeError(
                auth.redirect_uri, "invalid_request", "decision must be allow or deny.", auth.state
            )
        usernames = [value for name, value in items if name == "username"]
        username = usernames[0].strip() if len(usernames) == 1 else ""
        if not _USERNAME.fullmatch(username):
            return consent_page(
                auth,
                action=request.url.path,
                username=usernames[0] if usernames else DEFAULT_USERNAME,
                error="Enter a username of 1 to 64 letters, digits, dots, hyphens or underscores.",
                status_code=400,
            )
        code = await store.issue_code(auth, username)
        params = {"code": code}
        if auth.state is not None:
            params["state"] = auth.state
        return _redirect(add_query(auth.redirect_uri, params), 303)

    @router.post("/oauth/token", response_model=None)
    async def token(request: Request) -> Response:
        try:
            params = await _oauth_form(request)
            client_id = authenticate_client(request.headers.get("authorization"), params, config)
            grant_type = _required(params, "grant_type")
            if grant_type == "authorization_code":
                tokens = await store.redeem_code(
                    client_id,
                    _required(params, "code"),
                    _required(params, "redirect_uri"),
                    params.get("code_verifier"),
                )
            elif grant_type == "refresh_token":
                tokens = await store.rotate_refresh_token(
                    client_id, _required(params, "refresh_token"), params.get("scope")
                )
            else:
                raise OAuthError(
                    "unsupported_grant_type",
                    "grant_type must be authorization_code or refresh_token.",
                )
        except OAuthError as exc:
            return exc.response()
        return JSONResponse(tokens.as_json(), headers=NO_STORE)

    @router.post("/oauth/revoke", response_model=None)
    async def revoke(request: Request) -> Response:
        try:
            params = await _oauth_form(request)
            client_id = authenticate_client(request.headers.get("authorization"), params, config)
            # token_type_hint is only a hint (RFC 7009 2.1): the token is found either way.
            await store.revoke(client_id, _required(params, "token"))
        except OAuthError as exc:
            return exc.response()
        return Response(status_code=200, headers=NO_STORE)

    async def _bearer(request: Request) -> AccessInfo:
        scheme, _, value = (request.headers.get("authorization") or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise invalid_token("A bearer access token is required.", missing=True)
        return await store.access_info(value.strip())

    @router.get("/api/me", response_model=None)
    async def me(request: Request) -> Response:
        try:
            info = await _bearer(request)
        except OAuthError as exc:
            return exc.response()
        return JSONResponse(user_profile(info))

    @router.api_route(
        "/api/echo", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], response_model=None
    )
    async def echo(request: Request) -> Response:
        """Echo the request (for proxy tests): method, query, JSON or text body, and the user."""
        try:
            info = await _bearer(request)
        except OAuthError as exc:
            return exc.response()
        raw = await request.body()
        if len(raw) > _MAX_ECHO_BODY:
            return JSONResponse(
                {"error": "request_too_large", "error_description": "Body over 1 MiB."},
                status_code=413,
            )
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", errors="replace")
        return JSONResponse(
            {
                "method": request.method,
                "query": {key: request.query_params.getlist(key) for key in request.query_params},
                "contentType": request.headers.get("content-type"),
                "body": body,
                "username": info.username,
            }
        )

    return router

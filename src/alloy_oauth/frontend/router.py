"""Routes of the browser SDK (`/sdk/...`, JWT-authenticated JSON with CORS) and of the hosted
pages (`/connect/...`, plain HTML with strict security headers)."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape

from alloy_oauth import flows
from alloy_oauth.crypto import sha256
from alloy_oauth.errors import NotFound, ServiceError, Unauthorized
from alloy_oauth.frontend import sessions
from alloy_oauth.frontend.models import SdkSession
from alloy_oauth.frontend.tokens import SdkUser, verify_token
from alloy_oauth.providers import Connector
from alloy_oauth.runtime import Runtime
from alloy_oauth.server.deps import RuntimeDep
from alloy_oauth.server.routes.shapes import iso
from alloy_oauth.store.models import Account, Connection, utcnow

HERE = Path(__file__).parent
STATIC = HERE / "static"
MAX_BODY = 16 * 1024
ASSETS = {"page.css": "text/css; charset=utf-8", "page.js": "text/javascript; charset=utf-8"}
MODULE_FOOTER = """
export default alloy;
export const { authenticate, connect, redirectResult, manageConnections, signOut, AlloyError,
  version } = alloy;
"""

_env = Environment(loader=FileSystemLoader(HERE / "templates"),
                   autoescape=select_autoescape(default=True), trim_blocks=True,
                   lstrip_blocks=True)

CORS_HEADERS = {
    # The JWT in Authorization is the credential (never cookies), so any origin may call;
    # which origin may receive results is fixed per session from its Origin header.
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "600",
    "Cache-Control": "no-store",
}


# --- the SDK's JSON API ---------------------------------------------------------------------------

class _CorsRoute(APIRoute):
    """Every answer, errors included, carries the CORS headers (else the SDK sees no message)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def with_cors(request: Request) -> Response:
            try:
                response = await handler(request)
            except ServiceError as exc:
                response = _error(exc.status, exc.code, exc.message)
            except RequestValidationError:
                response = _error(422, "validation_error", "The request is malformed.")
            response.headers.update(CORS_HEADERS)
            return response

        return with_cors


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


async def _sdk_user(request: Request, rt: RuntimeDep) -> SdkUser:
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Missing SDK token: call alloy.authenticate(jwt) first, with a token "
                           "from GET /users/{userId}/token.", code="missing_token")
    return await verify_token(rt, token.strip())


SdkUserDep = Annotated[SdkUser, Depends(_sdk_user)]

api = APIRouter(route_class=_CorsRoute, tags=["sdk"])


def session_json(session: SdkSession) -> dict[str, Any]:
    launched = session.launched_at
    return {
        "sessionId": session.id,
        "kind": session.kind,
        "connectorId": session.connector_id,
        "mode": session.mode,
        "status": session.status,
        "connectionId": session.connection_id,
        "error": ({"code": session.error, "message": session.error_description or session.error}
                  if session.status in ("failed", "cancelled") and session.error else None),
        "expiresAt": iso(session.expires_at),
        # Lets the SDK tell a popup the user closed from one a provider's COOP cut off.
        "launchedSecondsAgo": ((utcnow() - launched).total_seconds() if launched else None),
    }


@api.options("/sdk/sessions", include_in_schema=False)
@api.options("/sdk/sessions/{session_id}", include_in_schema=False)
@api.options("/sdk/sessions/{session_id}/cancel", include_in_schema=False)
async def preflight() -> Response:
    return Response(status_code=204)


@api.post("/sdk/sessions", status_code=201)
async def create_session(request: Request, rt: RuntimeDep, who: SdkUserDep) -> JSONResponse:
    """Start a hosted connect page (or "my connections" page) for the JWT's user.

    Body: `{"connectorId", "mode"?: "popup"|"redirect", "scopes"?, "data"?, "returnUrl"?,
    "kind"?: "connect"|"manage"}` → `201 {"sessionId", "url", "expiresAt", ...}`.
    """
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ServiceError("The request body is too large.", code="payload_too_large",
                           status=413)
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise ServiceError("The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ServiceError("The request body must be a JSON object.", code="invalid_json")
    made = await sessions.create(
        rt, who, origin=request.headers.get("origin"), kind=body.get("kind", "connect"),
        connector_id=body.get("connectorId"), mode=body.get("mode", "popup"),
        scopes=body.get("scopes"), data=body.get("data"), return_url=body.get("returnUrl"),
        auth_config_id=body.get("authConfigId"))
    return JSONResponse({**session_json(made.session), "url": made.url}, status_code=201)


@api.get("/sdk/sessions/{session_id}")
async def get_session(session_id: str, rt: RuntimeDep, who: SdkUserDep) -> dict[str, Any]:
    """A session's state: `pending`, `launched`, `succeeded`, `failed` or `cancelled`."""
    return session_json(await sessions.get_for(rt, who, session_id))


@api.post("/sdk/sessions/{session_id}/cancel")
async def cancel_session(session_id: str, rt: RuntimeDep, who: SdkUserDep) -> dict[str, Any]:
    """Give up on a connect session unless it already ended; answers the outcome that stands."""
    return session_json(await sessions.cancel_for(rt, who, session_id))


# --- the SDK script -----------------------------------------------------------------------------

@lru_cache(maxsize=8)
def _script(public_url: str, module: bool) -> tuple[bytes, str]:
    source = (STATIC / "alloy.js").read_text()
    body = source.replace('"__ALLOY_SERVER__"', json.dumps(public_url))
    if module:
        body += MODULE_FOOTER
    data = body.encode()
    return data, f'"{sha256(body)[:32]}"'


def _serve_script(request: Request, rt: Runtime, module: bool) -> Response:
    data, etag = _script(rt.settings.public_url, module)
    headers = {
        "ETag": etag,
        "Cache-Control": "public, max-age=300",
        "Access-Control-Allow-Origin": "*",  # module scripts are fetched with CORS
        "Cross-Origin-Resource-Policy": "cross-origin",
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="text/javascript; charset=utf-8", headers=headers)


pages = APIRouter(include_in_schema=False)


@pages.get("/sdk/alloy.js")
async def sdk_script(request: Request, rt: RuntimeDep) -> Response:
    """The browser SDK as a classic script: defines the global `alloy`."""
    return _serve_script(request, rt, module=False)


@pages.get("/sdk/alloy.mjs")
async def sdk_module(request: Request, rt: RuntimeDep) -> Response:
    """The same SDK as an ES module: `import alloy from '.../sdk/alloy.mjs'`."""
    return _serve_script(request, rt, module=True)


# --- the hosted pages ---------------------------------------------------------------------------

def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _provider_source(connector: Connector) -> str:
    """The CSP source of the provider's sign-in page (a scheme when the host is per-user)."""
    parts = urlsplit(connector.authorization_url or "")
    return f"{parts.scheme}:" if "${" in parts.netloc else f"{parts.scheme}://{parts.netloc}"


def _headers(rt: Runtime, form_action: str = "'none'") -> dict[str, str]:
    me = _origin(rt.settings.public_url)
    form_action = " ".join(dict.fromkeys(form_action.split()))  # once each
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; script-src 'self' {me}; style-src 'self' {me}; "
            f"img-src 'self' {me}; form-action {form_action}; frame-ancestors 'none'; "
            "base-uri 'none'"),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
        "Cross-Origin-Resource-Policy": "same-origin",
    }


def _render(rt: Runtime, template: str, *, status: int = 200, form_action: str = "'none'",
            **context: Any) -> HTMLResponse:
    html = _env.get_template(template).render(public_url=rt.settings.public_url, **context)
    return HTMLResponse(html, status_code=status, headers=_headers(rt, form_action))


def _message(rt: Runtime, title: str, message: str, status: int) -> HTMLResponse:
    return _render(rt, "message.html", status=status, title=title, message=message)


def _redirect(rt: Runtime, url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=_headers(rt))


@lru_cache(maxsize=len(ASSETS))
def _asset(name: str) -> bytes:
    return (STATIC / name).read_bytes()


@pages.get("/connect/assets/{name}")
async def asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound("Not found: no such asset.")
    return Response(_asset(name), media_type=ASSETS[name], headers={
        "Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "same-origin"})


def connect_message(session: SdkSession) -> dict[str, Any]:
    """What the popup posts to its opener: the session's outcome."""
    return {"type": "alloy:connect", "sessionId": session.id, "status": session.status,
            "connectionId": session.connection_id,
            "error": ({"code": session.error,
                       "message": session.error_description or session.error}
                      if session.status != "succeeded" else None)}


def _connector_name(rt: Runtime, connector_id: str | None) -> str:
    connector = rt.catalog.get(connector_id or "")
    return connector.name if connector else (connector_id or "the service")


def _wording(rt: Runtime, session: SdkSession) -> tuple[str, str, str | None]:
    name = _connector_name(rt, session.connector_id)
    if session.status == "succeeded":
        return "Connected", f"Your {name} account is connected.", None
    if session.status == "cancelled":
        return "Cancelled", f"No {name} account was connected.", None
    if session.error == "access_denied":
        return "Not connected", f"Access to your {name} account was not granted.", None
    return ("Not connected", f"The connection to {name} failed: "
            f"{session.error_description or session.error}", f"Error code: {session.error}")


async def _outcome(rt: Runtime, session: SdkSession) -> Response:
    """The end of a connect session, for each mode."""
    if session.mode == "page":
        back = await sessions.parent_page(rt, session)
        if back is not None:
            return _redirect(rt, f"{back}&{urlencode({'child': session.id})}")
    title, message, detail = _wording(rt, session)
    if session.mode == "redirect" and session.return_url:
        target = f"{session.return_url}#{urlencode({'alloy_session': session.id})}"
        return _render(rt, "result.html", title=title, message=message, detail=detail,
                       redirect=target, data={"redirect": target})
    return _render(rt, "result.html", title=title, message=message, detail=detail,
                   data={"targetOrigin": session.origin, "message": connect_message(session),
                         "close": True})


@pages.get("/connect/result")
async def result_page(request: Request, rt: RuntimeDep) -> Response:
    """Where the flow's callback sends the browser (`?code&state` or `?error&state`)."""
    try:
        session = await sessions.finish(rt, dict(request.query_params))
    except sessions.PageError as exc:
        return _message(rt, exc.title, exc.message, exc.status)
    return await _outcome(rt, session)


async def _app_name(rt: Runtime, account_id: str) -> str:
    async with rt.sessions() as db:
        account = await db.get(Account, account_id)
    return account.name if account else "The app"


def _status_text(status: str) -> str:
    return {"connected": "Connected", "needs_reauth": "Needs reconnecting",
            "error": "Temporarily failing"}.get(status, status)


async def _manage_notice(rt: Runtime, session: SdkSession, query: dict[str, str],
                         ) -> tuple[dict[str, str] | None, dict[str, Any] | None]:
    """The line shown after an action, and the event posted to the opener."""
    child_id = query.get("child")
    if child_id:
        async with rt.sessions() as db:
            child = await db.get(SdkSession, child_id)
        if child is None or child.parent_id != session.id:
            return None, None
        name = _connector_name(rt, child.connector_id)
        if child.status == "succeeded":
            return ({"kind": "ok", "text": f"Reconnected {name}."},
                    {"type": "alloy:connections", "sessionId": session.id,
                     "event": "reconnected", "connectionId": child.connection_id})
        if child.status == "cancelled":
            return {"kind": "info", "text": f"{name} was not reconnected."}, None
        return {"kind": "error", "text": f"{name} was not reconnected: "
                f"{child.error_description or child.error}"}, None
    gone = query.get("disconnected")
    if gone:
        async with rt.sessions() as db:
            still = await db.get(Connection, gone)
        if still is None:
            name = _connector_name(rt, query.get("connector"))
            return ({"kind": "ok", "text": f"Disconnected {name}."},
                    {"type": "alloy:connections", "sessionId": session.id,
                     "event": "disconnected", "connectionId": gone})
    return None, None


async def _form_fields(request: Request) -> dict[str, str]:
    """A hosted page's posted form, text fields only."""
    return {k: v for k, v in (await request.form()).items() if isinstance(v, str)}


@pages.get("/connect/connections")
async def connections_page(request: Request, rt: RuntimeDep, token: str = "") -> Response:
    """"My connections" for the user of the JWT that opened it: Disconnect and Reconnect."""
    try:
        session = await sessions.by_token(rt, token, kind="manage")
    except sessions.PageError as exc:
        return _message(rt, exc.title, exc.message, exc.status)
    notice, event = await _manage_notice(rt, session, dict(request.query_params))
    items = []
    for conn in await sessions.user_connections(rt, session):
        connector = rt.catalog.get(conn.connector_id)
        items.append({
            "id": conn.id, "name": connector.name if connector else conn.connector_id,
            "status": conn.status, "status_text": _status_text(conn.status),
            "created": conn.created_at.strftime("%d %b %Y"),
            "can_reconnect": sessions.can_reconnect(rt, conn, connector),
        })
    me = _origin(rt.settings.public_url)
    return _render(rt, "connections.html", form_action=f"'self' {me}", items=items,
                   token=token, action=f"{rt.settings.public_url}{sessions.MANAGE_PATH}",
                   notice=notice, app_name=await _app_name(rt, session.account_id),
                   return_url=session.return_url,
                   data={"targetOrigin": session.origin, "message": event} if event else None)


@pages.post("/connect/connections")
async def connections_action(request: Request, rt: RuntimeDep) -> Response:
    form = await _form_fields(request)
    token = form.get("token", "")
    try:
        session = await sessions.by_token(rt, token, kind="manage")
        connection_id = form.get("connectionId", "")
        if form.get("action") == "disconnect":
            conn = await sessions.disconnect(rt, session, connection_id)
            query = urlencode({"token": token, "disconnected": conn.id,
                               "connector": conn.connector_id})
            return _redirect(rt, f"{rt.settings.public_url}{sessions.MANAGE_PATH}?{query}")
        if form.get("action") == "reconnect":
            child = await sessions.start_reconnect(rt, session, token, connection_id)
            return _redirect(rt, child.url)
    except sessions.PageError as exc:
        return _message(rt, exc.title, exc.message, exc.status)
    return _message(rt, "Unknown action", "Use the page's Disconnect or Reconnect buttons.", 400)


def _fields(connector: Connector, values: dict[str, str],
            errors: dict[str, str]) -> list[dict[str, Any]]:
    return [{"name": name, "title": spec.title, "example": spec.example,
             "description": spec.description, "required": spec.required,
             "value": values.get(name, ""), "error": errors.get(name)}
            for name, spec in connector.oauth_inputs.items()]


async def _connect_form(rt: Runtime, session: SdkSession, connector: Connector, token: str, *,
                        values: dict[str, str], errors: dict[str, str],
                        status: int = 200) -> HTMLResponse:
    me = _origin(rt.settings.public_url)
    provider = _provider_source(connector)
    return _render(
        rt, "connect.html", status=status, form_action=f"'self' {me} {provider}",
        connector=connector, token=token, errors=errors,
        action=f"{rt.settings.public_url}/connect/{connector.id}",
        scopes=session.scopes or await _app_scopes(rt, session, connector),
        provider_host=urlsplit(connector.authorization_url or "").netloc,
        app_name=await _app_name(rt, session.account_id),
        fields=_fields(connector, values, errors))


async def _app_scopes(rt: Runtime, session: SdkSession, connector: Connector) -> list[str]:
    """The scopes the flow will ask for when the app named none (as flows.initiate does)."""
    if session.auth_config_id:
        config = await rt.auth_config(connector, account_id=session.account_id,
                                      auth_config_id=session.auth_config_id)
        if config is not None and config.scopes:
            return list(config.scopes)
    return rt.default_scopes(connector)


async def _connect_session(rt: Runtime, connector_id: str,
                           token: str) -> tuple[SdkSession, Connector]:
    session = await sessions.by_token(rt, token, kind="connect")
    if session.connector_id != connector_id:
        raise sessions.PageError("This link is not valid",
                                 "The page's link was altered. Start again from the app that "
                                 "sent you here.")
    try:
        return session, flows.get_connector(rt, connector_id)
    except NotFound:
        raise sessions.PageError("This connector is not available",
                                 "The server no longer offers it.", 404) from None


@pages.get("/connect/{connector_id}")
async def connect_page(connector_id: str, rt: RuntimeDep, token: str = "") -> Response:
    """The hosted connect page: what the app will access, inputs, Continue / Cancel."""
    try:
        session, connector = await _connect_session(rt, connector_id, token)
    except sessions.PageError as exc:
        return _message(rt, exc.title, exc.message, exc.status)
    if session.status in sessions.FINAL:
        return await _outcome(rt, session)
    values = {k: str(v) for k, v in session.data.items()}
    return await _connect_form(rt, session, connector, token, values=values, errors={})


@pages.post("/connect/{connector_id}")
async def connect_action(connector_id: str, request: Request, rt: RuntimeDep) -> Response:
    form = await _form_fields(request)
    token = form.get("token", "")
    try:
        session, connector = await _connect_session(rt, connector_id, token)
    except sessions.PageError as exc:
        return _message(rt, exc.title, exc.message, exc.status)
    if form.get("action") == "cancel":
        return await _outcome(rt, await sessions.cancel_page(rt, session))
    try:
        launched = await sessions.launch(rt, session, form)
    except sessions.InputErrors as exc:
        return await _connect_form(rt, session, connector, token, values=exc.values,
                                   errors=exc.errors, status=400)
    if launched.url is None:
        return await _outcome(rt, launched.session)
    return _redirect(rt, launched.url)


router = APIRouter()
router.include_router(api)
router.include_router(pages)

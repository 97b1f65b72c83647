"""SDK sessions: what the hosted pages and the browser SDK do, without HTTP.

A session is started by the SDK (`POST /sdk/sessions`, with the user's JWT) and named by a
secret `token` in the hosted page's URL. A connect session runs the ordinary flow of
`alloy_oauth.flows` for the JWT's user, with the server's own result page as redirect URI, and
ends exactly once (one conditional UPDATE): succeeded, failed or cancelled. The popup's
postMessage, the SDK's polling and a closed popup all report that one outcome.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from sqlalchemy import delete, select, update

from alloy_oauth import connections, flows
from alloy_oauth.accounts import Principal
from alloy_oauth.crypto import random_token, sha256
from alloy_oauth.errors import BadRequest, InvalidGrant, NotFound, ServiceError
from alloy_oauth.frontend.models import SdkSession
from alloy_oauth.frontend.tokens import SdkUser
from alloy_oauth.ids import new_id
from alloy_oauth.providers import Connector
from alloy_oauth.runtime import AUTH_CONFIG_KEY, Runtime
from alloy_oauth.store.models import Account, Connection, utcnow

log = logging.getLogger(__name__)

KINDS = ("connect", "manage")
MODES = ("popup", "redirect")
FINAL = ("succeeded", "failed", "cancelled")
OPEN = ("pending", "launched")
RESULT_PATH = flows.HOSTED_RESULT_PATH
MANAGE_PATH = "/connect/connections"
# Paths under /connect/ that are not connector ids.
RESERVED = ("result", "connections", "assets")
MAX_DATA_FIELDS = 20
MAX_VALUE = 500
# Finished and expired rows are kept this long (the SDK may still ask), then removed.
KEEP_AFTER_EXPIRY = timedelta(days=1)


class PageError(Exception):
    """A hosted page that cannot be shown; rendered as a plain message page."""

    def __init__(self, title: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.title = title
        self.message = message
        self.status = status


class InputErrors(Exception):
    """The connect page's inputs do not validate: one message per field name."""

    def __init__(self, errors: dict[str, str], values: dict[str, str]) -> None:
        super().__init__("invalid inputs")
        self.errors = errors
        self.values = values


@dataclass(frozen=True)
class NewSession:
    session: SdkSession
    token: str
    url: str


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url.rstrip("*"))
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_origin(rt: Runtime, account: Account, origin: str | None) -> str:
    """The opener's origin: the redirect-URI policy (CONTRACT section 5) applied to origins.

    Development: https, http://localhost, http://127.0.0.1 or an allow-listed origin.
    Production: only https origins of the allow-list (ALLOY_ALLOWED_REDIRECT_URIS and the
    account's redirect URIs).
    """
    def refuse(why: str) -> BadRequest:
        return BadRequest(
            f"Invalid origin: {why} The SDK must run on a web page whose origin is allowed: "
            "add a redirect URI on that origin to ALLOY_ALLOWED_REDIRECT_URIS or the "
            "account's allow-list (PUT /account/redirect-uris).", code="invalid_origin")

    if not origin or origin == "null":
        raise refuse("the request carries no Origin (opaque origins cannot receive results).")
    clean = _origin_of(origin)
    if clean is None or clean != origin.lower() or len(origin) > 300:
        raise refuse(f"'{origin[:100]}' is not an http(s) origin.")
    parts = urlsplit(clean)
    allowed = {_origin_of(u) for u in
               [*rt.settings.redirect_allow_list, *(account.redirect_uris or [])]}
    if rt.settings.is_production:
        if parts.scheme != "https":
            raise refuse("production allows https origins only.")
        if clean not in allowed:
            raise refuse(f"'{clean}' is not on this account's allow-list.")
        return clean
    if clean in allowed or parts.scheme == "https" or parts.hostname in ("localhost",
                                                                         "127.0.0.1"):
        return clean
    raise refuse("in development only https, http://localhost and http://127.0.0.1 are allowed.")


def check_return_url(origin: str, url: str | None) -> str:
    """Where a redirect-mode session sends the browser back: a page of the opener's origin."""
    if not url or not isinstance(url, str):
        raise BadRequest("returnUrl is required in redirect mode.", code="invalid_return_url")
    if len(url) > 2048 or any(c in url for c in "\r\n\t ") or "#" in url:
        raise BadRequest("returnUrl must be an absolute URL without spaces or a fragment.",
                         code="invalid_return_url")
    if _origin_of(url) != origin or not urlsplit(url).path.startswith("/"):
        raise BadRequest(f"returnUrl must be a page of the calling origin ({origin}).",
                         code="invalid_return_url")
    return url


def _check_data(data: Any) -> dict[str, str]:
    if data is None:
        return {}
    if not isinstance(data, dict) or len(data) > MAX_DATA_FIELDS:
        raise BadRequest(f"data must be an object of at most {MAX_DATA_FIELDS} fields.",
                         code="invalid_input")
    clean: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(value, str) or len(value) > MAX_VALUE or len(key) > 100:
            raise BadRequest(f"data.{str(key)[:100]} must be a string of at most {MAX_VALUE} "
                             "characters.", code="invalid_input")
        clean[key] = value
    return clean


def _check_scopes(scopes: Any) -> list[str] | None:
    if scopes is None:
        return None
    if (not isinstance(scopes, list) or len(scopes) > 50
            or not all(isinstance(s, str) and s and " " not in s and len(s) < 300
                       for s in scopes)):
        raise BadRequest("scopes must be a list of non-empty strings without spaces.",
                         code="invalid_scopes")
    return scopes


def page_url(rt: Runtime, session: SdkSession, token: str) -> str:
    path = MANAGE_PATH if session.kind == "manage" else f"/connect/{session.connector_id}"
    return f"{rt.settings.public_url}{path}?{urlencode({'token': token})}"


def result_url(rt: Runtime) -> str:
    return rt.settings.public_url + RESULT_PATH


async def create(rt: Runtime, who: SdkUser, *, origin: str | None, kind: Any = "connect",
                 connector_id: Any = None, mode: Any = "popup", scopes: Any = None,
                 data: Any = None, return_url: Any = None,
                 auth_config_id: Any = None) -> NewSession:
    """Validate everything first: on any error nothing is stored."""
    if kind not in KINDS:
        raise BadRequest(f"kind must be one of {', '.join(KINDS)}.", code="invalid_kind")
    if mode not in MODES:
        raise BadRequest(f"mode must be one of {', '.join(MODES)}.", code="invalid_mode")
    connector: Connector | None = None
    if kind == "connect":
        if not isinstance(connector_id, str) or not connector_id:
            raise BadRequest("connectorId is required.", code="invalid_connector")
        connector = flows.get_connector(rt, connector_id)
        if not connector.is_oauth or connector.id in RESERVED:
            raise BadRequest(f"Connector '{connector.id}' does not use OAuth; create its "
                             "credential from your backend instead.",
                             code="invalid_credential_type")
        if auth_config_id is not None:
            if not isinstance(auth_config_id, str) or not auth_config_id:
                raise BadRequest("authConfigId must be a non-empty string.",
                                 code="invalid_auth_config")
            if await rt.auth_config(connector, account_id=who.account_id,
                                    auth_config_id=auth_config_id) is None:
                raise NotFound(f"Auth config not found: '{auth_config_id}' is not one of this "
                               f"account's auth configs for '{connector.id}'.",
                               code="auth_config_not_found")
        elif rt.client_credentials(connector) is None:
            env = connector.id.upper().replace("-", "_")
            raise BadRequest(
                f"Connector '{connector.id}' is not configured on this server: set "
                f"ALLOY_CONNECTOR_{env}_CLIENT_ID and ALLOY_CONNECTOR_{env}_CLIENT_SECRET, "
                "or pass the authConfigId of your own OAuth app.",
                code="connector_not_configured")
    elif auth_config_id is not None:
        raise BadRequest("authConfigId belongs to a connect session.",
                         code="invalid_auth_config")
    clean_scopes = _check_scopes(scopes)
    clean_data = _check_data(data)
    token = random_token(32)
    now = utcnow()
    if kind == "manage":  # the page lives as long as the token that opened it
        expires_at = who.expires_at
    else:
        expires_at = now + timedelta(seconds=rt.settings.flow_ttl)
    async with rt.sessions.begin() as db:
        account = await db.get(Account, who.account_id)
        if account is None:
            raise NotFound("Account not found.", code="account_not_found")
        clean_origin = check_origin(rt, account, origin)
        clean_return = (check_return_url(clean_origin, return_url) if mode == "redirect"
                        else None)
        await db.execute(delete(SdkSession).where(
            SdkSession.expires_at < now - KEEP_AFTER_EXPIRY))
        session = SdkSession(
            id=new_id("sdks"), token_hash=sha256(token), account_id=who.account_id,
            user_id=who.user_id, kind=kind, connector_id=connector.id if connector else None,
            origin=clean_origin, mode=mode, return_url=clean_return, scopes=clean_scopes,
            data=clean_data, auth_config_id=auth_config_id, status="pending",
            expires_at=expires_at, created_at=now,
        )
        db.add(session)
    return NewSession(session, token, page_url(rt, session, token))


async def _reread(rt: Runtime, session_id: str) -> SdkSession:
    async with rt.sessions() as db:
        session = await db.get(SdkSession, session_id, populate_existing=True)
    if session is None:
        raise NotFound("Session not found: it is unknown or was removed.",
                       code="session_not_found")
    return session


async def _settle(rt: Runtime, session: SdkSession, status: str, *,
                  from_: tuple[str, ...] = OPEN, error: str | None = None,
                  description: str | None = None) -> SdkSession:
    """End a session once; whoever comes second gets the outcome that stands."""
    async with rt.sessions.begin() as db:
        await db.execute(update(SdkSession).where(
            SdkSession.id == session.id, SdkSession.status.in_(from_),
        ).values(status=status, error=error, error_description=description,
                 finished_at=utcnow()))
    return await _reread(rt, session.id)


async def _expire_if_due(rt: Runtime, session: SdkSession) -> SdkSession:
    if session.kind == "connect" and session.status in OPEN and session.expires_at <= utcnow():
        return await _settle(rt, session, "failed", error="expired",
                             description="The connection attempt expired before it finished.")
    return session


async def get_for(rt: Runtime, who: SdkUser, session_id: str) -> SdkSession:
    """The JWT user's session; any other is not found."""
    async with rt.sessions() as db:
        session = await db.get(SdkSession, session_id)
    if (session is None or session.account_id != who.account_id
            or session.user_id != who.user_id):
        raise NotFound("Session not found: it is unknown, or belongs to another user.",
                       code="session_not_found")
    return await _expire_if_due(rt, session)


async def cancel_for(rt: Runtime, who: SdkUser, session_id: str) -> SdkSession:
    """The SDK gives up (popup closed): cancel unless an outcome already stands."""
    session = await get_for(rt, who, session_id)
    if session.kind != "connect" or session.status in FINAL:
        return session
    return await _settle(rt, session, "cancelled", error="cancelled",
                         description="The window was closed before the connection finished.")


# --- the hosted pages --------------------------------------------------------------------------

def _ended() -> PageError:
    return PageError("This link has expired",
                     "Connection pages work for a few minutes and for one connection. Start "
                     "again from the app that sent you here.")


async def by_token(rt: Runtime, token: str, *, kind: str) -> SdkSession:
    if not token or len(token) > 200:
        raise PageError("This link is not valid",
                        "The page's link is incomplete. Start again from the app that sent you "
                        "here.")
    async with rt.sessions() as db:
        session = (await db.execute(
            select(SdkSession).where(SdkSession.token_hash == sha256(token))
        )).scalar()
    if session is None or session.kind != kind:
        raise PageError("This link is not valid",
                        "The page's link is unknown or was altered. Start again from the app "
                        "that sent you here.")
    session = await _expire_if_due(rt, session)
    if kind == "manage" and session.expires_at <= utcnow():
        raise _ended()
    return session


def validate_inputs(connector: Connector, form: dict[str, str]) -> dict[str, str]:
    """The connector's inputs from the connect page's fields, one error per field (those the
    connect lookup fills are not asked for)."""
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    for name, spec in connector.oauth_inputs.items():
        value = (form.get(name) or "").strip()
        values[name] = value
        if not value:
            if spec.required:
                errors[name] = f"Enter your {spec.title}, for example {spec.example}."
            continue
        if len(value) > MAX_VALUE or not re.fullmatch(spec.pattern, value):
            errors[name] = f"{spec.title} should look like {spec.example}."
        elif problem := connector.input_problem(name, value):
            errors[name] = f"{spec.title} cannot be used: {problem}."
    if errors:
        raise InputErrors(errors, values)
    return {k: v for k, v in values.items() if v}


@dataclass(frozen=True)
class Launch:
    """Continue: either the URL that starts the flow, or the outcome (it could not start)."""

    url: str | None
    session: SdkSession


def _principal(session: SdkSession) -> Principal:
    """The session's user, acting through the flows an API key would start."""
    return Principal(account_id=session.account_id, key_id="sdk",
                     default_user_id=session.user_id)


async def launch(rt: Runtime, session: SdkSession, form: dict[str, str]) -> Launch:
    """The user pressed Continue: start the ordinary flow for the session's user."""
    if session.status not in OPEN:
        return Launch(None, session)
    assert session.connector_id is not None
    connector = flows.get_connector(rt, session.connector_id)
    inputs = validate_inputs(connector, form)
    app_state = random_token(24)
    now = utcnow()
    async with rt.sessions.begin() as db:
        claimed = await db.execute(update(SdkSession).where(
            SdkSession.id == session.id, SdkSession.status.in_(OPEN),
            SdkSession.expires_at > now,
        ).values(status="launched", flow_state_hash=sha256(app_state), launched_at=now,
                 data=inputs, expires_at=now + timedelta(seconds=rt.settings.flow_ttl)))
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return Launch(None, await _expire_if_due(rt, await _reread(rt, session.id)))
    who = _principal(session)
    try:
        started = await flows.initiate(rt, who, connector.id, flows.InitiateRequest(
            credential_type="oauth2", redirect_uri=result_url(rt), user_id=session.user_id,
            state=app_state, scopes=session.scopes, data=inputs,
            auth_config_id=session.auth_config_id))
    except ServiceError as exc:
        log.warning("hosted flow for %s could not start: %s", connector.id, exc.code)
        failed = await _settle(rt, session, "failed", from_=("launched",), error=exc.code,
                               description=exc.message)
        return Launch(None, failed)
    async with rt.sessions.begin() as db:
        await db.execute(update(SdkSession).where(SdkSession.id == session.id)
                         .values(credential_id=started.credential_id))
    return Launch(started.oauth_url, await _reread(rt, session.id))


async def cancel_page(rt: Runtime, session: SdkSession) -> SdkSession:
    """The connect page's Cancel button."""
    if session.status in FINAL:
        return session
    return await _settle(rt, session, "cancelled", error="cancelled",
                         description="You cancelled the connection.")


async def finish(rt: Runtime, params: dict[str, str]) -> SdkSession:
    """The provider sent the user back (through the flow's callback) with code or error."""
    state = params.get("state") or ""
    session = None
    if state and len(state) <= flows.MAX_STATE:
        async with rt.sessions() as db:
            session = (await db.execute(
                select(SdkSession).where(SdkSession.flow_state_hash == sha256(state))
            )).scalar()
    if session is None:
        raise PageError("This sign-in cannot be completed",
                        "This page belongs to no connection attempt, or to an earlier one. "
                        "Start again from the app that sent you here.")
    code = params.get("code")
    if params.get("error") and session.status == "launched":
        return await _settle(
            rt, session, "failed", from_=("launched",), error=params["error"][:100],
            description=(params.get("error_description")
                         or "The provider did not grant access.")[:500])
    if session.status != "launched" and (session.status == "succeeded" or not code):
        return session  # a reload of a finished page
    assert session.connector_id is not None
    who = _principal(session)
    try:
        made = await flows.exchange(rt, who, session.connector_id, code, state)
    except InvalidGrant as exc:
        return await _settle(rt, session, "failed", from_=("launched",), error=exc.code,
                             description=exc.message)
    # A cancelled or expired attempt still owns the connection the callback made: drop it.
    return await _succeed(rt, session, made.connection_id)


def _adopt(rt: Runtime, old: Connection, new: Connection) -> None:
    """Move a reconnect's fresh tokens into the connection the app knows, keeping its ID."""
    def move(value: str | None, kind: str) -> str | None:
        if value is None:
            return None
        plain = rt.box.decrypt(value, f"conn:{new.id}:{kind}")
        return rt.box.encrypt(plain, f"conn:{old.id}:{kind}")

    old.access_token_enc = move(new.access_token_enc, "access")
    old.refresh_token_enc = move(new.refresh_token_enc, "refresh")
    old.token_type = new.token_type
    old.expires_at = new.expires_at
    old.issued_at = new.issued_at
    old.scopes = list(new.scopes)
    old.metadata_ = dict(new.metadata_)
    old.status = "connected"
    old.last_error = None
    old.next_retry_at = None
    old.last_refresh_at = new.last_refresh_at
    old.version = old.version + 1  # a refresh in flight loses its compare-and-swap
    old.updated_at = utcnow()


async def _succeed(rt: Runtime, session: SdkSession, connection_id: str) -> SdkSession:
    replaced = None
    async with rt.sessions.begin() as db:
        if session.replaces_connection_id:
            old = await db.get(Connection, session.replaces_connection_id)
            if (old is not None and old.account_id == session.account_id
                    and old.user_id == session.user_id
                    and old.connector_id == session.connector_id):
                replaced = old
        won = await db.execute(update(SdkSession).where(
            SdkSession.id == session.id, SdkSession.status == "launched",
        ).values(status="succeeded", finished_at=utcnow(),
                 connection_id=replaced.id if replaced else connection_id))
        if won.rowcount == 1 and replaced is not None:  # type: ignore[attr-defined]
            new = await db.get(Connection, connection_id)
            assert new is not None
            _adopt(rt, replaced, new)
            await db.delete(new)
    if won.rowcount != 1:  # type: ignore[attr-defined]
        # Cancelled (or expired) while the user was at the provider: keep no connection.
        log.info("discarding connection %s of ended session %s", connection_id, session.id)
        if session.replaces_connection_id:
            async with rt.sessions.begin() as db:
                await db.execute(delete(Connection).where(Connection.id == connection_id))
        else:
            await connections.delete(rt, session.account_id, connection_id)
    return await _reread(rt, session.id)


# --- "my connections" ----------------------------------------------------------------------------

async def user_connections(rt: Runtime, session: SdkSession) -> list[Connection]:
    return await connections.list_for(rt, session.account_id, user_id=session.user_id)


async def _own_connection(rt: Runtime, session: SdkSession, connection_id: str) -> Connection:
    """The session user's connection; any other (or none) is a not-found page."""
    try:
        conn = await connections.get(rt, session.account_id, connection_id)
    except NotFound:
        raise connections_not_found() from None
    if conn.user_id != session.user_id:
        raise connections_not_found()
    return conn


def connections_not_found() -> PageError:
    return PageError("Connection not found",
                     "This connection does not exist any more, or is not yours.", 404)


async def disconnect(rt: Runtime, session: SdkSession, connection_id: str) -> Connection:
    conn = await _own_connection(rt, session, connection_id)
    try:
        await connections.delete(rt, session.account_id, conn.id)
    except NotFound:  # removed meanwhile
        raise connections_not_found() from None
    return conn


async def start_reconnect(rt: Runtime, session: SdkSession, token: str,
                          connection_id: str) -> NewSession:
    """A connect session, returning to this page, whose success renews `connection_id`."""
    conn = await _own_connection(rt, session, connection_id)
    connector = rt.catalog.get(conn.connector_id)
    if connector is None or not can_reconnect(rt, conn, connector):
        raise PageError("This connection cannot be renewed here",
                        "Its connector is no longer available on this server.", 409)
    child_token = random_token(32)
    now = utcnow()
    child = SdkSession(
        id=new_id("sdks"), token_hash=sha256(child_token), account_id=session.account_id,
        user_id=session.user_id, kind="connect", connector_id=connector.id,
        origin=session.origin, mode="page", return_url=None, scopes=None,
        data={k: str(v) for k, v in conn.metadata_.items() if k in connector.inputs},
        auth_config_id=auth_config_of(conn), replaces_connection_id=conn.id,
        parent_id=session.id,
        parent_token_enc=rt.box.encrypt(token, f"sdks:{session.id}:token"),
        status="pending", expires_at=now + timedelta(seconds=rt.settings.flow_ttl),
        created_at=now,
    )
    async with rt.sessions.begin() as db:
        db.add(child)
    return NewSession(child, child_token, page_url(rt, child, child_token))


def auth_config_of(conn: Connection) -> str | None:
    value = conn.metadata_.get(AUTH_CONFIG_KEY)
    return value if isinstance(value, str) and value else None


def can_reconnect(rt: Runtime, conn: Connection, connector: Connector | None) -> bool:
    """An OAuth connection whose OAuth app (the server's, or the account's) is still there."""
    return bool(connector is not None and connector.is_oauth and conn.credential_type == "oauth2"
                and (auth_config_of(conn) or rt.client_credentials(connector)))


async def parent_page(rt: Runtime, child: SdkSession) -> str | None:
    """The "my connections" page a reconnect returns to."""
    if child.parent_id is None or child.parent_token_enc is None:
        return None
    parent = await _reread(rt, child.parent_id)
    token = rt.box.decrypt(child.parent_token_enc, f"sdks:{parent.id}:token")
    return page_url(rt, parent, token)

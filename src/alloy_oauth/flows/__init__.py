"""The four steps of the guide's flow: initiate, authorize redirect, provider callback, exchange.

Every piece of flow state lives in `oauth_flows` with an expiry; each single-use step is one
conditional UPDATE, so any number of server processes on one database behave as one.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import select, update

from alloy_oauth import oauth
from alloy_oauth.accounts import Principal, find_user
from alloy_oauth.crypto import random_token, sha256
from alloy_oauth.errors import BadRequest, InvalidGrant, InvalidRedirectUri, NotFound
from alloy_oauth.ids import new_id
from alloy_oauth.oauth.lookup import connect_lookup
from alloy_oauth.providers import Connector
from alloy_oauth.runtime import AUTH_CONFIG_KEY, Runtime
from alloy_oauth.store.models import Account, Connection, OAuthFlow, utcnow

log = logging.getLogger(__name__)

OAUTH_TYPES = ("oauth2",)
ALL_TYPES = ("oauth2", "apiKey", "basic", "bearer")
MAX_STATE = 2048
# The hosted pages' own landing page (frontend/): always an allowed redirect URI.
HOSTED_RESULT_PATH = "/connect/result"


class FlowLinkError(Exception):
    """A browser step that cannot continue; shown to the person as a page, not JSON."""

    def __init__(self, title: str, message: str) -> None:
        super().__init__(message)
        self.title = title
        self.message = message


@dataclass(frozen=True)
class InitiateRequest:
    credential_type: str | None
    redirect_uri: str | None
    connector_id: str | None = None
    user_id: str | None = None
    state: str | None = None
    scopes: list[str] | None = None
    auth_config_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Started:
    oauth_url: str
    credential_id: str
    state: str


def get_connector(rt: Runtime, connector_id: str) -> Connector:
    connector = rt.catalog.get(connector_id)
    if connector is None:
        raise NotFound(
            f"Connector not found: '{connector_id}' is not in the catalog (GET /connectors "
            "lists them; add your own with ALLOY_PROVIDERS_FILE).",
            code="connector_not_found",
        )
    return connector


def check_credential_type(connector: Connector, credential_type: str | None) -> str:
    if not credential_type:
        raise BadRequest(
            "credentialType is required: use 'oauth2' (or 'apiKey', 'basic', 'bearer' where the "
            "connector supports them).", code="invalid_credential_type")
    if credential_type not in ALL_TYPES:
        raise BadRequest(
            f"Unknown credentialType '{credential_type}': use one of {', '.join(ALL_TYPES)}.",
            code="invalid_credential_type")
    if credential_type not in connector.auth_types:
        raise BadRequest(
            f"Connector '{connector.id}' does not support credentialType '{credential_type}'; "
            f"it supports {', '.join(connector.auth_types)}.", code="invalid_credential_type")
    return credential_type


def _uri_matches(uri: str, allowed: str) -> bool:
    return uri.startswith(allowed[:-1]) if allowed.endswith("*") else uri == allowed


def check_redirect_uri(rt: Runtime, account: Account, uri: str | None) -> str:
    """The redirect-URI policy of CONTRACT section 5; the message starts with the guide's words."""
    def refuse(why: str) -> InvalidRedirectUri:
        return InvalidRedirectUri(
            f"Invalid redirect_uri: {why} Make sure the redirect URI matches exactly what you "
            "registered: add it to ALLOY_ALLOWED_REDIRECT_URIS or the account's allow-list "
            "(PUT /account/redirect-uris).")

    if not uri:
        raise refuse("redirectUri is required.")
    if uri == rt.settings.public_url + HOSTED_RESULT_PATH:
        return uri
    if len(uri) > 2048 or any(c in uri for c in "\r\n\t ") or "#" in uri:
        raise refuse("it must be an absolute URI without spaces or a fragment.")
    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
        raise refuse(f"'{parts.scheme or uri}' URIs are not allowed; use https.")
    allowed = list(rt.settings.redirect_allow_list) + list(account.redirect_uris or [])
    if any(_uri_matches(uri, a) for a in allowed):
        if rt.settings.is_production and parts.scheme != "https":
            raise refuse("production allows https redirect URIs only.")
        return uri
    if rt.settings.is_production:
        if parts.scheme != "https":
            raise refuse("production allows https redirect URIs only.")
        raise refuse("it is not on this account's allow-list.")
    if parts.scheme == "https" or parts.hostname in ("localhost", "127.0.0.1"):
        return uri
    raise refuse("in development only https, http://localhost and http://127.0.0.1 are allowed.")


def check_inputs(connector: Connector, data: dict[str, Any], *,
                 oauth: bool = False) -> dict[str, str]:
    """Validate the connector's declared per-connection inputs; names the first bad one.

    With `oauth`, those the connect lookup fills are not asked for (`Connector.oauth_inputs`).
    """
    if not isinstance(data, dict):
        raise BadRequest("data must be a JSON object.", code="invalid_input")
    clean: dict[str, str] = {}
    for name, spec in (connector.oauth_inputs if oauth else connector.inputs).items():
        value = data.get(name)
        if value is None or value == "":
            if spec.required:
                raise BadRequest(f"Missing input '{name}' ({spec.title}), e.g. '{spec.example}'.",
                                 code="invalid_input")
            continue
        if not isinstance(value, str) or not re.fullmatch(spec.pattern, value):
            raise BadRequest(f"Input '{name}' ({spec.title}) is malformed: it must match "
                             f"{spec.pattern}, e.g. '{spec.example}'.", code="invalid_input")
        problem = connector.input_problem(name, value)
        if problem:
            raise BadRequest(f"Input '{name}' ({spec.title}) is malformed: {problem}.",
                             code="invalid_input")
        clean[name] = value
    return clean


def _check_scopes(scopes: list[str] | None) -> list[str] | None:
    if scopes is None:
        return None
    if not all(isinstance(s, str) and s and " " not in s for s in scopes):
        raise BadRequest("scopes must be a list of non-empty strings without spaces.",
                         code="invalid_scopes")
    return scopes


async def initiate(rt: Runtime, who: Principal, connector_id: str,
                   req: InitiateRequest) -> Started:
    """Step 1: validate everything, then store one flow row. Nothing is stored on bad input."""
    connector = get_connector(rt, connector_id)
    if req.connector_id is not None and req.connector_id != connector_id:
        raise BadRequest(f"connectorId '{req.connector_id}' in the body does not match "
                         f"'{connector_id}' in the path.", code="connector_mismatch")
    if check_credential_type(connector, req.credential_type) not in OAUTH_TYPES:
        raise BadRequest("Non-OAuth credentials are created from data, without a redirect.",
                         code="invalid_credential_type")
    auth_config = None
    if req.auth_config_id is not None:
        if not isinstance(req.auth_config_id, str) or not req.auth_config_id:
            raise BadRequest("authConfigId must be a non-empty string.",
                             code="invalid_auth_config")
        auth_config = await rt.auth_config(connector, account_id=who.account_id,
                                           auth_config_id=req.auth_config_id)
        if auth_config is None:
            raise NotFound(f"Auth config not found: '{req.auth_config_id}' is not one of this "
                           f"account's auth configs for '{connector.id}' (GET /auth-configs "
                           "lists them).", code="auth_config_not_found")
    elif rt.client_credentials(connector) is None:
        env = connector.id.upper().replace("-", "_")
        raise BadRequest(
            f"Connector '{connector.id}' is not configured: set ALLOY_CONNECTOR_{env}_CLIENT_ID "
            f"and ALLOY_CONNECTOR_{env}_CLIENT_SECRET to your OAuth app at the provider, or "
            "register your app for this account with POST /auth-configs and pass its "
            f"authConfigId. The app's redirect URI is {rt.callback_url}.",
            code="connector_not_configured")
    scopes = (_check_scopes(req.scopes) or (list(auth_config.scopes) if auth_config else [])
              or rt.default_scopes(connector))
    data = check_inputs(connector, req.data, oauth=True)
    if auth_config is not None:
        data[AUTH_CONFIG_KEY] = auth_config.id
    if req.state is not None and (not isinstance(req.state, str) or not req.state
                                  or len(req.state) > MAX_STATE):
        raise BadRequest(f"state must be a non-empty string of at most {MAX_STATE} characters.",
                         code="invalid_state")
    app_state = req.state or random_token(24)
    launch_token = random_token(32)
    async with rt.sessions.begin() as db:
        account = await db.get(Account, who.account_id)
        assert account is not None
        redirect_uri = check_redirect_uri(rt, account, req.redirect_uri)
        user = await find_user(db, who.account_id, req.user_id or who.default_user_id)
        flow = OAuthFlow(
            id=new_id("flow"), account_id=who.account_id, user_id=user.id,
            connector_id=connector.id, credential_id=new_id("cred"),
            redirect_uri=redirect_uri, app_state=app_state, scopes=scopes, data=data,
            launch_token_hash=sha256(launch_token),
            provider_state_hash=sha256(random_token(16)),  # replaced when the link is opened
            expires_at=utcnow() + timedelta(seconds=rt.settings.flow_ttl),
        )
        db.add(flow)
    query = urlencode({"userId": user.id, "token": launch_token})
    return Started(
        oauth_url=f"{rt.settings.public_url}/api/strategy/connector/{connector.id}/authorize?{query}",
        credential_id=flow.credential_id,
        state=app_state,
    )


async def authorize(rt: Runtime, connector_id: str, user_id: str, token: str) -> str:
    """Step 2: the single-use link from oauthUrl; returns the provider's authorization URL."""
    provider_state = random_token(32)
    verifier = oauth.new_code_verifier()
    now = utcnow()
    async with rt.sessions.begin() as db:
        flow = (await db.execute(
            select(OAuthFlow).where(OAuthFlow.launch_token_hash == sha256(token))
        )).scalar()
        if flow is None or flow.connector_id != connector_id or flow.user_id != user_id:
            raise FlowLinkError("This link is not valid",
                                "The connection link is unknown or was altered. Start again "
                                "from the app that sent you here.")
        claimed = await db.execute(
            update(OAuthFlow)
            .where(OAuthFlow.id == flow.id, OAuthFlow.launched_at.is_(None),
                   OAuthFlow.expires_at > now)
            .values(launched_at=now, provider_state_hash=sha256(provider_state),
                    code_verifier_enc=rt.box.encrypt(verifier, f"flow:{flow.id}:verifier"))
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise FlowLinkError("This link has expired",
                                "Connection links work once and for a few minutes. Start again "
                                "from the app that sent you here.")
    connector = get_connector(rt, connector_id)
    creds = await rt.oauth_app(connector, account_id=flow.account_id,
                               auth_config_id=flow.data.get(AUTH_CONFIG_KEY))
    if creds is None:
        raise FlowLinkError("This connector is not configured",
                            "The OAuth app this link was made for is no longer configured. "
                            "Start again from the app that sent you here.")
    return oauth.authorization_url(connector, creds, redirect_uri=rt.callback_url,
                                   state=provider_state, scopes=flow.scopes,
                                   code_verifier=verifier, data=flow.data)


def with_query(uri: str, params: dict[str, str]) -> str:
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


async def provider_callback(rt: Runtime, params: dict[str, str]) -> str:
    """Step 3: check state, exchange the provider's code, store the connection.

    Returns where to send the browser: the app's redirectUri with `code` and `state`, or with
    `error`, `error_description` and `state`.
    """
    state = params.get("state") or ""
    now = utcnow()
    async with rt.sessions.begin() as db:
        flow = (await db.execute(
            select(OAuthFlow).where(OAuthFlow.provider_state_hash == sha256(state))
        )).scalar() if state else None
        claimed = None
        if flow is not None and flow.launched_at is not None:
            claimed = await db.execute(
                update(OAuthFlow)
                .where(OAuthFlow.id == flow.id, OAuthFlow.returned_at.is_(None),
                       OAuthFlow.expires_at > now)
                .values(returned_at=now)
            )
        if flow is None or claimed is None or claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise FlowLinkError("This sign-in cannot be completed",
                                "The provider's answer is unknown, expired or was already used. "
                                "Start again from the app that sent you here.")
    def back(**query: str) -> str:
        return with_query(flow.redirect_uri, {**query, "state": flow.app_state})

    if params.get("error"):
        return back(error=params["error"][:100],
                    error_description=(params.get("error_description")
                                       or "The provider did not grant access.")[:500])
    code = params.get("code")
    if not code:
        return back(error="invalid_request",
                    error_description="The provider's callback carried no code.")
    connector = get_connector(rt, flow.connector_id)
    creds = await rt.oauth_app(connector, account_id=flow.account_id,
                               auth_config_id=flow.data.get(AUTH_CONFIG_KEY))
    if creds is None:
        return back(error="connector_not_configured",
                    error_description="The connector is no longer configured.")
    # Values the provider hands over on the callback itself (QuickBooks' realmId).
    from_callback = {name: params[name][:200] for name in connector.keep_from_callback
                     if params.get(name)}
    missing = [n for n in connector.keep_from_callback if n not in from_callback
               and f"${{{n}}}" in (connector.api_base_url or "")]
    if missing:
        return back(error="provider_error",
                    error_description=f"The provider's callback carried no {missing[0]}.")
    assert flow.code_verifier_enc is not None
    verifier = rt.box.decrypt(flow.code_verifier_enc, f"flow:{flow.id}:verifier")
    try:
        tokens = await oauth.exchange_code(
            connector, creds, code=code, redirect_uri=rt.callback_url, code_verifier=verifier,
            scopes=flow.scopes, data=flow.data, transport=rt.transport,
            timeout=rt.settings.http_timeout,
            allow_loopback_http=not rt.settings.is_production)
    except oauth.ProviderError as exc:
        log.warning("code exchange failed for %s flow %s: %s", flow.connector_id, flow.id,
                    exc.code)
        return back(error="provider_error",
                    error_description=f"The provider's token endpoint refused the code "
                                      f"({exc.code}): {exc.description}"[:500])
    # Values only the provider's API names (Xero's tenant): looked up before anything is
    # stored, so a failed lookup leaves no connection behind.
    try:
        looked_up = await connect_lookup(
            connector, access_token=tokens.access_token, data=flow.data,
            transport=rt.transport, timeout=rt.settings.http_timeout,
            allow_loopback_http=not rt.settings.is_production)
    except oauth.ProviderError as exc:
        log.warning("connect lookup failed for %s flow %s: %s", flow.connector_id, flow.id,
                    exc.description)
        return back(error="provider_error", error_description=exc.description[:500])
    app_code = random_token(32)
    connection_id = new_id("conn")
    async with rt.sessions.begin() as db:
        user_name = (await find_user(db, flow.account_id, flow.user_id)).username
        db.add(Connection(
            id=connection_id, credential_id=flow.credential_id, account_id=flow.account_id,
            user_id=flow.user_id, connector_id=flow.connector_id, credential_type="oauth2",
            name=f"{connector.name} ({user_name})", status="connected",
            scopes=list(tokens.scopes),
            metadata_={**tokens.extra, **from_callback, **flow.data, **looked_up},
            access_token_enc=rt.box.encrypt(tokens.access_token, f"conn:{connection_id}:access"),
            refresh_token_enc=(rt.box.encrypt(tokens.refresh_token,
                                              f"conn:{connection_id}:refresh")
                               if tokens.refresh_token else None),
            token_type=tokens.token_type, expires_at=tokens.expires_at, issued_at=now,
            last_refresh_at=now,
        ))
        await db.execute(
            update(OAuthFlow).where(OAuthFlow.id == flow.id).values(
                connection_id=connection_id, code_hash=sha256(app_code),
                code_expires_at=utcnow() + timedelta(seconds=rt.settings.code_ttl),
                code_verifier_enc=None)
        )
    log.info("connection %s created for connector %s", connection_id, flow.connector_id)
    return back(code=app_code)


@dataclass(frozen=True)
class Exchanged:
    connection_id: str
    credential_id: str
    status: str


async def exchange(rt: Runtime, who: Principal, connector_id: str, code: str | None,
                   state: str | None) -> Exchanged:
    """Step 4: the app's one-time code for the connection ID. Any mismatch is invalid_grant."""
    if not code or not isinstance(code, str):
        raise InvalidGrant()
    now = utcnow()
    async with rt.sessions.begin() as db:
        flow = (await db.execute(
            select(OAuthFlow).where(OAuthFlow.code_hash == sha256(code))
        )).scalar()
        # Checks come before the claim, so a wrong state does not burn a good code.
        if (flow is None or flow.account_id != who.account_id
                or flow.connector_id != connector_id
                or (state is not None and state != flow.app_state)
                or flow.connection_id is None):
            raise InvalidGrant()
        claimed = await db.execute(
            update(OAuthFlow)
            .where(OAuthFlow.id == flow.id, OAuthFlow.code_used_at.is_(None),
                   OAuthFlow.code_expires_at > now)
            .values(code_used_at=now)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise InvalidGrant()
        conn = await db.get(Connection, flow.connection_id)
    if conn is None:  # deleted between callback and exchange
        raise InvalidGrant()
    return Exchanged(conn.id, conn.credential_id, conn.status)

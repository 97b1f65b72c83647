"""Talking to providers: authorize URL, code exchange, refresh, revocation (RFC 6749, 7636, 7009).

Authlib does the protocol mechanics on httpx2; the connector's quirk fields bend them through
Authlib's hooks (`alloy_oauth.oauth.quirks`). Every provider answer becomes a `TokenSet` or a
`ProviderError`, never a crash.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import httpx2
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

from alloy_oauth.oauth import quirks
from alloy_oauth.providers import (
    RESERVED_METADATA,
    Connector,
    Revocation,
    metadata_key,
    url_allowed,
)

log = logging.getLogger(__name__)

# Errors after which retrying the same grant cannot succeed: the user must connect again.
PERMANENT_ERRORS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})
# RFC 6749 token types kept as named; a provider's own names for a bearer token (Slack's
# `user` and `bot`) are bearer tokens.
_TOKEN_TYPES = {"bearer": "Bearer", "mac": "MAC", "dpop": "DPoP", "n_a": "N_A"}
_MAX_KEPT = 500


@dataclass(frozen=True)
class ClientCredentials:
    """The OAuth app a connector is used through."""

    client_id: str
    client_secret: str = field(repr=False)


@dataclass(frozen=True)
class TokenSet:
    access_token: str = field(repr=False)
    token_type: str
    refresh_token: str | None = field(repr=False)
    expires_at: datetime | None
    scopes: tuple[str, ...]
    # The connector's `keep_from_token` values, kept as connection metadata.
    extra: dict[str, Any]


class ProviderError(Exception):
    """The provider refused or failed. `permanent` means the grant is dead (needs the user)."""

    def __init__(self, code: str, description: str, *, status: int | None = None) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.status = status

    @property
    def permanent(self) -> bool:
        return self.code in PERMANENT_ERRORS


def new_code_verifier() -> str:
    return str(generate_token(64))


def _client(connector: Connector, creds: ClientCredentials,
            transport: httpx2.AsyncBaseTransport, timeout: float) -> AsyncOAuth2Client:
    # The transport (connection pool) belongs to the caller: these clients are never closed.
    auth = quirks.client_auth(connector)
    client = AsyncOAuth2Client(
        client_id=creds.client_id,
        client_secret=creds.client_secret,
        token_endpoint_auth_method=auth,
        revocation_endpoint_auth_method=auth,
        code_challenge_method="S256" if connector.pkce else None,
        transport=transport,
        timeout=timeout,
    )
    hook = quirks.normalize_response(connector)
    client.register_compliance_hook("access_token_response", hook)
    client.register_compliance_hook("refresh_token_response", hook)
    return client


def requested_scopes(connector: Connector, scopes: list[str]) -> list[str]:
    """The scopes asked for: the app's (or the defaults), plus those a refresh token needs."""
    return list(dict.fromkeys([*scopes, *connector.offline_scopes]))


def authorization_url(connector: Connector, creds: ClientCredentials, *, redirect_uri: str,
                      state: str, scopes: list[str], code_verifier: str | None,
                      data: dict[str, Any]) -> str:
    """The provider's authorization URL for one flow."""
    assert connector.authorization_url is not None
    client = AsyncOAuth2Client(
        client_id=creds.client_id,
        code_challenge_method="S256" if connector.pkce else None,
    )
    params: dict[str, Any] = connector.render_params(connector.authorize_params, data)
    wanted = [connector.render(s, data) for s in requested_scopes(connector, scopes)]
    if wanted:
        params[connector.scope_param] = connector.scope_separator.join(wanted)
    url, _ = client.create_authorization_url(
        connector.render(connector.authorization_url, data),
        state=state,
        code_verifier=code_verifier if connector.pkce else None,
        redirect_uri=redirect_uri,
        **params,
    )
    return str(url)


def _kept(connector: Connector, payload: dict[str, Any], *,
          allow_loopback_http: bool) -> dict[str, Any]:
    """Values of `keep_from_token`; the one that is the API host must be a usable URL."""
    kept: dict[str, Any] = {}
    for path in connector.keep_from_token:
        value = quirks.get_path(payload, path)
        if isinstance(value, str | int | float | bool) and len(str(value)) <= _MAX_KEPT:
            kept[metadata_key(path)] = value
    host_var = connector.api_base_variable
    if host_var in {metadata_key(p) for p in connector.keep_from_token}:
        value = kept.get(host_var or "")
        parts = urlsplit(value) if isinstance(value, str) else None
        if parts is None or not url_allowed(parts.scheme, parts.hostname,
                                            development=allow_loopback_http):
            raise ProviderError("invalid_token_response",
                                f"the token response's {host_var} is not an https URL")
    return kept


def _parse(connector: Connector, payload: Any, *, requested_scopes: list[str], now: datetime,
           allow_loopback_http: bool = False, keep: bool = True) -> TokenSet:
    if not isinstance(payload, dict):
        raise ProviderError("invalid_token_response", "the token response is not a JSON object")
    access = payload.get("access_token")
    if not isinstance(access, str) or not access:
        raise ProviderError("invalid_token_response",
                            "the token response has no access_token")
    expires_at: datetime | None = None
    raw_exp = payload.get("expires_in")
    if raw_exp not in (None, ""):
        try:
            expires_at = now + timedelta(seconds=float(raw_exp))
        except (TypeError, ValueError, OverflowError) as exc:
            raise ProviderError("invalid_token_response",
                                "the token response's expires_in is not a number") from exc
    scope = payload.get("scope")
    if isinstance(scope, str):
        scopes = tuple(s for s in scope.replace(",", " ").split() if s)
    elif isinstance(scope, list):
        scopes = tuple(str(s) for s in scope)
    else:
        scopes = tuple(requested_scopes)
    refresh = payload.get("refresh_token")
    token_type = payload.get("token_type")
    # Only the values the connector names are kept: a token answer is otherwise private.
    extra = _kept(connector, payload, allow_loopback_http=allow_loopback_http) if keep else {}
    for key in RESERVED_METADATA:
        extra.pop(key, None)
    return TokenSet(
        access_token=access,
        token_type=_TOKEN_TYPES.get(str(token_type).lower(), "Bearer"),
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        expires_at=expires_at,
        scopes=scopes,
        extra=extra,
    )


async def _token_request(connector: Connector, creds: ClientCredentials, call: str,
                         transport: httpx2.AsyncBaseTransport, timeout: float,
                         **kwargs: Any) -> dict[str, Any]:
    """One token endpoint call, every failure mapped to a ProviderError."""
    assert connector.token_url is not None
    data = kwargs.pop("data", {})
    url = connector.render(connector.token_url, data)
    client = _client(connector, creds, transport, timeout)
    headers = quirks.request_headers(connector, data)
    try:
        if call == "refresh":
            token = await client.refresh_token(url, headers=headers, **kwargs)
        else:
            token = await client.fetch_token(url, headers=headers, **kwargs)
    except OAuthError as exc:
        raise ProviderError(str(exc.error or "oauth_error"),
                            str(exc.description or "the provider refused the request")
                            ) from None
    except httpx2.HTTPStatusError as exc:
        status = exc.response.status_code
        code, desc = _error_from_body(connector, exc.response)
        raise ProviderError(code or f"http_{status}",
                            desc or f"the token endpoint answered HTTP {status}",
                            status=status) from None
    except httpx2.HTTPError as exc:
        raise _transport_error(exc, "the provider's token endpoint") from None
    except ValueError:
        raise ProviderError("invalid_token_response",
                            "the token endpoint answered something that is not a JSON object"
                            ) from None
    return dict(token)


def _transport_error(exc: httpx2.HTTPError, endpoint: str) -> ProviderError:
    """A provider endpoint that timed out or could not be reached, named for the message."""
    if isinstance(exc, httpx2.TimeoutException):
        return ProviderError("timeout", f"{endpoint} did not answer in time")
    return ProviderError("unreachable", f"cannot reach {endpoint} ({type(exc).__name__})")


def _error_from_body(connector: Connector,
                     response: httpx2.Response) -> tuple[str | None, str | None]:
    body = quirks.decode_body(connector, response)
    if body is None:
        return None, None
    found = quirks.find_error(connector, body, response.status_code)
    if found is None:
        return None, None
    code, desc = found
    return (None if code.startswith("http_") else code), desc


async def exchange_code(connector: Connector, creds: ClientCredentials, *, code: str,
                        redirect_uri: str, code_verifier: str | None, scopes: list[str],
                        data: dict[str, Any], transport: httpx2.AsyncBaseTransport,
                        timeout: float = 15.0, allow_loopback_http: bool = False) -> TokenSet:
    """Redeem an authorization code (with the PKCE verifier when the connector uses PKCE).

    `allow_loopback_http` lets a provider name an http://127.0.0.1 API host (development).
    """
    now = datetime.now(UTC)
    extra: dict[str, Any] = connector.render_params(connector.token_params, data)
    if connector.pkce and code_verifier:
        extra["code_verifier"] = code_verifier
    payload = await _token_request(connector, creds, "fetch", transport, timeout, data=data,
                                   code=code, redirect_uri=redirect_uri,
                                   grant_type="authorization_code", **extra)
    return _parse(connector, payload, requested_scopes=scopes, now=now,
                  allow_loopback_http=allow_loopback_http)


async def refresh(connector: Connector, creds: ClientCredentials, *, refresh_token: str,
                  scopes: list[str], data: dict[str, Any],
                  transport: httpx2.AsyncBaseTransport, timeout: float = 15.0) -> TokenSet:
    """Use a refresh token. The old refresh token is kept when the answer has none."""
    now = datetime.now(UTC)
    payload = await _token_request(connector, creds, "refresh", transport, timeout, data=data,
                                   refresh_token=refresh_token,
                                   **connector.render_params(connector.refresh_params, data))
    if not payload.get("refresh_token"):
        payload["refresh_token"] = refresh_token
    # Values kept at connect time stay as they were; a refresh only renews the token.
    return _parse(connector, payload, requested_scopes=scopes, now=now, keep=False)


def revocation_tokens(connector: Connector) -> tuple[str, ...]:
    """Which of a connection's tokens to revoke, in the order to try them.

    RFC 7009: the refresh token (ending the whole grant at most providers), then the access
    token for providers that only accept that. A provider's own call: the one it names.
    """
    if connector.revocation is not None:
        return (connector.revocation.token_kind,)
    return ("refresh_token", "access_token")


async def revoke(connector: Connector, creds: ClientCredentials, *, token: str,
                 token_type_hint: str, data: dict[str, Any],
                 transport: httpx2.AsyncBaseTransport, timeout: float = 15.0) -> None:
    """Revoke one token, RFC 7009 (`revocation_url`) or the provider's own way (`revocation`).

    Does nothing for a connector that offers neither; raises ProviderError when the provider
    cannot be told or refuses.
    """
    if connector.revocation is not None:
        await _own_revocation(connector, connector.revocation, creds, token=token, data=data,
                              transport=transport, timeout=timeout)
        return
    if not connector.revocation_url:
        return
    url = connector.render(connector.revocation_url, data)
    client = _client(connector, creds, transport, timeout)
    try:
        auth = None if connector.revocation_client_auth else client.client_auth(
            quirks.no_client_auth)
        resp = await client.revoke_token(url, token=token, token_type_hint=token_type_hint,
                                         headers=quirks.request_headers(connector, data),
                                         auth=auth)
    except httpx2.HTTPError as exc:
        raise _transport_error(exc, "the revocation endpoint") from None
    _check_revocation_answer(connector, resp)


async def _own_revocation(connector: Connector, spec: Revocation, creds: ClientCredentials, *,
                          token: str, data: dict[str, Any],
                          transport: httpx2.AsyncBaseTransport, timeout: float) -> None:
    """The call `spec` describes: method, URL, client or token authentication, token placement.

    These endpoints are part of the provider's API, so the connector's api_headers go along
    (GitHub's Accept and X-GitHub-Api-Version).
    """
    # Every value is one path segment: a kept value cannot move the call to another host.
    values = {k: quote(str(v), safe="") for k, v in data.items()}
    values["client_id"] = quote(creds.client_id, safe="")
    if spec.token == "path":
        values["token"] = quote(token, safe="")
    url = connector.render(spec.url, values)
    try:
        headers = {"Accept": "application/json", **connector.api_header_values(data)}
    except ValueError:
        headers = {"Accept": "application/json"}
    kwargs: dict[str, Any] = {}
    if spec.auth == "client_basic":
        kwargs["auth"] = httpx2.BasicAuth(creds.client_id, creds.client_secret)
    elif spec.auth == "bearer":
        headers["Authorization"] = f"Bearer {token}"
    name = spec.field_name
    if name is not None and spec.token and spec.token.startswith("body_json:"):
        kwargs["json"] = {name: token}
    elif name is not None:
        kwargs["data"] = {name: token}
    # Never closed: the transport (connection pool) belongs to the caller.
    client = httpx2.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False)
    try:
        resp = await client.request(spec.method, url, headers=headers, **kwargs)
    except httpx2.HTTPError as exc:
        raise _transport_error(exc, "the revocation endpoint") from None
    _check_revocation_answer(connector, resp)


def _check_revocation_answer(connector: Connector, resp: httpx2.Response) -> None:
    body = quirks.decode_body(connector, resp)
    found = quirks.find_error(connector, body, resp.status_code) if body is not None else None
    if found is not None or resp.status_code >= 400:
        code, desc = found or (f"http_{resp.status_code}", None)
        raise ProviderError(code, desc or f"the revocation endpoint answered HTTP "
                                          f"{resp.status_code}", status=resp.status_code)


__all__ = [
    "PERMANENT_ERRORS",
    "ClientCredentials",
    "ProviderError",
    "TokenSet",
    "authorization_url",
    "exchange_code",
    "new_code_verifier",
    "refresh",
    "requested_scopes",
    "revocation_tokens",
    "revoke",
]

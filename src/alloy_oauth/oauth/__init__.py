"""Talking to providers: authorize URL, code exchange, refresh, revocation (RFC 6749, 7636, 7009).

Authlib does the protocol mechanics on httpx2; this module turns every provider answer into a
`TokenSet` or a `ProviderError`, never a crash.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

from alloy_oauth.providers import Connector

log = logging.getLogger(__name__)

# Errors after which retrying the same grant cannot succeed: the user must connect again.
PERMANENT_ERRORS = frozenset({"invalid_grant", "invalid_client", "unauthorized_client"})


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
    # Non-secret fields of the token response, kept as connection metadata.
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


_SECRET_FIELDS = {"access_token", "refresh_token", "id_token", "token_type", "expires_in",
                  "expires_at", "scope", "refresh_token_expires_in"}


def new_code_verifier() -> str:
    return str(generate_token(64))


def _client(connector: Connector, creds: ClientCredentials,
            transport: httpx2.AsyncBaseTransport, timeout: float) -> AsyncOAuth2Client:
    # The transport (connection pool) belongs to the caller: these clients are never closed.
    return AsyncOAuth2Client(
        client_id=creds.client_id,
        client_secret=creds.client_secret,
        token_endpoint_auth_method=connector.token_auth_method,
        revocation_endpoint_auth_method=connector.token_auth_method,
        code_challenge_method="S256" if connector.pkce else None,
        transport=transport,
        timeout=timeout,
    )


def authorization_url(connector: Connector, creds: ClientCredentials, *, redirect_uri: str,
                      state: str, scopes: list[str], code_verifier: str | None,
                      data: dict[str, Any]) -> str:
    """The provider's authorization URL for one flow."""
    assert connector.authorization_url is not None
    client = AsyncOAuth2Client(
        client_id=creds.client_id,
        code_challenge_method="S256" if connector.pkce else None,
    )
    params: dict[str, Any] = dict(connector.authorize_params)
    if scopes:
        params["scope"] = connector.scope_separator.join(scopes)
    url, _ = client.create_authorization_url(
        connector.render(connector.authorization_url, data),
        state=state,
        code_verifier=code_verifier if connector.pkce else None,
        redirect_uri=redirect_uri,
        **params,
    )
    return str(url)


def _parse(payload: Any, *, requested_scopes: list[str], separator: str,
           now: datetime) -> TokenSet:
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
        except (TypeError, ValueError) as exc:
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
    return TokenSet(
        access_token=access,
        token_type="Bearer" if not isinstance(token_type, str) or token_type.lower() == "bearer"
        else token_type,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        expires_at=expires_at,
        scopes=scopes,
        extra={k: v for k, v in payload.items() if k not in _SECRET_FIELDS
               and isinstance(v, str | int | float | bool) and "token" not in k.lower()
               and "secret" not in k.lower()},
    )


async def _token_request(connector: Connector, creds: ClientCredentials, call: str,
                         transport: httpx2.AsyncBaseTransport, timeout: float,
                         **kwargs: Any) -> dict[str, Any]:
    """One token endpoint call, every failure mapped to a ProviderError."""
    assert connector.token_url is not None
    url = connector.render(connector.token_url, kwargs.pop("data", {}))
    client = _client(connector, creds, transport, timeout)
    try:
        if call == "refresh":
            token = await client.refresh_token(url, **kwargs)
        else:
            token = await client.fetch_token(url, **kwargs)
    except OAuthError as exc:
        raise ProviderError(str(exc.error or "oauth_error"),
                            str(exc.description or "the provider refused the request")
                            ) from None
    except httpx2.HTTPStatusError as exc:
        status = exc.response.status_code
        code, desc = _error_from_body(exc.response)
        raise ProviderError(code or f"http_{status}",
                            desc or f"the token endpoint answered HTTP {status}",
                            status=status) from None
    except httpx2.TimeoutException:
        raise ProviderError("timeout", "the provider's token endpoint did not answer in time"
                            ) from None
    except httpx2.HTTPError as exc:
        raise ProviderError("unreachable",
                            f"cannot reach the provider's token endpoint ({type(exc).__name__})"
                            ) from None
    except ValueError:
        raise ProviderError("invalid_token_response",
                            "the token endpoint answered something that is not a JSON object"
                            ) from None
    return dict(token)


def _error_from_body(response: httpx2.Response) -> tuple[str | None, str | None]:
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError):
        return None, None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        desc = body.get("error_description")
        return body["error"], desc if isinstance(desc, str) else None
    return None, None


async def exchange_code(connector: Connector, creds: ClientCredentials, *, code: str,
                        redirect_uri: str, code_verifier: str | None, scopes: list[str],
                        data: dict[str, Any], transport: httpx2.AsyncBaseTransport,
                        timeout: float = 15.0) -> TokenSet:
    """Redeem an authorization code (with the PKCE verifier when the connector uses PKCE)."""
    now = datetime.now(UTC)
    extra: dict[str, Any] = dict(connector.token_params)
    if connector.pkce and code_verifier:
        extra["code_verifier"] = code_verifier
    payload = await _token_request(connector, creds, "fetch", transport, timeout, data=data,
                                   code=code, redirect_uri=redirect_uri,
                                   grant_type="authorization_code", **extra)
    return _parse(payload, requested_scopes=scopes, separator=connector.scope_separator, now=now)


async def refresh(connector: Connector, creds: ClientCredentials, *, refresh_token: str,
                  scopes: list[str], data: dict[str, Any],
                  transport: httpx2.AsyncBaseTransport, timeout: float = 15.0) -> TokenSet:
    """Use a refresh token. The old refresh token is kept when the answer has none."""
    now = datetime.now(UTC)
    payload = await _token_request(connector, creds, "refresh", transport, timeout, data=data,
                                   refresh_token=refresh_token, **connector.token_params)
    if "refresh_token" not in payload:
        payload["refresh_token"] = refresh_token
    return _parse(payload, requested_scopes=scopes, separator=connector.scope_separator, now=now)


async def revoke(connector: Connector, creds: ClientCredentials, *, token: str,
                 token_type_hint: str, data: dict[str, Any],
                 transport: httpx2.AsyncBaseTransport, timeout: float = 15.0) -> None:
    """RFC 7009 revocation; raises ProviderError when the provider cannot be told."""
    if not connector.revocation_url:
        return
    url = connector.render(connector.revocation_url, data)
    client = _client(connector, creds, transport, timeout)
    try:
        resp = await client.revoke_token(url, token=token, token_type_hint=token_type_hint)
    except httpx2.HTTPError as exc:
        raise ProviderError("unreachable",
                            f"cannot reach the revocation endpoint ({type(exc).__name__})"
                            ) from None
    if resp.status_code >= 400:
        code, desc = _error_from_body(resp)
        raise ProviderError(code or f"http_{resp.status_code}",
                            desc or f"the revocation endpoint answered HTTP {resp.status_code}",
                            status=resp.status_code)

"""Everything the sync and async clients share: settings, the operations (request + parser),
mapping answers to errors, and the retry policy. Only the I/O loop lives in _sync/_async."""

from __future__ import annotations

import email.utils
import math
import os
import random
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx2

from ._errors import (
    AlloyError,
    AuthenticationError,
    ConnectionNotFound,
    InvalidAuthorizationCode,
    InvalidRedirectUri,
    NeedsReauth,
    NotFound,
    RateLimited,
)
from ._models import AccessToken, Connection, DeletedConnection, OAuthStart

T = TypeVar("T")

DEFAULT_BASE_URL = "http://localhost:8000"
DEFAULT_API_VERSION = "2025-09"

# Methods that do the same thing when sent twice: retried after a 503 or a failed connect.
SAFE_TO_REPEAT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
# A longer Retry-After is handed to the caller (RateLimited.retry_after) instead of slept.
MAX_RETRY_AFTER = 60.0


def _user_agent() -> str:
    try:
        version = metadata.version("alloy-oauth")
    except metadata.PackageNotFoundError:
        version = "0"
    return f"alloy-oauth-python/{version}"


@dataclass(frozen=True, slots=True)
class Settings:
    api_key: str
    base_url: str
    api_version: str
    timeout: float | None
    max_retries: int

    def __repr__(self) -> str:
        return (
            f"Settings(base_url={self.base_url!r}, api_version={self.api_version!r}, "
            f"timeout={self.timeout!r}, max_retries={self.max_retries!r})"
        )


def resolve_settings(
    api_key: str | None,
    base_url: str | None,
    api_version: str | None,
    timeout: float | None,
    max_retries: int,
) -> Settings:
    """Fill what the caller left out from ALLOY_API_KEY, ALLOY_BASE_URL, ALLOY_API_VERSION."""
    key = api_key or os.environ.get("ALLOY_API_KEY") or ""
    if not key.strip():
        raise AuthenticationError(
            None,
            "missing_api_key",
            "No API key: set the ALLOY_API_KEY environment variable or pass api_key=.",
        )
    url = (base_url or os.environ.get("ALLOY_BASE_URL") or DEFAULT_BASE_URL).strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https://, got {url!r}")
    version = api_version or os.environ.get("ALLOY_API_VERSION") or DEFAULT_API_VERSION
    if max_retries < 0:
        raise ValueError("max_retries must be 0 or more")
    return Settings(key.strip(), url, version.strip(), timeout, max_retries)


def default_headers(settings: Settings) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {settings.api_key}",
        "x-api-version": settings.api_version,
        "Accept": "application/json",
        "User-Agent": _user_agent(),
    }


def flow_repr(cls_name: str, settings: Settings) -> str:
    return f"{cls_name}(base_url={settings.base_url!r}, api_version={settings.api_version!r})"


# --------------------------------------------------------------------------- operations


@dataclass(frozen=True, slots=True)
class Operation(Generic[T]):
    """One API call: what to send and how to read a successful answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    json: dict[str, Any] | None = None
    params: dict[str, str] | None = None


def _seg(value: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    return quote(value, safe="")


def _invalid(what: str) -> AlloyError:
    return AlloyError(
        None, "invalid_response", f"The server's answer is missing {what}; is it an Alloy server?"
    )


def _obj(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _invalid("a JSON object")
    return body


def _str(body: Any, key: str) -> str:
    value = _obj(body).get(key)
    if not isinstance(value, str):
        raise _invalid(f'"{key}"')
    return value


def _list_of_objects(body: Any, key: str) -> list[dict[str, Any]]:
    value = _obj(body).get(key)
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise _invalid(f'the list "{key}"')
    return value


def _scopes(scopes: Sequence[str] | str) -> list[str]:
    if isinstance(scopes, str):
        return scopes.replace(",", " ").split()
    return list(scopes)


def new_state() -> str:
    return secrets.token_urlsafe(32)


def initiate_oauth_flow(
    connector_id: str,
    redirect_uri: str,
    *,
    user_id: str | None,
    state: str | None,
    scopes: Sequence[str] | str | None,
    data: Mapping[str, Any] | None,
    auth_config_id: str | None,
) -> Operation[OAuthStart]:
    path = f"/connectors/{_seg(connector_id, 'connector_id')}/credentials"
    if not redirect_uri:
        raise ValueError("redirect_uri must be a non-empty string")
    sent_state = state if state is not None else new_state()
    body: dict[str, Any] = {
        "connectorId": connector_id,
        "credentialType": "oauth2",
        "redirectUri": redirect_uri,
        "state": sent_state,
    }
    if user_id is not None:
        body["userId"] = user_id
    if scopes is not None:
        body["scopes"] = _scopes(scopes)
    if data is not None:
        body["data"] = dict(data)
    if auth_config_id is not None:
        body["authConfigId"] = auth_config_id

    def parse(answer: Any) -> OAuthStart:
        returned = _obj(answer).get("state")
        return OAuthStart(
            oauth_url=_str(answer, "oauthUrl"),
            credential_id=_str(answer, "credentialId"),
            state=returned if isinstance(returned, str) and returned else sent_state,
        )

    return Operation("POST", path, parse, json=body)


def _parse_connection(answer: Any) -> Connection:
    return Connection(
        connection_id=_str(answer, "connectionId"),
        credential_id=_str(answer, "credentialId"),
        status=_str(answer, "status"),
    )


def handle_oauth_callback(connector_id: str, code: str, state: str | None) -> Operation[Connection]:
    path = f"/connectors/{_seg(connector_id, 'connector_id')}/credentials/callback"
    if not code:
        raise ValueError("code must be a non-empty string (the ?code= of the callback)")
    body: dict[str, Any] = {"code": code}
    if state is not None:
        body["state"] = state
    return Operation("POST", path, _parse_connection, json=body)


def create_credential(
    connector_id: str,
    credential_type: str,
    data: Mapping[str, Any],
    *,
    user_id: str | None,
) -> Operation[Connection]:
    path = f"/connectors/{_seg(connector_id, 'connector_id')}/credentials"
    if credential_type == "oauth2":
        raise ValueError("use initiate_oauth_flow() for oauth2 credentials")
    body: dict[str, Any] = {
        "connectorId": connector_id,
        "credentialType": credential_type,
        "data": dict(data),
    }
    if user_id is not None:
        body["userId"] = user_id
    return Operation("POST", path, _parse_connection, json=body)


def get_connection(connection_id: str) -> Operation[dict[str, Any]]:
    return Operation("GET", f"/connections/{_seg(connection_id, 'connection_id')}", _obj)


def list_connections(
    *, user_id: str | None, connector_id: str | None
) -> Operation[list[dict[str, Any]]]:
    params: dict[str, str] = {}
    if user_id is not None:
        params["userId"] = user_id
    if connector_id is not None:
        params["connectorId"] = connector_id
    return Operation(
        "GET", "/connections", lambda a: _list_of_objects(a, "connections"), params=params
    )


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid('an ISO 8601 "expiresAt"')
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _invalid('an ISO 8601 "expiresAt"') from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _parse_token(answer: Any) -> AccessToken:
    token_type = _obj(answer).get("tokenType") or "Bearer"
    if not isinstance(token_type, str):
        raise _invalid('"tokenType"')
    return AccessToken(
        access_token=_str(answer, "accessToken"),
        token_type=token_type,
        expires_at=_parse_time(answer.get("expiresAt")),
    )


def get_access_token(connection_id: str, *, force_refresh: bool) -> Operation[AccessToken]:
    path = f"/connections/{_seg(connection_id, 'connection_id')}/token"
    params = {"forceRefresh": "true"} if force_refresh else None
    return Operation("GET", path, _parse_token, params=params)


def _parse_deleted(answer: Any) -> DeletedConnection:
    # Servers before revocation reporting answer {"success": true} (or nothing): unknown.
    body = answer if isinstance(answer, dict) else {}
    revoked = body.get("revoked")
    error = body.get("revocationError")
    return DeletedConnection(
        revoked=revoked if isinstance(revoked, bool) else None,
        revocation_error=error if isinstance(error, str) else None,
    )


def delete_connection(connection_id: str) -> Operation[DeletedConnection]:
    path = f"/connections/{_seg(connection_id, 'connection_id')}"
    return Operation("DELETE", path, _parse_deleted)


def list_connectors() -> Operation[list[dict[str, Any]]]:
    return Operation("GET", "/connectors", lambda a: _list_of_objects(a, "connectors"))


def get_connector(connector_id: str) -> Operation[dict[str, Any]]:
    path = f"/connectors/{_seg(connector_id, 'connector_id')}"

    def parse(answer: Any) -> dict[str, Any]:
        return _obj(_obj(answer).get("connector"))

    return Operation("GET", path, parse)


def create_user(username: str, full_name: str | None) -> Operation[str]:
    if not username:
        raise ValueError("username must be a non-empty string")
    body: dict[str, Any] = {"username": username}
    if full_name is not None:
        body["fullName"] = full_name
    return Operation("POST", "/users", lambda a: _str(a, "userId"), json=body)


def get_user_token(user_id: str) -> Operation[str]:
    path = f"/users/{_seg(user_id, 'user_id')}/token"
    return Operation("GET", path, lambda a: _str(a, "token"))


# --------------------------------------------------------------------------- answers


def read_success(response: httpx2.Response) -> Any:
    """The JSON of a 2xx answer (None when it has no body)."""
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise AlloyError(
            response.status_code,
            "invalid_response",
            f"The server answered HTTP {response.status_code} with a body that is not JSON; "
            "is base_url pointing at an Alloy server?",
        ) from None


def _error_fields(response: httpx2.Response) -> tuple[str, str]:
    status = response.status_code
    fallback_code = f"http_{status}"
    reason = response.reason_phrase or "error"
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return fallback_code, f"The server answered HTTP {status} {reason} without a JSON error."
    code = body.get("error")
    message = body.get("message")
    if not isinstance(message, str) or not message:
        detail = body.get("detail")
        message = detail if isinstance(detail, str) and detail else f"HTTP {status} {reason}."
    if not isinstance(code, str) or not code:
        code = fallback_code
    return code, message


def error_from_response(response: httpx2.Response, path: str) -> AlloyError:
    """The exception for a non-2xx answer to a request for ``path``."""
    status = response.status_code
    code, message = _error_fields(response)
    if status == 429:
        return RateLimited(status, code, message, parse_retry_after(response))
    if status == 401:
        return AuthenticationError(status, code, message)
    if code == "invalid_redirect_uri":
        return InvalidRedirectUri(status, code, message)
    if code == "invalid_grant":
        return InvalidAuthorizationCode(status, code, message)
    if status == 404:
        if path.startswith("/connections/") and code in ("not_found", "connection_not_found"):
            return ConnectionNotFound(status, code, message)
        return NotFound(status, code, message)
    if code == "needs_reauth":
        return NeedsReauth(status, code, message)
    return AlloyError(status, code, message)


def transport_error(settings: Settings, exc: httpx2.TransportError) -> AlloyError:
    """The exception for a request that got no answer."""
    kind = type(exc).__name__
    if isinstance(exc, httpx2.TimeoutException) and not isinstance(exc, httpx2.ConnectTimeout):
        message = (
            f"The Alloy server at {settings.base_url} did not answer in time ({kind}); "
            "try again, or raise timeout=."
        )
    else:
        message = (
            f"Could not reach the Alloy server at {settings.base_url} ({kind}). Is it running? "
            "Set ALLOY_BASE_URL or pass base_url= to point at it."
        )
    return AlloyError(None, "connection_error", message)


# --------------------------------------------------------------------------- retries


def parse_retry_after(response: httpx2.Response, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), if any."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def backoff(attempt: int) -> float:
    """Exponential backoff with jitter for retry number ``attempt`` (0-based), capped."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** min(attempt, 32))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def retry_delay_for_response(
    method: str, response: httpx2.Response, attempt: int, max_retries: int
) -> float | None:
    """How long to sleep before repeating the request, or None to not repeat it."""
    if attempt >= max_retries:
        return None
    status = response.status_code
    # A 429 was refused before anything happened, so any method may be repeated;
    # a 503 may have come after the server acted, so only idempotent methods are.
    if status == 429 or (status == 503 and method.upper() in SAFE_TO_REPEAT):
        wait = parse_retry_after(response)
        if wait is None:
            return backoff(attempt)
        return wait if wait <= MAX_RETRY_AFTER else None
    return None


def retry_delay_for_error(
    method: str, exc: httpx2.TransportError, attempt: int, max_retries: int
) -> float | None:
    if attempt >= max_retries or method.upper() not in SAFE_TO_REPEAT:
        return None
    if isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout):
        return backoff(attempt)
    return None

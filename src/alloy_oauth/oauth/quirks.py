"""How the catalog's quirk fields bend Authlib's standard requests and answers.

Each function reads named fields of a `Connector` and nothing else, so a custom connector in
`ALLOY_PROVIDERS_FILE` gets the same treatment as a built-in one. Authlib calls these through
its hooks: a client-auth method shapes each token, refresh and revocation request; a compliance
hook turns each token answer into the standard JSON shape before Authlib reads it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import httpx2
from authlib.common.urls import url_decode
from authlib.oauth2.auth import encode_client_secret_basic, encode_client_secret_post

from alloy_oauth.providers import Connector

# The fields of a token answer that describe the token itself (RFC 6749 5.1 and common kin).
TOKEN_FIELDS = ("access_token", "token_type", "expires_in", "refresh_token", "scope",
                "refresh_token_expires_in", "id_token")
_FORM_TYPES = ("application/x-www-form-urlencoded", "text/plain", "text/html")

ClientAuthMethod = Callable[[Any, str, str, Any, Any], tuple[str, Any, Any]]


def client_auth(connector: Connector) -> ClientAuthMethod:
    """Authlib client-auth method: credentials as Basic or in the body, body as form or JSON."""
    base = (encode_client_secret_post if connector.token_auth_method == "client_secret_post"
            else encode_client_secret_basic)

    def prepare(client: Any, method: str, uri: str, headers: Any, body: Any
                ) -> tuple[str, Any, Any]:
        uri, headers, body = base(client, method, uri, headers, body)
        if connector.token_request_format == "json":
            text = body.decode() if isinstance(body, bytes) else str(body or "")
            body = json.dumps(dict(url_decode(text))) if text else "{}"
            headers["Content-Type"] = "application/json"
        return uri, headers, body

    return prepare


def no_client_auth(client: Any, method: str, uri: str, headers: Any, body: Any
                   ) -> tuple[str, Any, Any]:
    """For endpoints that authenticate by the token they are given, not the client."""
    return uri, headers, body


def request_headers(connector: Connector, data: Mapping[str, Any]) -> dict[str, str]:
    """Headers of token and revocation requests (`data`: the connection's inputs)."""
    headers = {"Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"}
    if connector.token_response_format == "json":
        headers["Accept"] = "application/json"
    return {**headers, **connector.render_params(connector.token_headers, dict(data))}


def decode_body(connector: Connector, response: httpx2.Response) -> dict[str, Any] | None:
    """The answer as a mapping: JSON, or a form-encoded body (GitHub's default)."""
    ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        text = response.text.strip()
    except (UnicodeDecodeError, LookupError):
        return None
    if text.startswith("{"):
        try:
            loaded = json.loads(text)
        except ValueError:
            return None
        return loaded if isinstance(loaded, dict) else None
    form_like = ctype in _FORM_TYPES or connector.token_response_format == "form"
    if not form_like or not text or text.startswith("<") or "=" not in text:
        return None
    try:
        return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=True))
    except ValueError:
        return None


def get_path(body: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path, or None."""
    value: Any = body
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def find_error(connector: Connector, body: Mapping[str, Any],
               status: int) -> tuple[str, str | None] | None:
    """(error code, description) when the answer reports a failure, in any documented shape."""
    failed_flag = (connector.success_flag is not None
                   and body.get(connector.success_flag) is False)
    raw = body.get("error")
    if raw is None and (status >= 400 or failed_flag):
        raw = body.get(connector.error_field)
    if isinstance(raw, Mapping):  # {"error": {"code": ..., "message": ...}}
        nested = raw
        raw = nested.get("code") or nested.get("type") or nested.get("status")
        description = _text(nested.get("message"))
    else:
        description = None
    code = _text(raw)
    if code is None and not failed_flag and status < 400:
        return None
    description = description or _text(body.get(connector.error_description_field)) or _text(
        body.get("error_description")) or _text(body.get("message"))
    code = code or (f"http_{status}" if status >= 400 else "provider_error")
    return connector.error_codes.get(code, code), description


def lift_token(connector: Connector, body: dict[str, Any]) -> dict[str, Any]:
    """The token fields at the top level, taken from `token_path` when the answer nests them."""
    if not connector.token_path:
        return body
    nested = get_path(body, connector.token_path)
    if not isinstance(nested, Mapping) or not nested.get("access_token"):
        return body
    lifted = {k: v for k, v in body.items() if k not in TOKEN_FIELDS}
    lifted.update({k: nested[k] for k in TOKEN_FIELDS if k in nested})
    return lifted


def _numeric_expiry(body: dict[str, Any]) -> dict[str, Any]:
    """expires_in as whole seconds (form answers carry it as text); nonsense is an error."""
    raw = body.get("expires_in")
    if raw is None or raw == "":
        return {k: v for k, v in body.items() if k != "expires_in"}
    try:
        seconds = int(float(raw))
    except (TypeError, ValueError, OverflowError):
        return {"error": "invalid_token_response",
                "error_description": "the token response's expires_in is not a number"}
    return {**body, "expires_in": seconds}


def normalize_response(connector: Connector) -> Callable[[httpx2.Response], httpx2.Response]:
    """Authlib compliance hook: any documented answer shape -> a standard JSON token answer."""

    def hook(response: httpx2.Response) -> httpx2.Response:
        body = decode_body(connector, response)
        if body is None:
            return response  # not a mapping at all: Authlib reports the HTTP status / shape
        error = find_error(connector, body, response.status_code)
        if error is not None:
            code, description = error
            shaped: dict[str, Any] = {"error": code}
            if description:
                shaped["error_description"] = description
            status = response.status_code if response.status_code >= 400 else 400
        else:
            shaped, status = lift_token(connector, body), response.status_code
            shaped = _numeric_expiry(shaped)
        return httpx2.Response(status, json=shaped, request=response.request)

    return hook

"""How a stored credential is applied to a provider API call, the connector's way."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from alloy_oauth.errors import BadRequest
from alloy_oauth.providers import Connector


def api_request_auth(connector: Connector, token_type: str | None, access_token: str | None,
                     secret_data: Mapping[str, str] | None, *,
                     metadata: Mapping[str, Any] | None = None,
                     ) -> tuple[dict[str, str], dict[str, str]]:
    """Headers and query parameters that authenticate one API call to the connector.

    `access_token` (with its `token_type`) for an OAuth connection; `secret_data` (the `data`
    of an apiKey, basic or bearer credential) otherwise. The connector's `api_headers` come
    first, with `${name}` filled in from `metadata` (the connection's inputs and kept values),
    so the credential always wins over a header of the same name. A connection without a
    value a header needs is a BadRequest.
    """
    try:
        headers = connector.api_header_values(metadata or {})
    except ValueError as exc:
        raise BadRequest(f"This connection cannot call the provider's API: {exc}.",
                         code="missing_header_value") from None
    query: dict[str, str] = {}
    data = dict(secret_data or {})
    if "username" in data and "password" in data:
        raw = f"{data['username']}:{data['password']}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        return headers, query
    credential = data.get("apiKey") or data.get("token") or access_token
    if not credential:
        raise ValueError("no credential to apply: give an access token or secret data")
    if connector.api_auth == "bearer":
        # OAuth tokens here are bearer tokens (the token type is normalised when stored);
        # the connector names the scheme where the provider wants another word for it.
        headers["Authorization"] = f"{connector.api_auth_scheme} {credential}"
    elif connector.api_auth == "header":
        assert connector.api_auth_name is not None
        headers[connector.api_auth_name] = credential
    else:
        assert connector.api_auth_name is not None
        query[connector.api_auth_name] = credential
    return headers, query

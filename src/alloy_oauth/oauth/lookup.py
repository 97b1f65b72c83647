"""The connector's `connect_lookup`: one API call with the new token, right after the code exchange.

Some providers name a value every later call needs only through their API: Xero's tenant id
(`GET /connections`), DocuSign's account host (`GET /oauth/userinfo`), Mailchimp's data centre
(`GET /oauth2/metadata`). The answer's values are checked like kept token values before they
are stored as connection metadata; any failure is a `ProviderError` naming the connector and
the value, and the flow then stores no connection.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx2

from alloy_oauth.oauth import ProviderError
from alloy_oauth.providers import URL_SAFE, VARIABLE, Connector, lookup_value, url_allowed

_MAX_VALUE = 500
_MAX_ANSWER = 1 << 20


def _request_auth(connector: Connector, scheme: str | None,
                  access_token: str) -> tuple[dict[str, str], dict[str, str]]:
    """The new token applied the connector's way (`api_auth`), for the lookup call."""
    if connector.api_auth == "header":
        assert connector.api_auth_name is not None
        return {connector.api_auth_name: access_token}, {}
    if connector.api_auth == "query":
        assert connector.api_auth_name is not None
        return {}, {connector.api_auth_name: access_token}
    # OAuth tokens here are bearer tokens; the connector (or the lookup) names the word.
    return {"Authorization": f"{scheme or connector.api_auth_scheme} {access_token}"}, {}


def _static_headers(connector: Connector, data: Mapping[str, Any]) -> dict[str, str]:
    """api_headers whose values are known before the lookup (Notion-Version, inputs)."""
    return {k: connector.render(v, dict(data)) for k, v in connector.api_headers.items()
            if all(n in data for n in VARIABLE.findall(v))}


def check_value(connector: Connector, name: str, value: Any, *,
                allow_loopback_http: bool) -> str | None:
    """Why a looked-up value cannot be kept, or None. The rules of kept values: a single
    short value; the one that starts api_base_url an https URL; one used inside a URL only
    host-name and path-segment characters; no control characters (they would break headers).
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return "is not a single text or number value"
    text = str(value)
    if not text or len(text) > _MAX_VALUE:
        return f"is empty or longer than {_MAX_VALUE} characters"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        return "holds control characters"
    if name == connector.api_base_variable:
        parts = urlsplit(text)
        if not url_allowed(parts.scheme, parts.hostname, development=allow_loopback_http):
            return "is not an https URL"
    elif name in VARIABLE.findall(connector.api_base_url or "") and not URL_SAFE.fullmatch(text):
        return "may only contain letters, digits, '.', '-', '_' and '~' in the API base URL"
    return None


async def connect_lookup(connector: Connector, *, access_token: str,
                         data: Mapping[str, Any], transport: httpx2.AsyncBaseTransport,
                         timeout: float = 15.0,
                         allow_loopback_http: bool = False) -> dict[str, Any]:
    """Run the connector's connect lookup; the kept values by name ({} without a lookup).

    Raises ProviderError (`lookup_failed`) naming the connector and the value it could not get.
    """
    spec = connector.connect_lookup
    if spec is None:
        return {}
    url = connector.render(spec.url, dict(data))
    where = f"GET {urlsplit(url).netloc}{urlsplit(url).path}"
    names = ", ".join(spec.keep)

    def failed(why: str, name: str | None = None) -> ProviderError:
        return ProviderError("lookup_failed",
                             f"connector '{connector.id}' could not look up "
                             f"{name or names} after connecting: {where} {why}")

    auth_headers, query = _request_auth(connector, spec.auth_scheme, access_token)
    headers = {"Accept": "application/json", **_static_headers(connector, data), **auth_headers}
    # Never closed: the transport (connection pool) belongs to the caller.
    client = httpx2.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False)
    try:
        resp = await client.get(url, headers=headers, params=query or None)
    except httpx2.TimeoutException:
        raise failed("did not answer in time") from None
    except httpx2.HTTPError as exc:
        raise failed(f"could not be reached ({type(exc).__name__})") from None
    if resp.status_code != 200:
        raise failed(f"answered HTTP {resp.status_code}")
    if len(resp.content) > _MAX_ANSWER:
        raise failed("answered more than 1 MB")
    try:
        body = json.loads(resp.content)
    except ValueError:
        raise failed("answered something that is not JSON") from None
    kept: dict[str, Any] = {}
    for name, path in spec.keep.items():
        value = lookup_value(body, path)
        if value is None:
            raise failed(f"answered without {path}", name)
        problem = check_value(connector, name, value, allow_loopback_http=allow_loopback_http)
        if problem:
            raise failed(f"answered a {path} that {problem}", name)
        kept[name] = value
    return kept

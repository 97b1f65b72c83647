"""Client authentication at the token and revocation endpoints (RFC 6749 section 2.3.1).

Both `client_secret_basic` (HTTP Basic) and `client_secret_post` (body parameters) are
accepted; a request using both at once is refused, as the RFC requires.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from urllib.parse import unquote

from alloy_oauth.sandbox.config import SandboxConfig
from alloy_oauth.sandbox.errors import invalid_client, invalid_request


def _basic_credentials(authorization: str) -> tuple[str, str] | None:
    scheme, _, encoded = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise invalid_client("Malformed HTTP Basic client credentials.") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise invalid_client("Malformed HTTP Basic client credentials.")
    # The RFC form-encodes both parts before Basic encoding.
    return unquote(client_id), unquote(secret)


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def authenticate_client(
    authorization: str | None, form: Mapping[str, str], config: SandboxConfig
) -> str:
    """The authenticated client's id, or `OAuthError` (`invalid_client`, 401)."""
    basic = _basic_credentials(authorization) if authorization else None
    body_id = form.get("client_id")
    body_secret = form.get("client_secret")
    if basic is not None:
        if body_secret is not None:
            raise invalid_request("Use one client authentication method, not Basic and the body.")
        client_id, secret = basic
        if body_id is not None and body_id != client_id:
            raise invalid_request("client_id in the body differs from the Basic credentials.")
    elif body_id is not None and body_secret is not None:
        client_id, secret = body_id, body_secret
    else:
        raise invalid_client("Client authentication is required.")
    # Both comparisons always run, so timing does not tell which part was wrong.
    id_ok = _equal(client_id, config.client_id)
    secret_ok = _equal(secret, config.client_secret)
    if not (id_ok and secret_ok):
        raise invalid_client("Client authentication failed.")
    return client_id

"""Validation of authorization requests (RFC 6749 section 4.1.1, RFC 7636 section 4.3)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from alloy_oauth.sandbox.config import SandboxConfig
from alloy_oauth.sandbox.pkce import S256, is_valid_challenge

DEFAULT_SCOPE = "profile"

# The parameters the consent form carries back to the POST, in this order.
AUTHORIZE_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
)

# RFC 6749 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_MAX_SCOPE_LENGTH = 1000
_MAX_STATE_LENGTH = 2048


class UntrustedRedirect(Exception):
    """The client or redirect URI cannot be trusted: answer with an error page, never redirect."""

    def __init__(self, title: str, detail: str) -> None:
        super().__init__(title)
        self.title = title
        self.detail = detail


class AuthorizeError(Exception):
    """An error to report to the client by redirecting to its (verified) redirect URI."""

    def __init__(self, redirect_uri: str, error: str, description: str, state: str | None) -> None:
        super().__init__(f"{error}: {description}")
        self.redirect_uri = redirect_uri
        self.error = error
        self.description = description
        self.state = state

    def location(self) -> str:
        params = {"error": self.error, "error_description": self.description}
        if self.state is not None:
            params["state"] = self.state
        return add_query(self.redirect_uri, params)


@dataclass(frozen=True)
class AuthorizationRequest:
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    code_challenge: str | None
    # The parameters as received, to carry through the consent form unchanged.
    params: tuple[tuple[str, str], ...]

    @property
    def scope(self) -> str:
        return " ".join(self.scopes)


def add_query(uri: str, params: dict[str, str]) -> str:
    """`uri` with `params` appended to its query (keeping its own), without fragment."""
    parts = urlsplit(uri)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def origin_of(uri: str) -> str:
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}"


def parse_scope(raw: str | None) -> tuple[str, ...] | None:
    """The distinct scope tokens in order, or None when the value is malformed."""
    if raw is None or not raw.strip():
        return (DEFAULT_SCOPE,)
    if len(raw) > _MAX_SCOPE_LENGTH:
        return None
    scopes: list[str] = []
    for token in raw.split(" "):
        if not token:
            continue
        if not _SCOPE_TOKEN.fullmatch(token):
            return None
        if token not in scopes:
            scopes.append(token)
    return tuple(scopes)


def _single(values: dict[str, list[str]], name: str) -> str | None:
    found = values.get(name)
    return found[0] if found else None


def validate_authorization_request(
    items: Iterable[tuple[str, str]], config: SandboxConfig
) -> AuthorizationRequest:
    """Check an authorization request; raises `UntrustedRedirect` or `AuthorizeError`."""
    values: dict[str, list[str]] = {}
    for name, value in items:
        # RFC 6749 3.1: a parameter sent without a value is treated as omitted.
        if value != "":
            values.setdefault(name, []).append(value)

    client_ids = values.get("client_id", [])
    if len(client_ids) != 1 or client_ids[0] != config.client_id:
        raise UntrustedRedirect(
            "Unknown client",
            "The client_id is missing or not registered with the sandbox provider.",
        )
    redirect_uris = values.get("redirect_uri", [])
    if len(redirect_uris) != 1 or redirect_uris[0] not in config.redirect_uris:
        raise UntrustedRedirect(
            "Invalid redirect_uri",
            "The redirect_uri is missing or not registered for this client "
            "(it must match a registered URI exactly).",
        )
    redirect_uri = redirect_uris[0]
    state = _single(values, "state")

    def fail(error: str, description: str) -> AuthorizeError:
        return AuthorizeError(redirect_uri, error, description, state)

    for name in AUTHORIZE_PARAMS:
        if len(values.get(name, [])) > 1:
            raise fail("invalid_request", f"Parameter {name} was given more than once.")
    if state is not None and len(state) > _MAX_STATE_LENGTH:
        raise fail("invalid_request", f"state is longer than {_MAX_STATE_LENGTH} characters.")

    response_type = _single(values, "response_type")
    if response_type is None:
        raise fail("invalid_request", "Missing required parameter: response_type.")
    if response_type != "code":
        raise fail("unsupported_response_type", "Only response_type=code is supported.")

    scopes = parse_scope(_single(values, "scope"))
    if scopes is None:
        raise fail("invalid_scope", "The scope parameter is malformed.")

    challenge = _single(values, "code_challenge")
    method = _single(values, "code_challenge_method")
    if challenge is None and method is not None:
        raise fail("invalid_request", "code_challenge_method was given without code_challenge.")
    if challenge is not None:
        if method != S256:
            raise fail("invalid_request", "code_challenge_method must be S256.")
        if not is_valid_challenge(challenge):
            raise fail("invalid_request", "code_challenge is malformed.")

    params = tuple((name, values[name][0]) for name in AUTHORIZE_PARAMS if name in values)
    return AuthorizationRequest(
        client_id=client_ids[0],
        redirect_uri=redirect_uri,
        scopes=scopes,
        state=state,
        code_challenge=challenge,
        params=params,
    )

"""The built-in sandbox OAuth 2.0 provider, driven over HTTP like any provider."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from alloy_oauth.sandbox import SandboxConfig, create_sandbox_router
from alloy_oauth.sandbox.models import SandboxAuthorizationCode, SandboxGrant, SandboxToken
from alloy_oauth.store.base import Base

CLIENT_ID = "alloy-test-client"
CLIENT_SECRET = "s3cret-sandbox-client-secret"
REDIRECT_URI = "http://localhost:8000/api/strategy/callback"
AUTHORIZE = "/sandbox/oauth/authorize"
TOKEN = "/sandbox/oauth/token"
REVOKE = "/sandbox/oauth/revoke"
ME = "/sandbox/api/me"
SANDBOX_TABLES = [
    Base.metadata.tables[model.__tablename__]
    for model in (SandboxGrant, SandboxAuthorizationCode, SandboxToken)
]


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Sandbox:
    client: httpx2.AsyncClient
    config: SandboxConfig
    clock: FakeClock
    sessions: async_sessionmaker[AsyncSession]
    app: FastAPI
    db_url: str
    engines: list[AsyncEngine] = field(default_factory=list)

    async def second_process(self) -> httpx2.AsyncClient:
        """A client for another app with its own engine over the same database."""
        engine = create_async_engine(self.db_url, connect_args={"timeout": 15})
        self.engines.append(engine)
        app = make_app(async_sessionmaker(engine, expire_on_commit=False), self.config)
        return httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://sandbox.test"
        )


def make_app(sessions: async_sessionmaker[AsyncSession], config: SandboxConfig) -> FastAPI:
    app = FastAPI()
    app.include_router(create_sandbox_router(sessions, config), prefix="/sandbox")
    return app


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Sandbox]:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'sandbox.db'}"
    engine = create_async_engine(db_url, connect_args={"timeout": 15})
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all, tables=SANDBOX_TABLES)
    clock = FakeClock()
    config = SandboxConfig(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=(REDIRECT_URI, "http://localhost:3000/cb?tenant=acme"),
        access_token_ttl=60,
        refresh_token_ttl=3600,
        code_ttl=120,
        clock=clock,
    )
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    app = make_app(sessions, config)
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://sandbox.test"
    ) as client:
        box = Sandbox(client, config, clock, sessions, app, db_url, [engine])
        yield box
    for each in box.engines:
        await each.dispose()


# --- helpers -------------------------------------------------------------------------------


class FormParser(HTMLParser):
    """Collects forms with their inputs and buttons, as a browser would submit them."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append({"attrs": attributes, "inputs": [], "buttons": []})
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"].append(attributes)
        elif tag == "button" and self.forms:
            self.forms[-1]["buttons"].append(attributes)


def parse_forms(html: str) -> list[dict[str, Any]]:
    parser = FormParser()
    parser.feed(html)
    return parser.forms


def pkce_pair() -> tuple[str, str]:
    verifier = generate_token(64)
    return verifier, create_s256_code_challenge(verifier)


def authorize_params(challenge: str | None, **overrides: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "scope": "profile email",
        "state": "state-123",
    }
    if challenge is not None:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    params.update(overrides)
    return params


def query_of(response: httpx2.Response) -> dict[str, str]:
    location = response.headers["location"]
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


async def submit_consent(
    client: httpx2.AsyncClient, params: dict[str, str], decision: str, username: str | None = None
) -> httpx2.Response:
    """Load the consent page and submit its form like a browser pressing a button."""
    page = await client.get(AUTHORIZE, params=params)
    assert page.status_code == 200, page.text
    (form,) = parse_forms(page.text)
    data = {field["name"]: field.get("value", "") for field in form["inputs"]}
    if username is not None:
        data["username"] = username
    data["decision"] = decision
    return await client.post(form["attrs"]["action"], data=data)


async def get_code(
    client: httpx2.AsyncClient, challenge: str | None = None, **overrides: str
) -> str:
    response = await submit_consent(client, authorize_params(challenge, **overrides), "allow")
    assert response.status_code == 303, response.text
    return query_of(response)["code"]


async def exchange(
    client: httpx2.AsyncClient, code: str, verifier: str | None, **extra: str
) -> httpx2.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    if verifier is not None:
        data["code_verifier"] = verifier
    data.update(extra)
    return await client.post(TOKEN, data=data, auth=httpx2.BasicAuth(CLIENT_ID, CLIENT_SECRET))


async def refresh(client: httpx2.AsyncClient, refresh_token: str) -> httpx2.Response:
    return await client.post(
        TOKEN,
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=httpx2.BasicAuth(CLIENT_ID, CLIENT_SECRET),
    )


async def tokens_for(client: httpx2.AsyncClient) -> dict[str, Any]:
    verifier, challenge = pkce_pair()
    code = await get_code(client, challenge)
    response = await exchange(client, code, verifier)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def me(client: httpx2.AsyncClient, access_token: str) -> httpx2.Response:
    return await client.get(ME, headers={"Authorization": f"Bearer {access_token}"})


# --- consent page --------------------------------------------------------------------------


async def test_consent_page_shows_one_form_posting_every_parameter_back(sandbox: Sandbox) -> None:
    _, challenge = pkce_pair()
    params = authorize_params(challenge)
    page = await sandbox.client.get(AUTHORIZE, params=params)

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Sandbox wants to access your account" in page.text
    assert "<code>profile</code>" in page.text and "<code>email</code>" in page.text
    assert page.text.count("<form") == 1
    assert f'<form method="post" action="{AUTHORIZE}">' in page.text
    assert '<button name="decision" value="allow">Allow</button>' in page.text
    assert '<button name="decision" value="deny">Deny</button>' in page.text
    (form,) = parse_forms(page.text)
    hidden = {f["name"]: f["value"] for f in form["inputs"] if f.get("type") == "hidden"}
    assert hidden == params
    (username,) = [f for f in form["inputs"] if f["name"] == "username"]
    assert username["type"] == "text" and username["value"] == "sandbox-user"
    assert '<label for="username">' in page.text


async def test_consent_page_sends_security_headers(sandbox: Sandbox) -> None:
    page = await sandbox.client.get(AUTHORIZE, params=authorize_params(None))
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "style-src 'unsafe-inline'" in csp
    # form-action would break the redirect chain to the app's origin in Chromium.
    assert "form-action" not in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-frame-options"] == "DENY"
    assert "no-store" in page.headers["cache-control"]


async def test_consent_page_escapes_request_values(sandbox: Sandbox) -> None:
    hostile = '"><script>alert(1)</script>'
    page = await sandbox.client.get(
        AUTHORIZE, params=authorize_params(None, state=hostile, scope="<img>")
    )
    assert page.status_code == 200
    assert "<script>" not in page.text and "<img>" not in page.text
    assert "&lt;script&gt;" in page.text and "&lt;img&gt;" in page.text
    (form,) = parse_forms(page.text)
    hidden = {f["name"]: f["value"] for f in form["inputs"] if f.get("type") == "hidden"}
    assert hidden["state"] == hostile


@pytest.mark.parametrize(
    "overrides",
    [
        {"redirect_uri": "http://evil.example/callback"},
        {"redirect_uri": REDIRECT_URI + "/extra"},
        {"client_id": "someone-else"},
    ],
    ids=["foreign", "prefix-only", "unknown-client"],
)
async def test_untrusted_client_or_redirect_uri_gets_error_page_never_redirect(
    sandbox: Sandbox, overrides: dict[str, str]
) -> None:
    params = authorize_params(None, **overrides)
    page = await sandbox.client.get(AUTHORIZE, params=params)
    assert page.status_code == 400
    assert "location" not in page.headers
    assert page.headers["content-type"].startswith("text/html")
    assert "evil.example" not in page.text

    posted = await sandbox.client.post(AUTHORIZE, data={**params, "decision": "allow"})
    assert posted.status_code == 400
    assert "location" not in posted.headers
    async with sandbox.sessions() as session:
        assert (await session.execute(select(SandboxAuthorizationCode))).first() is None


async def test_missing_redirect_uri_gets_error_page(sandbox: Sandbox) -> None:
    params = authorize_params(None)
    del params["redirect_uri"]
    page = await sandbox.client.get(AUTHORIZE, params=params)
    assert page.status_code == 400 and "location" not in page.headers


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": ""}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "too-short"}, "invalid_request"),
    ],
)
async def test_bad_authorization_request_redirects_with_error_and_state(
    sandbox: Sandbox, overrides: dict[str, str], error: str
) -> None:
    _, challenge = pkce_pair()
    page = await sandbox.client.get(AUTHORIZE, params=authorize_params(challenge, **overrides))
    assert page.status_code == 302
    assert page.headers["location"].startswith(REDIRECT_URI + "?")
    query = query_of(page)
    assert query["error"] == error
    assert query["state"] == "state-123"
    assert "code" not in query


async def test_challenge_without_method_is_refused_as_plain(sandbox: Sandbox) -> None:
    _, challenge = pkce_pair()
    params = authorize_params(None, code_challenge=challenge)
    page = await sandbox.client.get(AUTHORIZE, params=params)
    assert page.status_code == 302
    assert query_of(page)["error"] == "invalid_request"


async def test_duplicated_parameter_is_invalid_request(sandbox: Sandbox) -> None:
    query = urlencode([*authorize_params(None).items(), ("scope", "admin")])
    page = await sandbox.client.get(f"{AUTHORIZE}?{query}")
    assert page.status_code == 302
    assert query_of(page)["error"] == "invalid_request"


# --- decision ------------------------------------------------------------------------------


async def test_deny_redirects_with_access_denied_and_state(sandbox: Sandbox) -> None:
    _, challenge = pkce_pair()
    response = await submit_consent(sandbox.client, authorize_params(challenge), "deny")
    assert response.status_code == 303
    query = query_of(response)
    assert query["error"] == "access_denied"
    assert query["error_description"]
    assert query["state"] == "state-123"
    assert "code" not in query


async def test_allow_redirects_with_code_and_state(sandbox: Sandbox) -> None:
    _, challenge = pkce_pair()
    response = await submit_consent(sandbox.client, authorize_params(challenge), "allow")
    assert response.status_code == 303
    assert response.headers["location"].startswith(REDIRECT_URI + "?")
    query = query_of(response)
    assert query["state"] == "state-123"
    assert len(query["code"]) >= 40


async def test_redirect_uri_keeps_its_own_query(sandbox: Sandbox) -> None:
    code = await get_code(sandbox.client, None, redirect_uri="http://localhost:3000/cb?tenant=acme")
    async with sandbox.sessions() as session:
        stored = (await session.execute(select(SandboxAuthorizationCode))).scalar_one()
    assert stored.redirect_uri == "http://localhost:3000/cb?tenant=acme"
    assert code


async def test_invalid_username_shows_the_page_again_without_a_code(sandbox: Sandbox) -> None:
    response = await submit_consent(
        sandbox.client, authorize_params(None), "allow", username="<bad name>"
    )
    assert response.status_code == 400
    assert "location" not in response.headers
    assert 'role="alert"' in response.text
    assert "&lt;bad name&gt;" in response.text


# --- token endpoint ------------------------------------------------------------------------


async def test_code_exchange_with_pkce_returns_bearer_tokens(sandbox: Sandbox) -> None:
    verifier, challenge = pkce_pair()
    params = authorize_params(challenge)
    consent = await submit_consent(sandbox.client, params, "allow", username="ada.lovelace")
    code = query_of(consent)["code"]

    response = await exchange(sandbox.client, code, verifier)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 60
    assert body["scope"] == "profile email"
    assert body["access_token"] and body["refresh_token"]
    assert body["access_token"] != body["refresh_token"]

    profile = await me(sandbox.client, body["access_token"])
    assert profile.status_code == 200
    assert profile.json() == {
        "id": profile.json()["id"],
        "username": "ada.lovelace",
        "name": "Ada Lovelace",
        "email": "ada.lovelace@sandbox.example",
        "scopes": ["profile", "email"],
    }
    assert profile.json()["id"].startswith("user_")


async def test_same_username_gets_same_user_id_across_grants(sandbox: Sandbox) -> None:
    first = await tokens_for(sandbox.client)
    second = await tokens_for(sandbox.client)
    one = (await me(sandbox.client, first["access_token"])).json()
    two = (await me(sandbox.client, second["access_token"])).json()
    assert one["id"] == two["id"] and one["username"] == "sandbox-user"


async def test_client_secret_post_is_accepted(sandbox: Sandbox) -> None:
    verifier, challenge = pkce_pair()
    code = await get_code(sandbox.client, challenge)
    response = await sandbox.client.post(
        TOKEN,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"


@pytest.mark.parametrize("method", ["basic", "post"])
async def test_wrong_client_secret_is_invalid_client(sandbox: Sandbox, method: str) -> None:
    verifier, challenge = pkce_pair()
    code = await get_code(sandbox.client, challenge)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }
    if method == "basic":
        response = await sandbox.client.post(
            TOKEN, data=data, auth=httpx2.BasicAuth(CLIENT_ID, "wrong")
        )
    else:
        response = await sandbox.client.post(
            TOKEN, data={**data, "client_id": CLIENT_ID, "client_secret": "wrong"}
        )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert "wrong" not in response.text and CLIENT_SECRET not in response.text
    # The code was not burnt by the failed attempt.
    assert (await exchange(sandbox.client, code, verifier)).status_code == 200


async def test_missing_client_authentication_is_invalid_client(sandbox: Sandbox) -> None:
    response = await sandbox.client.post(
        TOKEN, data={"grant_type": "authorization_code", "code": "x", "redirect_uri": REDIRECT_URI}
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_wrong_code_verifier_is_invalid_grant(sandbox: Sandbox) -> None:
    _, challenge = pkce_pair()
    other_verifier, _ = pkce_pair()
    code = await get_code(sandbox.client, challenge)
    response = await exchange(sandbox.client, code, other_verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_missing_code_verifier_is_invalid_request_naming_it(sandbox: Sandbox) -> None:
    _, challenge = pkce_pair()
    code = await get_code(sandbox.client, challenge)
    response = await exchange(sandbox.client, code, None)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "code_verifier" in response.json()["error_description"]


async def test_verifier_for_code_without_challenge_is_refused(sandbox: Sandbox) -> None:
    verifier, _ = pkce_pair()
    code = await get_code(sandbox.client, None)
    response = await exchange(sandbox.client, code, verifier)
    assert response.json()["error"] == "invalid_grant"
    assert (await exchange(sandbox.client, code, None)).status_code == 200


async def test_redirect_uri_must_match_the_authorization_request(sandbox: Sandbox) -> None:
    verifier, challenge = pkce_pair()
    code = await get_code(sandbox.client, challenge)
    response = await exchange(
        sandbox.client, code, verifier, redirect_uri="http://localhost:3000/cb?tenant=acme"
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_expired_code_is_invalid_grant(sandbox: Sandbox) -> None:
    verifier, challenge = pkce_pair()
    code = await get_code(sandbox.client, challenge)
    sandbox.clock.advance(sandbox.config.code_ttl + 1)
    response = await exchange(sandbox.client, code, verifier)
    assert response.json()["error"] == "invalid_grant"


async def test_unknown_code_is_invalid_grant(sandbox: Sandbox) -> None:
    response = await exchange(sandbox.client, "no-such-code", None)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("data", "missing"),
    [
        ({}, "grant_type"),
        ({"grant_type": "authorization_code", "redirect_uri": REDIRECT_URI}, "code"),
        ({"grant_type": "authorization_code", "code": "abc"}, "redirect_uri"),
        ({"grant_type": "refresh_token"}, "refresh_token"),
    ],
)
async def test_missing_parameter_is_invalid_request_naming_it(
    sandbox: Sandbox, data: dict[str, str], missing: str
) -> None:
    response = await sandbox.client.post(
        TOKEN, data=data, auth=httpx2.BasicAuth(CLIENT_ID, CLIENT_SECRET)
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert missing in response.json()["error_description"]


async def test_other_grant_type_is_unsupported(sandbox: Sandbox) -> None:
    response = await sandbox.client.post(
        TOKEN,
        data={"grant_type": "client_credentials"},
        auth=httpx2.BasicAuth(CLIENT_ID, CLIENT_SECRET),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


async def test_reused_code_is_invalid_grant_and_revokes_its_tokens(sandbox: Sandbox) -> None:
    verifier, challenge = pkce_pair()
    code = await get_code(sandbox.client, challenge)
    first = await exchange(sandbox.client, code, verifier)
    assert first.status_code == 200
    tokens = first.json()
    assert (await me(sandbox.client, tokens["access_token"])).status_code == 200

    second = await exchange(sandbox.client, code, verifier)
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    assert (await me(sandbox.client, tokens["access_token"])).status_code == 401
    assert (await refresh(sandbox.client, tokens["refresh_token"])).json()["error"] == (
        "invalid_grant"
    )


async def test_refresh_rotates_both_tokens(sandbox: Sandbox) -> None:
    tokens = await tokens_for(sandbox.client)
    response = await refresh(sandbox.client, tokens["refresh_token"])
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    rotated = response.json()
    assert rotated["token_type"] == "Bearer" and rotated["scope"] == "profile email"
    assert rotated["access_token"] != tokens["access_token"]
    assert rotated["refresh_token"] != tokens["refresh_token"]
    assert (await me(sandbox.client, rotated["access_token"])).status_code == 200
    again = await refresh(sandbox.client, rotated["refresh_token"])
    assert again.status_code == 200


async def test_reused_refresh_token_revokes_the_whole_grant(sandbox: Sandbox) -> None:
    tokens = await tokens_for(sandbox.client)
    rotated = (await refresh(sandbox.client, tokens["refresh_token"])).json()

    replay = await refresh(sandbox.client, tokens["refresh_token"])
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert (await refresh(sandbox.client, rotated["refresh_token"])).json()["error"] == (
        "invalid_grant"
    )
    assert (await me(sandbox.client, rotated["access_token"])).status_code == 401


async def test_refresh_can_narrow_but_not_widen_scope(sandbox: Sandbox) -> None:
    tokens = await tokens_for(sandbox.client)
    auth = httpx2.BasicAuth(CLIENT_ID, CLIENT_SECRET)
    wider = await sandbox.client.post(
        TOKEN,
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "scope": "admin",
        },
        auth=auth,
    )
    assert wider.json()["error"] == "invalid_scope"
    narrower = await sandbox.client.post(
        TOKEN,
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "scope": "email",
        },
        auth=auth,
    )
    assert narrower.status_code == 200 and narrower.json()["scope"] == "email"
    # The rotated refresh token keeps the full grant.
    full = await refresh(sandbox.client, narrower.json()["refresh_token"])
    assert full.json()["scope"] == "profile email"


async def test_expired_refresh_token_is_invalid_grant(sandbox: Sandbox) -> None:
    tokens = await tokens_for(sandbox.client)
    sandbox.clock.advance(sandbox.config.refresh_token_ttl + 1)
    assert (await refresh(sandbox.client, tokens["refresh_token"])).json()["error"] == (
        "invalid_grant"
    )


async def test_unknown_refresh_token_is_invalid_grant(sandbox: Sandbox) -> None:
    assert (await refresh(sandbox.client, "sbx_rt_unknown")).json()["error"] == "invalid_grant"


async def test_codes_and_tokens_are_stored_only_as_sha256(sandbox: Sandbox) -> None:
    verifier, challenge = pkce_pair()
    code = await get_code(sandbox.client, challenge)
    tokens = (await exchange(sandbox.client, code, verifier)).json()
    secrets = [code, tokens["access_token"], tokens["refresh_token"]]
    async with sandbox.sessions() as session:
        codes = (await session.execute(select(SandboxAuthorizationCode))).scalars().all()
        stored = (await session.execute(select(SandboxToken))).scalars().all()
    hashes = {row.code_hash for row in codes} | {row.token_hash for row in stored}
    assert hashes == {hashlib.sha256(s.encode()).hexdigest() for s in secrets}
    database = Path(sandbox.db_url.removeprefix("sqlite+aiosqlite:///")).read_bytes()
    for secret in secrets:
        assert secret.encode() not in database


# --- resource API --------------------------------------------------------------------------


async def test_expired_access_token_is_rejected_at_api_me(sandbox: Sandbox) -> None:
    tokens = await tokens_for(sandbox.client)
    sandbox.clock.advance(sandbox.config.access_token_ttl - 1)
    assert (await me(sandbox.client, tokens["access_token"])).status_code == 200
    sandbox.clock.advance(2)

    response = await me(sandbox.client, tokens["access_token"])
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.headers["www-authenticate"].startswith("Bearer ")
    assert response.json()["error"] == "invalid_token"
    # The refresh token still works and gives a fresh access token.
    fresh = (await refresh(sandbox.client, tokens["refresh_token"])).json()
    assert (await me(sandbox.client, fresh["access_token"])).status_code == 200


@pytest.mark.parametrize("header", [None, "Basic abc", "Bearer ", "Bearer sbx_at_forged"])
async def test_missing_or_unknown_bearer_token_is_401(sandbox: Sandbox, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = await sandbox.client.get(ME, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"] == "invalid_token"


async def test_echo_returns_the_request_for_proxy_tests(sandbox: Sandbox) -> None:
    tokens = await tokens_for(sandbox.client)
    response = await sandbox.client.post(
        "/sandbox/api/echo",
        params={"a": ["1", "2"]},
        json={"hello": "world"},
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert response.status_code == 200
    assert response.json() == {
        "method": "POST",
        "query": {"a": ["1", "2"]},
        "contentType": "application/json",
        "body": {"hello": "world"},
        "username": "sandbox-user",
    }
    assert (await sandbox.client.post("/sandbox/api/echo")).status_code == 401


# --- revocation ----------------------------------------------------------------------------


async def revoke(
    client: httpx2.AsyncClient, token: str, hint: str | None = None
) -> httpx2.Response:
    data = {"token": token} | ({"token_type_hint": hint} if hint else {})
    return await client.post(REVOKE, data=data, auth=httpx2.BasicAuth(CLIENT_ID, CLIENT_SECRET))


async def test_revoking_an_access_token_leaves_the_refresh_token(sandbox: Sandbox) -> None:
    tokens = await tokens_for(sandbox.client)
    response = await revoke(sandbox.client, tokens["access_token"], "access_token")
    assert response.status_code == 200
    assert (await me(sandbox.client, tokens["access_token"])).status_code == 401
    assert (await refresh(sandbox.client, tokens["refresh_token"])).status_code == 200


async def test_revoking_a_refresh_token_revokes_its_family(sandbox: Sandbox) -> None:
    tokens = await tokens_for(sandbox.client)
    response = await revoke(sandbox.client, tokens["refresh_token"])  # no hint
    assert response.status_code == 200
    assert (await me(sandbox.client, tokens["access_token"])).status_code == 401
    assert (await refresh(sandbox.client, tokens["refresh_token"])).json()["error"] == (
        "invalid_grant"
    )


async def test_revoking_an_unknown_token_is_200(sandbox: Sandbox) -> None:
    assert (await revoke(sandbox.client, "never-issued", "refresh_token")).status_code == 200


async def test_revocation_requires_client_authentication(sandbox: Sandbox) -> None:
    tokens = await tokens_for(sandbox.client)
    response = await sandbox.client.post(REVOKE, data={"token": tokens["access_token"]})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert (await me(sandbox.client, tokens["access_token"])).status_code == 200


async def test_revocation_without_token_is_invalid_request(sandbox: Sandbox) -> None:
    response = await sandbox.client.post(REVOKE, auth=httpx2.BasicAuth(CLIENT_ID, CLIENT_SECRET))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


# --- concurrency: several processes share one database ---------------------------------------


async def test_concurrent_redemption_of_one_code_has_exactly_one_winner(sandbox: Sandbox) -> None:
    verifier, challenge = pkce_pair()
    code = await get_code(sandbox.client, challenge)
    async with await sandbox.second_process() as other:
        results = await asyncio.gather(
            exchange(sandbox.client, code, verifier), exchange(other, code, verifier)
        )
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 400]
    loser = next(r for r in results if r.status_code == 400)
    assert loser.json()["error"] == "invalid_grant"
    # The second redemption counts as a replay: the winner's tokens are revoked too.
    winner = next(r for r in results if r.status_code == 200).json()
    assert (await me(sandbox.client, winner["access_token"])).status_code == 401


async def test_concurrent_refresh_with_one_token_has_exactly_one_winner(sandbox: Sandbox) -> None:
    tokens = await tokens_for(sandbox.client)
    async with await sandbox.second_process() as other:
        results = await asyncio.gather(
            refresh(sandbox.client, tokens["refresh_token"]),
            refresh(other, tokens["refresh_token"]),
        )
    assert sorted(r.status_code for r in results) == [200, 400]


# --- as the alloy server sees it: Authlib's OAuth 2.0 client -------------------------------------


async def test_authlib_client_runs_code_refresh_and_revoke(sandbox: Sandbox) -> None:
    base = "http://sandbox.test/sandbox"
    async with AsyncOAuth2Client(
        CLIENT_ID,
        CLIENT_SECRET,
        scope="profile email",
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
        leeway=0,  # the sandbox's 60 s tokens would count as expired with Authlib's default
        transport=httpx2.ASGITransport(app=sandbox.app),
    ) as oauth:
        verifier = generate_token(48)
        url, state = oauth.create_authorization_url(
            f"{base}/oauth/authorize", code_verifier=verifier
        )
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        decision = await submit_consent(sandbox.client, query, "allow")
        assert query_of(decision)["state"] == state

        token = await oauth.fetch_token(
            f"{base}/oauth/token",
            authorization_response=decision.headers["location"],
            code_verifier=verifier,
        )
        assert token["token_type"] == "Bearer"
        profile = await oauth.get(f"{base}/api/me")
        assert profile.json()["username"] == "sandbox-user"

        refreshed = await oauth.refresh_token(
            f"{base}/oauth/token", refresh_token=token["refresh_token"]
        )
        assert refreshed["refresh_token"] != token["refresh_token"]
        await oauth.revoke_token(
            f"{base}/oauth/revoke", refreshed["refresh_token"], token_type_hint="refresh_token"
        )
        assert (await me(sandbox.client, refreshed["access_token"])).status_code == 401


def test_router_keeps_openapi_generation_working() -> None:
    engine = create_async_engine("sqlite+aiosqlite://")
    config = SandboxConfig(CLIENT_ID, CLIENT_SECRET, (REDIRECT_URI,))
    app = make_app(async_sessionmaker(engine), config)
    paths = app.openapi()["paths"]  # would warn (an error here) on duplicate operation ids
    assert not any(path.startswith("/sandbox") for path in paths)


def test_config_repr_hides_the_client_secret() -> None:
    config = SandboxConfig(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uris=[REDIRECT_URI],  # type: ignore[arg-type]
    )
    assert CLIENT_SECRET not in repr(config)
    assert config.redirect_uris == (REDIRECT_URI,)


@pytest.mark.parametrize(
    "uri", ["ftp://x/cb", "http://localhost:3000/cb#frag", "http://bad;host/cb", "/relative"]
)
def test_config_refuses_unusable_redirect_uris(uri: str) -> None:
    with pytest.raises(ValueError, match="redirect URI"):
        SandboxConfig(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uris=(uri,))

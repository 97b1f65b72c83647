"""The test harness itself: oidc-provider, HttpBrowser, the bad provider and the runners work."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI

from tests.support.bad_provider import BadProvider, start_bad_provider
from tests.support.browser import HttpBrowser, query_params
from tests.support.oidc import OidcProvider, provider_yaml_entry, start_oidc_provider
from tests.support.servers import free_port, run_asgi, run_process

ACCESS_TOKEN_TTL = 120


@pytest.fixture(scope="module")
def redirect_uri() -> str:
    # Nothing listens here: HttpBrowser stops before requesting it.
    return f"http://127.0.0.1:{free_port()}/callback"


@pytest.fixture(scope="module")
def oidc(redirect_uri: str) -> Iterator[OidcProvider]:
    with start_oidc_provider(
        redirect_uris=[redirect_uri], access_token_ttl=ACCESS_TOKEN_TTL
    ) as provider:
        yield provider


@pytest.fixture
async def browser() -> AsyncIterator[HttpBrowser]:
    async with HttpBrowser() as b:
        yield b


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_url(
    oidc: OidcProvider,
    redirect_uri: str,
    *,
    challenge: str | None,
    state: str,
    scope: str = "openid email offline_access",
    prompt: str | None = "consent",
) -> str:
    params = {
        "response_type": "code",
        "client_id": oidc.client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
    }
    if challenge is not None:
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    if prompt is not None:
        params["prompt"] = prompt
    return str(httpx2.URL(oidc.authorization_url).copy_merge_params(params))


async def exchange_code(
    oidc: OidcProvider, redirect_uri: str, code: str, verifier: str
) -> httpx2.Response:
    async with httpx2.AsyncClient() as client:
        return await client.post(
            oidc.token_url,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
            auth=(oidc.client_id, oidc.client_secret),
        )


async def refresh(oidc: OidcProvider, refresh_token: str) -> httpx2.Response:
    async with httpx2.AsyncClient() as client:
        return await client.post(
            oidc.token_url,
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            auth=(oidc.client_id, oidc.client_secret),
        )


async def full_flow(
    oidc: OidcProvider, redirect_uri: str, browser: HttpBrowser, login: str = "alice"
) -> dict[str, Any]:
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(8)
    url = authorize_url(oidc, redirect_uri, challenge=challenge, state=state)
    landed = await browser.oidc_login_and_consent(url, stop_at=redirect_uri, login=login)
    params = query_params(landed)
    assert params["state"] == state
    response = await exchange_code(oidc, redirect_uri, params["code"], verifier)
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


async def test_authorization_code_flow_with_pkce_yields_tokens_for_the_login(
    oidc: OidcProvider, redirect_uri: str, browser: HttpBrowser
) -> None:
    tokens = await full_flow(oidc, redirect_uri, browser, login="carol")

    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == ACCESS_TOKEN_TTL
    assert tokens["refresh_token"]
    assert set(tokens["scope"].split()) == {"openid", "email", "offline_access"}
    async with httpx2.AsyncClient() as client:
        me = await client.get(
            oidc.userinfo_url, headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
    assert me.status_code == 200
    assert me.json()["sub"] == "carol"
    assert me.json()["email"] == "carol@example.test"


async def test_second_authorization_in_same_browser_skips_login_but_asks_consent(
    oidc: OidcProvider, redirect_uri: str, browser: HttpBrowser
) -> None:
    await full_flow(oidc, redirect_uri, browser, login="dave")
    _, challenge = pkce_pair()
    first = await browser.goto(
        authorize_url(oidc, redirect_uri, challenge=challenge, state="s2"), stop_at=redirect_uri
    )
    assert isinstance(first, httpx2.Response)
    assert 'value="consent"' in first.text

    tokens = await full_flow(oidc, redirect_uri, browser, login="ignored-session-user")
    async with httpx2.AsyncClient() as client:
        me = await client.get(
            oidc.userinfo_url, headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
    assert me.json()["sub"] == "dave"


async def test_pkce_is_required_at_the_authorize_endpoint(
    oidc: OidcProvider, redirect_uri: str, browser: HttpBrowser
) -> None:
    url = authorize_url(oidc, redirect_uri, challenge=None, state="nopkce")
    landed = await browser.goto(url, stop_at=redirect_uri)

    assert isinstance(landed, httpx2.URL)
    params = query_params(landed)
    assert params["error"] == "invalid_request"
    assert "PKCE" in params["error_description"]


async def test_code_exchange_with_wrong_verifier_is_invalid_grant(
    oidc: OidcProvider, redirect_uri: str, browser: HttpBrowser
) -> None:
    _, challenge = pkce_pair()
    other_verifier, _ = pkce_pair()
    url = authorize_url(oidc, redirect_uri, challenge=challenge, state="s")
    landed = await browser.oidc_login_and_consent(url, stop_at=redirect_uri)

    response = await exchange_code(oidc, redirect_uri, query_params(landed)["code"], other_verifier)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_refresh_rotates_and_reusing_the_old_refresh_token_is_invalid_grant(
    oidc: OidcProvider, redirect_uri: str, browser: HttpBrowser
) -> None:
    tokens = await full_flow(oidc, redirect_uri, browser)

    first = await refresh(oidc, tokens["refresh_token"])
    assert first.status_code == 200, first.text
    rotated = first.json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    assert rotated["access_token"] != tokens["access_token"]

    reused = await refresh(oidc, tokens["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"


async def test_no_refresh_token_without_prompt_consent(
    oidc: OidcProvider, redirect_uri: str, browser: HttpBrowser
) -> None:
    verifier, challenge = pkce_pair()
    url = authorize_url(oidc, redirect_uri, challenge=challenge, state="s", prompt=None)
    landed = await browser.oidc_login_and_consent(url, stop_at=redirect_uri)
    response = await exchange_code(oidc, redirect_uri, query_params(landed)["code"], verifier)

    assert response.status_code == 200
    assert "access_token" in response.json()
    assert "refresh_token" not in response.json()


async def test_stats_count_token_requests_revocations_and_reset(
    oidc: OidcProvider, redirect_uri: str, browser: HttpBrowser
) -> None:
    await oidc.areset_stats()
    tokens = await full_flow(oidc, redirect_uri, browser)
    await refresh(oidc, tokens["refresh_token"])
    await refresh(oidc, tokens["refresh_token"])  # reused: invalid_grant
    async with httpx2.AsyncClient() as client:
        revoked = await client.post(
            oidc.revocation_url,
            data={"token": tokens["access_token"], "token_type_hint": "access_token"},
            auth=(oidc.client_id, oidc.client_secret),
        )
    assert revoked.status_code == 200

    stats = await oidc.astats()
    assert stats["token_requests"] == {"authorization_code": 1, "refresh_token": 2}
    assert stats["token_success"] == {"authorization_code": 1, "refresh_token": 1}
    assert stats["token_errors"] == {"refresh_token": 1}
    assert stats["token_error_codes"] == {"invalid_grant": 1}
    assert stats["token_client_auth"] == {"basic": 3}
    assert stats["revocations"] == 1

    oidc.reset_stats()
    assert oidc.stats()["token_requests"] == {}
    assert oidc.stats()["revocations"] == 0


async def test_oidc_deny_makes_the_provider_redirect_with_access_denied(
    oidc: OidcProvider, redirect_uri: str, browser: HttpBrowser
) -> None:
    _, challenge = pkce_pair()
    url = authorize_url(oidc, redirect_uri, challenge=challenge, state="deny-me")

    landed = await browser.oidc_deny(url, stop_at=redirect_uri)

    params = query_params(landed)
    assert params["error"] == "access_denied"
    assert params["state"] == "deny-me"
    assert "code" not in params


def test_provider_yaml_entry_points_at_the_running_provider(oidc: OidcProvider) -> None:
    entry = provider_yaml_entry(oidc, connector_id="myoidc")["myoidc"]

    assert entry["token_url"] == f"{oidc.issuer}/token"
    assert entry["authorization_url"] == f"{oidc.issuer}/auth"
    assert entry["revocation_url"] == oidc.revocation_url
    assert "offline_access" in entry["scopes"]
    assert entry["authorize_params"] == {"prompt": "consent"}
    assert oidc.client_secret not in repr(oidc)


# --- the bad provider -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_server() -> Iterator[BadProvider]:
    with start_bad_provider() as provider:
        yield provider


@pytest.fixture
def bad(bad_server: BadProvider) -> BadProvider:
    bad_server.token_mode = "ok"
    bad_server.authorize_error = None
    bad_server.authorize_state_override = None
    bad_server.token_requests.clear()
    bad_server.authorize_requests.clear()
    return bad_server


async def test_bad_provider_authorize_redirects_with_code_and_state(
    bad: BadProvider, browser: HttpBrowser
) -> None:
    url = httpx2.URL(bad.authorization_url).copy_merge_params(
        {"redirect_uri": "http://127.0.0.1:9/cb", "state": "st", "client_id": bad.client_id}
    )
    landed = await browser.goto(url, stop_at="http://127.0.0.1:9/cb")

    assert isinstance(landed, httpx2.URL)
    assert query_params(landed)["state"] == "st"
    assert query_params(landed)["code"] == bad.issued_codes[-1]
    assert bad.authorize_requests[-1]["client_id"] == bad.client_id


async def test_bad_provider_authorize_error_redirects_with_error(
    bad: BadProvider, browser: HttpBrowser
) -> None:
    bad.authorize_error = "server_error"
    url = httpx2.URL(bad.authorization_url).copy_merge_params(
        {"redirect_uri": "http://127.0.0.1:9/cb", "state": "st"}
    )
    landed = await browser.goto(url, stop_at="http://127.0.0.1:9/cb")

    assert isinstance(landed, httpx2.URL)
    params = query_params(landed)
    assert params["error"] == "server_error"
    assert params["state"] == "st"
    assert "code" not in params


@pytest.mark.parametrize(
    ("mode", "status", "content_type", "has_access_token", "has_error"),
    [
        ("ok", 200, "application/json", True, False),
        ("400", 400, "application/json", False, True),
        ("500", 500, "text/plain", False, False),
        ("html", 200, "text/html", False, False),
        ("no_access_token", 200, "application/json", False, False),
        ("error_200", 200, "application/json", False, True),
    ],
)
async def test_bad_provider_token_modes(
    bad: BadProvider,
    mode: Any,
    status: int,
    content_type: str,
    has_access_token: bool,
    has_error: bool,
) -> None:
    bad.token_mode = mode
    async with httpx2.AsyncClient() as client:
        response = await client.post(
            bad.token_url,
            data={"grant_type": "authorization_code", "code": "c"},
            auth=(bad.client_id, bad.client_secret),
        )

    assert response.status_code == status
    assert response.headers["content-type"].startswith(content_type)
    body = response.json() if content_type == "application/json" else {}
    assert ("access_token" in body) is has_access_token
    assert ("error" in body) is has_error
    recorded = bad.token_requests[-1]
    assert recorded.grant_type == "authorization_code"
    assert recorded.basic_auth == (bad.client_id, bad.client_secret)
    assert bad.client_secret not in repr(recorded)


async def test_bad_provider_slow_mode_outlasts_a_client_timeout(bad: BadProvider) -> None:
    bad.token_mode = "slow"
    bad.slow_seconds = 3
    async with httpx2.AsyncClient(timeout=0.3) as client:
        with pytest.raises(httpx2.ReadTimeout):
            await client.post(bad.token_url, data={"grant_type": "refresh_token"})
    assert bad.token_requests[-1].grant_type == "refresh_token"


# --- runners ----------------------------------------------------------------------------------


def test_run_asgi_runs_lifespan_and_serves_on_loopback() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    with run_asgi(app) as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        assert httpx2.get(f"{base_url}/ping").json() == {"pong": "yes"}
        assert events == ["startup"]
    assert events == ["startup", "shutdown"]


def test_run_process_surfaces_stderr_when_it_dies_before_ready() -> None:
    cmd = [sys.executable, "-c", "import sys; sys.stderr.write('boom-detail'); sys.exit(3)"]
    with (
        pytest.raises(RuntimeError, match="boom-detail") as info,
        run_process(cmd, ready_line_prefix="READY", timeout=10),
    ):
        pass
    assert "exited with code 3" in str(info.value)


def test_run_process_yields_the_ready_line() -> None:
    cmd = [sys.executable, "-c", "print('READY hello', flush=True); import time; time.sleep(30)"]
    with run_process(cmd, ready_line_prefix="READY", timeout=10) as proc:
        assert proc.ready_line == "READY hello"
        assert proc.process.poll() is None
    assert proc.process.poll() is not None

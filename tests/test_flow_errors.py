"""Bad input at every step of the flow: each answered by a clear error, nothing stored."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest

from tests.conftest import Alloy
from tests.support.bad_provider import BadProvider, start_bad_provider
from tests.support.browser import HttpBrowser, query_params
from tests.support.servers import free_port

StartAlloy = Callable[..., contextlib.AbstractContextManager[Alloy]]
APP = "http://localhost:3999/oauth/callback"


@contextlib.contextmanager
def alloy_with_bad(start_alloy: StartAlloy,
                   **overrides: Any) -> Iterator[tuple[Alloy, BadProvider]]:
    with start_bad_provider() as bad:
        providers = {"bad": {"name": "Bad provider", "authorization_url": bad.authorization_url,
                             "token_url": bad.token_url, "revocation_url": bad.revocation_url,
                             "api_base_url": bad.base_url}}
        env = {"ALLOY_CONNECTOR_BAD_CLIENT_ID": bad.client_id,
               "ALLOY_CONNECTOR_BAD_CLIENT_SECRET": bad.client_secret}
        with start_alloy(providers=providers, connector_env=env, **overrides) as alloy:
            yield alloy, bad


async def initiate(api: httpx2.AsyncClient, connector: str = "bad",
                   **body: Any) -> httpx2.Response:
    payload = {"credentialType": "oauth2", "redirectUri": APP, **body}
    return await api.post(f"/connectors/{connector}/credentials", json=payload)


def assert_error(response: httpx2.Response, status: int, code: str,
                 starts: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and len(body["message"]) > 10
    if starts:
        assert body["message"].startswith(starts), body["message"]


async def run_to_app(alloy: Alloy, browser: HttpBrowser, api: httpx2.AsyncClient,
                     **body: Any) -> dict[str, Any]:
    """Initiate, open oauthUrl, let the bad provider answer; the query the app receives."""
    started = (await initiate(api, **body)).json()
    back = await browser.goto(started["oauthUrl"], stop_at=APP.split("/oauth")[0])
    assert isinstance(back, httpx2.URL), back
    return query_params(back)


# --- step 1: initiate -------------------------------------------------------------------------

async def test_unknown_connector_is_404_and_stores_nothing(start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        async with alloy.api() as api:
            resp = await initiate(api, connector="no-such-connector")
        assert_error(resp, 404, "connector_not_found", "Connector not found")
        assert alloy.rows("oauth_flows") == 0


@pytest.mark.parametrize("body", [{"credentialType": None}, {"credentialType": ""}])
async def test_missing_credential_type_is_rejected(start_alloy: StartAlloy,
                                                   body: dict[str, Any]) -> None:
    with start_alloy() as alloy:
        async with alloy.api() as api:
            resp = await api.post("/connectors/sandbox/credentials",
                                  json={"redirectUri": APP, **body})
        assert_error(resp, 400, "invalid_credential_type")
        assert "credentialType" in resp.json()["message"]
        assert alloy.rows("oauth_flows") == 0


async def test_unknown_credential_type_is_rejected(start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        async with alloy.api() as api:
            resp = await initiate(api, connector="sandbox", credentialType="magic")
        assert_error(resp, 400, "invalid_credential_type")
        assert "magic" in resp.json()["message"]
        assert alloy.rows("oauth_flows") == 0


async def test_authentication_type_is_a_synonym(start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        async with alloy.api() as api:
            resp = await api.post("/connectors/sandbox/credentials",
                                  json={"authenticationType": "oauth2", "redirectUri": APP})
        assert resp.status_code == 200, resp.text
        assert resp.json()["credentialId"].startswith("cred_")


async def test_body_connector_id_must_match_the_path(start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        async with alloy.api() as api:
            resp = await initiate(api, connector="sandbox", connectorId="notion")
        assert_error(resp, 400, "connector_mismatch")
        assert alloy.rows("oauth_flows") == 0


async def test_unconfigured_connector_says_how_to_configure_it(start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        async with alloy.api() as api:
            resp = await initiate(api, connector="notion")
        assert_error(resp, 400, "connector_not_configured")
        assert "ALLOY_CONNECTOR_NOTION_CLIENT_ID" in resp.json()["message"]
        assert alloy.rows("oauth_flows") == 0


@pytest.mark.parametrize("uri", [
    "javascript:alert(1)",
    "ftp://localhost/callback",
    "data:text/html,hi",
    "http://evil.example.com/callback",
    "https://user:pass@example.com/cb",
    "/relative/callback",
    "",
])
async def test_disallowed_redirect_uri_is_rejected_in_development(start_alloy: StartAlloy,
                                                                  uri: str) -> None:
    with start_alloy() as alloy:
        async with alloy.api() as api:
            resp = await initiate(api, connector="sandbox", redirectUri=uri)
        assert_error(resp, 400, "invalid_redirect_uri", "Invalid redirect_uri")
        assert alloy.rows("oauth_flows") == 0




async def test_redirect_uri_policy_in_production(start_alloy: StartAlloy) -> None:
    port = free_port()
    with start_bad_provider() as bad:
        providers = {"bad": {"name": "Bad", "authorization_url": f"https://{bad.base_url[7:]}/a",
                             "token_url": f"https://{bad.base_url[7:]}/t"}}
        env = {"ALLOY_CONNECTOR_BAD_CLIENT_ID": "x", "ALLOY_CONNECTOR_BAD_CLIENT_SECRET": "y"}
        with start_alloy(providers=providers, connector_env=env, env="production",
                         allowed_redirect_uris="https://app.example.com/oauth/*,"
                                               "http://localhost:3000/cb",
                         public_url=f"https://127.0.0.1:{port}") as alloy:
            base = alloy.base_url.replace("https://", "http://")
            async with httpx2.AsyncClient(base_url=base, headers=alloy.headers) as api:
                for uri in ("http://localhost:3000/cb", "https://other.example.com/cb",
                            "http://app.example.com/oauth/cb"):
                    resp = await initiate(api, redirectUri=uri)
                    assert_error(resp, 400, "invalid_redirect_uri", "Invalid redirect_uri")
                assert alloy.rows("oauth_flows") == 0
                ok = await initiate(api, redirectUri="https://app.example.com/oauth/callback")
                assert ok.status_code == 200, ok.text
                # The account's own allow-list works too.
                put = await api.put("/account/redirect-uris",
                                    json={"redirectUris": ["https://mine.example.com/cb"]})
                assert put.status_code == 200, put.text
                mine = await initiate(api, redirectUri="https://mine.example.com/cb")
                assert mine.status_code == 200, mine.text
                # ... and the sandbox is off in production.
                assert (await initiate(api, connector="sandbox")).status_code == 404


# --- API keys and versions ---------------------------------------------------------------------

@pytest.mark.parametrize("headers,code", [
    ({}, "missing_api_key"),
    ({"Authorization": "Bearer ak_wrong"}, "invalid_api_key"),
    ({"Authorization": "Basic abc"}, "invalid_api_key"),
    ({"Authorization": "Bearer"}, "invalid_api_key"),
])
async def test_no_or_wrong_key_is_401(start_alloy: StartAlloy, headers: dict[str, str],
                                      code: str) -> None:
    with start_alloy() as alloy:
        async with httpx2.AsyncClient(base_url=alloy.base_url, headers=headers) as api:
            resp = await initiate(api, connector="sandbox")
        assert_error(resp, 401, code)
        assert alloy.rows("oauth_flows") == 0


async def test_bearer_scheme_is_case_insensitive(start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        async with httpx2.AsyncClient(base_url=alloy.base_url,
                                      headers={"authorization": f"bearer {alloy.api_key}"}) as api:
            assert (await api.get("/connections")).status_code == 200


async def test_unknown_api_version_is_rejected_and_names_supported_ones(
        start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        async with alloy.api() as api:
            resp = await api.post("/connectors/sandbox/credentials",
                                  json={"credentialType": "oauth2", "redirectUri": APP},
                                  headers={"x-api-version": "2019-01"})
            assert_error(resp, 400, "unsupported_api_version")
            assert "2025-09" in resp.json()["message"] and "2023-12" in resp.json()["message"]
            assert alloy.rows("oauth_flows") == 0
            for version in ("2025-09", "2025-06", "2024-02", "2023-12"):
                ok = await api.get("/connections", headers={"x-api-version": version})
                assert ok.status_code == 200 and ok.headers["x-api-version"] == version
        async with httpx2.AsyncClient(base_url=alloy.base_url,
                                      headers={"Authorization": f"Bearer {alloy.api_key}"}) as api:
            assert (await api.get("/connections")).headers["x-api-version"] == "2025-09"


# --- step 2: the oauthUrl link -----------------------------------------------------------------

async def test_tampered_link_token_is_refused(start_alloy: StartAlloy) -> None:
    with alloy_with_bad(start_alloy) as (alloy, bad):
        async with alloy.api() as api, HttpBrowser() as browser:
            url = (await initiate(api)).json()["oauthUrl"]
            tampered = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
            page = await browser.goto(tampered, stop_at=bad.base_url)
            assert isinstance(page, httpx2.Response) and page.status_code == 400
            assert "not valid" in page.text
            assert bad.authorize_requests == []
            # the real link still works afterwards
            assert isinstance(await browser.goto(url, stop_at=bad.base_url), httpx2.URL)


async def test_reused_link_token_is_refused(start_alloy: StartAlloy) -> None:
    with alloy_with_bad(start_alloy) as (alloy, bad):
        async with alloy.api() as api, HttpBrowser() as browser:
            url = (await initiate(api)).json()["oauthUrl"]
            assert isinstance(await browser.goto(url, stop_at=bad.base_url), httpx2.URL)
            again = await browser.goto(url, stop_at=bad.base_url)
            assert isinstance(again, httpx2.Response) and again.status_code == 400
            assert "expired" in again.text


async def test_expired_link_token_is_refused(start_alloy: StartAlloy) -> None:
    with alloy_with_bad(start_alloy, flow_ttl=1) as (alloy, bad):
        async with alloy.api() as api, HttpBrowser() as browser:
            url = (await initiate(api)).json()["oauthUrl"]
            await asyncio.sleep(1.2)
            page = await browser.goto(url, stop_at=bad.base_url)
            assert isinstance(page, httpx2.Response) and page.status_code == 400
            assert bad.authorize_requests == []


async def test_authorize_redirect_carries_pkce_state_and_our_callback(
        start_alloy: StartAlloy) -> None:
    with alloy_with_bad(start_alloy) as (alloy, bad):
        async with alloy.api() as api, HttpBrowser() as browser:
            url = (await initiate(api)).json()["oauthUrl"]
            at = await browser.goto(url, stop_at=bad.base_url)
            params = query_params(at)  # type: ignore[arg-type]
            assert params["client_id"] == bad.client_id
            assert params["redirect_uri"] == f"{alloy.base_url}/api/strategy/callback"
            assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
            assert len(params["state"]) >= 32 and params["response_type"] == "code"


# --- step 3: the provider's callback -----------------------------------------------------------

async def test_provider_access_denied_reaches_the_app_and_stores_nothing(
        start_alloy: StartAlloy) -> None:
    with alloy_with_bad(start_alloy) as (alloy, bad):
        bad.authorize_error = "access_denied"
        async with alloy.api() as api, HttpBrowser() as browser:
            query = await run_to_app(alloy, browser, api, state="s-123")
            assert query["error"] == "access_denied" and query["state"] == "s-123"
            assert query["error_description"]
            assert "code" not in query
            assert (await api.get("/connections")).json()["connections"] == []
        assert alloy.rows("connections") == 0 and bad.token_requests == []


@pytest.mark.parametrize("mode", ["400", "500", "html", "no_access_token", "error_200"])
async def test_token_endpoint_failure_reaches_the_app_as_an_error(start_alloy: StartAlloy,
                                                                  mode: str) -> None:
    with alloy_with_bad(start_alloy) as (alloy, bad):
        bad.token_mode = mode  # type: ignore[assignment]
        async with alloy.api() as api, HttpBrowser() as browser:
            query = await run_to_app(alloy, browser, api, state="s-1")
            assert query["error"] == "provider_error" and query["state"] == "s-1"
            assert "token endpoint" in query["error_description"]
            assert "code" not in query
        assert alloy.rows("connections") == 0
        assert len(bad.token_requests) == 1


async def test_token_request_uses_basic_auth_and_sends_the_pkce_verifier(
        start_alloy: StartAlloy) -> None:
    with alloy_with_bad(start_alloy) as (alloy, bad):
        async with alloy.api() as api, HttpBrowser() as browser:
            query = await run_to_app(alloy, browser, api)
        assert "code" in query
        req = bad.token_requests[0]
        assert req.basic_auth == (bad.client_id, bad.client_secret)
        assert "client_secret" not in req.form
        assert req.grant_type == "authorization_code" and len(req.form["code_verifier"]) >= 43


async def test_client_secret_post_puts_credentials_in_the_body(start_alloy: StartAlloy) -> None:
    with start_bad_provider() as bad:
        providers = {"bad": {"name": "Bad", "authorization_url": bad.authorization_url,
                             "token_url": bad.token_url, "token_auth_method": "client_secret_post"}}
        env = {"ALLOY_CONNECTOR_BAD_CLIENT_ID": bad.client_id,
               "ALLOY_CONNECTOR_BAD_CLIENT_SECRET": bad.client_secret}
        with start_alloy(providers=providers, connector_env=env) as alloy:
            async with alloy.api() as api, HttpBrowser() as browser:
                assert "code" in await run_to_app(alloy, browser, api)
        req = bad.token_requests[0]
        assert req.basic_auth is None
        assert req.form["client_id"] == bad.client_id
        assert req.form["client_secret"] == bad.client_secret


async def test_tampered_or_replayed_provider_state_is_refused(start_alloy: StartAlloy) -> None:
    with alloy_with_bad(start_alloy) as (alloy, bad):
        async with alloy.api() as api, HttpBrowser() as browser:
            url = (await initiate(api)).json()["oauthUrl"]
            at_provider = await browser.goto(url, stop_at=bad.base_url)
            callback = await browser.goto(at_provider, stop_at=alloy.base_url)
            assert isinstance(callback, httpx2.URL)
            params = query_params(callback)
            forged = callback.copy_set_param("state", params["state"][:-2] + "xx")
            page = await browser.goto(forged, stop_at="http://localhost:3999")
            assert isinstance(page, httpx2.Response) and page.status_code == 400
            assert alloy.rows("connections") == 0 and bad.token_requests == []
            # the genuine callback completes once ...
            done = await browser.goto(callback, stop_at="http://localhost:3999")
            assert "code" in query_params(done)  # type: ignore[arg-type]
            # ... and a replay of it is refused, storing nothing more.
            replay = await browser.goto(callback, stop_at="http://localhost:3999")
            assert isinstance(replay, httpx2.Response) and replay.status_code == 400
            assert alloy.rows("connections") == 1 and len(bad.token_requests) == 1


async def test_callback_without_state_is_refused(start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        async with HttpBrowser() as browser:
            page = await browser.goto(f"{alloy.base_url}/api/strategy/callback?code=abc",
                                      stop_at="http://never.invalid")
        assert isinstance(page, httpx2.Response) and page.status_code == 400
        assert page.headers["content-security-policy"].startswith("default-src 'none'")


# --- step 4: the code exchange -----------------------------------------------------------------

async def exchange(api: httpx2.AsyncClient, code: str, state: str | None,
                   connector: str = "bad") -> httpx2.Response:
    body = {"code": code} if state is None else {"code": code, "state": state}
    return await api.post(f"/connectors/{connector}/credentials/callback", json=body)


async def test_code_exchange_rejects_tampered_wrong_state_other_connector_and_reuse(
        start_alloy: StartAlloy) -> None:
    with alloy_with_bad(start_alloy) as (alloy, _):
        async with alloy.api() as api, HttpBrowser() as browser:
            query = await run_to_app(alloy, browser, api, state="app-state")
            code, state = query["code"], query["state"]
            for bad_code, bad_state, connector in (
                (code[:-2] + "zz", state, "bad"),     # tampered code
                (code, "other-state", "bad"),          # state does not match
                (code, state, "sandbox"),              # another connector
                ("", state, "bad"),                    # empty code
            ):
                resp = await exchange(api, bad_code, bad_state, connector)
                assert_error(resp, 400, "invalid_grant", "Invalid authorization code")
            # None of that burned the genuine code.
            ok = await exchange(api, code, state)
            assert ok.status_code == 200, ok.text
            body = ok.json()
            assert body["status"] == "connected" and body["connectionId"].startswith("conn_")
            # Single use.
            assert_error(await exchange(api, code, state), 400, "invalid_grant")
            assert_error(await exchange(api, code, None), 400, "invalid_grant")
        assert alloy.rows("connections") == 1


async def test_expired_code_is_invalid_grant(start_alloy: StartAlloy) -> None:
    with alloy_with_bad(start_alloy, code_ttl=1) as (alloy, _):
        async with alloy.api() as api, HttpBrowser() as browser:
            query = await run_to_app(alloy, browser, api)
            await asyncio.sleep(1.2)
            assert_error(await exchange(api, query["code"], query["state"]), 400,
                         "invalid_grant")


async def test_another_accounts_code_and_connection_are_invisible(
        start_alloy: StartAlloy) -> None:
    with alloy_with_bad(start_alloy) as (alloy, _):
        _, other_key = alloy.new_account()
        async with alloy.api() as api, HttpBrowser() as browser, httpx2.AsyncClient(
                base_url=alloy.base_url, headers={"Authorization": f"Bearer {other_key}"}
        ) as other:
            query = await run_to_app(alloy, browser, api)
            assert_error(await exchange(other, query["code"], query["state"]), 400,
                         "invalid_grant")
            conn = (await exchange(api, query["code"], query["state"])).json()["connectionId"]
            for method, path in (("GET", f"/connections/{conn}"),
                                 ("GET", f"/connections/{conn}/token"),
                                 ("DELETE", f"/connections/{conn}")):
                resp = await other.request(method, path)
                assert_error(resp, 404, "not_found", "Connection not found")
            assert (await other.get("/connections")).json()["connections"] == []
            assert (await api.get(f"/connections/{conn}")).status_code == 200


async def test_unknown_connection_is_404_connection_not_found(start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        async with alloy.api() as api:
            resp = await api.get("/connections/conn_doesnotexist")
        assert_error(resp, 404, "not_found", "Connection not found")


# --- users -------------------------------------------------------------------------------------

async def test_flow_for_a_named_user_belongs_to_that_user(start_alloy: StartAlloy) -> None:
    with alloy_with_bad(start_alloy) as (alloy, _):
        async with alloy.api() as api, HttpBrowser() as browser:
            made = await api.post("/users", json={"username": "ada", "fullName": "Ada L."})
            user_id = made.json()["userId"]
            dup = await api.post("/users", json={"username": "ada"})
            assert_error(dup, 409, "user_exists")
            unknown = await initiate(api, userId="nobody")
            assert_error(unknown, 404, "user_not_found")
            query = await run_to_app(alloy, browser, api, userId="ada")
            conn = (await exchange(api, query["code"], query["state"])).json()
            listed = (await api.get("/connections", params={"userId": user_id})).json()
            assert [c["connectionId"] for c in listed["connections"]] == [conn["connectionId"]]
            creds = (await api.get("/connectors/bad/credentials",
                                   headers={"x-alloy-userid": "ada"})).json()["credentials"]
            assert [c["credentialId"] for c in creds] == [conn["credentialId"]]
            default = (await api.get("/connectors/bad/credentials")).json()["credentials"]
            assert default == []
            # The x-alloy-userid header picks the user on initiate too.
            started = (await api.post("/connectors/bad/credentials", json={
                "credentialType": "oauth2", "redirectUri": APP},
                headers={"x-alloy-userid": "ada"})).json()
            back = await browser.goto(started["oauthUrl"], stop_at="http://localhost:3999")
            q2 = query_params(back)  # type: ignore[arg-type]
            second = (await exchange(api, q2["code"], q2["state"])).json()["connectionId"]
            assert (await api.get(f"/connections/{second}")).json()["userId"] == user_id
            ada = (await api.get(f"/users/{user_id}")).json()
            assert ada["username"] == "ada" and ada["fullName"] == "Ada L."
            deleted = await api.delete(f"/users/{user_id}/credentials/{conn['credentialId']}")
            assert deleted.json() == {"success": True, "revoked": True, "revocationError": None}
            left = (await api.get("/connections", params={"userId": "ada"})).json()
            assert [c["connectionId"] for c in left["connections"]] == [second]
            assert (await api.delete("/users/ada")).json() == {"success": True,
                                                               "connectionsDeleted": 1}
            assert_error(await api.get("/users/ada"), 404, "user_not_found")


async def test_expired_provider_state_is_refused_and_stores_nothing(
        start_alloy: StartAlloy) -> None:
    with alloy_with_bad(start_alloy, flow_ttl=1) as (alloy, bad):
        async with alloy.api() as api, HttpBrowser() as browser:
            url = (await initiate(api)).json()["oauthUrl"]
            at_provider = await browser.goto(url, stop_at=bad.base_url)
            callback = await browser.goto(at_provider, stop_at=alloy.base_url)
            assert isinstance(callback, httpx2.URL)
            await asyncio.sleep(1.2)
            page = await browser.goto(callback, stop_at="http://localhost:3999")
            assert isinstance(page, httpx2.Response) and page.status_code == 400
        assert alloy.rows("connections") == 0 and bad.token_requests == []


async def test_refresh_token_and_client_secret_never_reach_the_database_file(
        start_alloy: StartAlloy) -> None:
    with alloy_with_bad(start_alloy) as (alloy, bad):
        known_refresh = "rt-" + "Z" * 40
        known_access = "at-" + "Y" * 40
        bad.token_extra = {"refresh_token": known_refresh, "access_token": known_access}
        async with alloy.api() as api, HttpBrowser() as browser:
            query = await run_to_app(alloy, browser, api)
            conn = (await exchange(api, query["code"], query["state"])).json()["connectionId"]
            token = (await api.get(f"/connections/{conn}/token")).json()
            assert token["accessToken"] == known_access
            info = (await api.get(f"/connections/{conn}")).text
        raw = b"".join(p.read_bytes() for p in alloy.db_path.parent.glob(
            f"{alloy.db_path.name}*"))
        for secret in (known_refresh, known_access, bad.client_secret, alloy.api_key):
            assert secret.encode() not in raw
            assert secret not in info

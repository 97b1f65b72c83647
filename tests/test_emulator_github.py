"""GitHub, end to end against its emulator, through the built-in `github` catalog entry."""

from __future__ import annotations

import httpx2

from alloy_oauth.oauth.apply import api_request_auth
from alloy_oauth.providers import builtin_catalog
from alloy_oauth.testing import GitHubEmulator
from alloy_oauth.testing.flow import connect_flow
from tests.conftest import StartAlloy
from tests.support.emulators import alloy_with_emulator
from tests.test_refresh import set_expiry, token_of

APP = "http://localhost:3999/oauth/callback"


async def test_github_form_encoded_token_answer_and_an_api_call(
        start_alloy: StartAlloy) -> None:
    async with alloy_with_emulator(start_alloy, GitHubEmulator()) as (github, _, api):
        flow = await connect_flow(api, "github", redirect_uri=APP)
        assert flow.connection_id, flow.query
        asked = github.authorize_requests[-1]
        assert asked["scope"] == "read:user" and asked["code_challenge_method"] == "S256"
        exchange = github.token_requests[-1]
        # JSON was not asked for, so GitHub answered form-encoded (its default).
        assert "application/json" not in exchange.headers.get("accept", "")
        assert exchange.params["client_secret"] == github.client_secret

        conn = (await api.get(f"/connections/{flow.connection_id}")).json()
        assert conn["scopes"] == ["read:user"] and conn["expiresAt"] is None
        token = (await token_of(api, flow.connection_id)).json()
        assert token["accessToken"].startswith("gho_") and token["tokenType"] == "Bearer"

        headers, query = api_request_auth(builtin_catalog()["github"], token["tokenType"],
                                          token["accessToken"], None)
        async with httpx2.AsyncClient() as http:
            user = await http.get(f"{github.base_url}/api/user", headers=headers, params=query)
        assert user.status_code == 200, user.text
        assert user.json()["login"] == github.user
        sent = github.api_requests[-1].headers
        assert sent["accept"] == "application/vnd.github+json"
        assert sent["x-github-api-version"] == "2022-11-28"


async def test_github_app_expiring_user_tokens_refresh(start_alloy: StartAlloy) -> None:
    async with alloy_with_emulator(start_alloy, GitHubEmulator(expiring_tokens=True)) as (
            github, _, api):
        flow = await connect_flow(api, "github", redirect_uri=APP)
        token = (await token_of(api, flow.connection_id)).json()
        assert token["expiresAt"] is not None
        forced = await token_of(api, flow.connection_id, forceRefresh="true")
        assert forced.status_code == 200, forced.text
        assert forced.json()["accessToken"] != token["accessToken"]
        assert github.token_requests[-1].grant_type == "refresh_token"


async def test_github_error_answered_with_http_200_is_an_error(start_alloy: StartAlloy) -> None:
    wrong = {"ALLOY_CONNECTOR_GITHUB_CLIENT_SECRET": "wrong-secret"}
    async with alloy_with_emulator(start_alloy, GitHubEmulator(), connector_env=wrong) as (
            _, alloy, api):
        flow = await connect_flow(api, "github", redirect_uri=APP)
        # HTTP 200 with error=incorrect_client_credentials, form-encoded.
        assert flow.error == "provider_error"
        assert "invalid_client" in flow.query["error_description"]
        assert alloy.rows("connections") == 0


async def test_deleting_the_connection_deletes_the_grant_at_github_the_documented_way(
        start_alloy: StartAlloy) -> None:
    async with alloy_with_emulator(start_alloy, GitHubEmulator()) as (github, _, api):
        flow = await connect_flow(api, "github", redirect_uri=APP)
        token = (await token_of(api, flow.connection_id)).json()
        deleted = await api.delete(f"/connections/{flow.connection_id}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json() == {"success": True, "revoked": True, "revocationError": None}
        assert (await api.get(f"/connections/{flow.connection_id}")).status_code == 404
        [revoke] = github.revoke_requests
        # DELETE /applications/{client_id}/grant, Basic client_id:client_secret, JSON body.
        assert revoke.method == "DELETE"
        assert revoke.path == f"/api/applications/{github.client_id}/grant"
        assert revoke.basic_auth == (github.client_id, github.client_secret)
        assert revoke.content_type == "application/json"
        assert revoke.params == {"access_token": token["accessToken"]}
        assert revoke.headers["accept"] == "application/vnd.github+json"
        assert revoke.headers["x-github-api-version"] == "2022-11-28"
        # The grant is gone: its token no longer works at the API.
        async with httpx2.AsyncClient() as http:
            user = await http.get(f"{github.base_url}/api/user",
                                  headers={"Authorization": f"Bearer {token['accessToken']}"})
        assert user.status_code == 401
        assert github.access_tokens == {}


async def test_an_expired_github_app_token_is_refreshed_before_the_grant_is_deleted(
        start_alloy: StartAlloy) -> None:
    async with alloy_with_emulator(start_alloy, GitHubEmulator(expiring_tokens=True)) as (
            github, alloy, api):
        flow = await connect_flow(api, "github", redirect_uri=APP)
        assert flow.connection_id
        old = (await token_of(api, flow.connection_id)).json()
        github.expire_access_tokens()  # GitHub wants a valid access token to find the grant
        set_expiry(alloy.settings.database_url, flow.connection_id, -60, lifetime=28800)
        deleted = (await api.delete(f"/connections/{flow.connection_id}")).json()
        assert deleted["revoked"] is True, deleted
        assert github.token_requests[-1].grant_type == "refresh_token"
        [revoke] = github.revoke_requests
        assert revoke.params["access_token"] != old["accessToken"]
        assert github.access_tokens == {} and github.refresh_tokens == {}

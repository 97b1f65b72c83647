"""HubSpot, end to end against its emulator, through the built-in `hubspot` catalog entry."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx2

from alloy_oauth.oauth.apply import api_request_auth
from alloy_oauth.providers import builtin_catalog
from alloy_oauth.testing import HubSpotEmulator
from alloy_oauth.testing.flow import connect_flow
from tests.conftest import StartAlloy
from tests.support.browser import HttpBrowser, query_params
from tests.support.emulators import alloy_with_emulator
from tests.test_refresh import token_of

APP = "http://localhost:3999/oauth/callback"


async def test_hubspot_connects_refreshes_and_calls_the_api(start_alloy: StartAlloy) -> None:
    async with alloy_with_emulator(start_alloy, HubSpotEmulator()) as (hubspot, _, api):
        flow = await connect_flow(api, "hubspot", redirect_uri=APP)
        assert flow.connection_id, flow.query
        asked = hubspot.authorize_requests[-1]
        assert asked["scope"] == "oauth" and asked["code_challenge_method"] == "S256"
        # Client credentials in the form body, never as Basic.
        exchange = hubspot.token_requests[-1]
        assert exchange.content_type == "application/x-www-form-urlencoded"
        assert exchange.basic_auth is None
        assert exchange.params["client_id"] == hubspot.client_id
        assert exchange.params["client_secret"] == hubspot.client_secret

        token = (await token_of(api, flow.connection_id)).json()
        assert token["accessToken"] in hubspot.access_tokens
        left = (datetime.fromisoformat(token["expiresAt"].replace("Z", "+00:00"))
                - datetime.now(UTC)).total_seconds()
        assert 1700 < left <= 1800  # 30-minute tokens
        refresh_token = next(iter(hubspot.refresh_tokens))

        forced = await token_of(api, flow.connection_id, forceRefresh="true")
        assert forced.status_code == 200, forced.text
        renewed = forced.json()["accessToken"]
        assert renewed != token["accessToken"] and renewed in hubspot.access_tokens
        assert hubspot.token_requests[-1].params["refresh_token"] == refresh_token
        assert refresh_token in hubspot.refresh_tokens  # long-lived, not rotated

        headers, query = api_request_auth(builtin_catalog()["hubspot"], "Bearer", renewed, None)
        async with httpx2.AsyncClient() as http:
            details = await http.get(f"{hubspot.base_url}/account-info/v3/details",
                                     headers=headers, params=query)
        assert details.status_code == 200, details.text
        assert details.json()["portalId"] == hubspot.portal_id
        assert headers == {"Authorization": f"Bearer {renewed}"}


async def test_hubspot_bad_refresh_token_status_is_a_dead_grant(start_alloy: StartAlloy) -> None:
    async with alloy_with_emulator(start_alloy, HubSpotEmulator()) as (hubspot, _, api):
        flow = await connect_flow(api, "hubspot", redirect_uri=APP)
        hubspot.refresh_tokens.clear()  # the app was uninstalled from the portal
        resp = await token_of(api, flow.connection_id, forceRefresh="true")
        assert resp.status_code == 409, resp.text
        assert resp.json()["error"] == "needs_reauth"
        conn = (await api.get(f"/connections/{flow.connection_id}")).json()
        assert conn["status"] == "needs_reauth"
        assert "invalid_grant" in conn["lastError"]


async def test_consent_page_allow_connects_and_deny_reaches_the_app(
        start_alloy: StartAlloy) -> None:
    async with alloy_with_emulator(start_alloy, HubSpotEmulator(auto_approve=False)) as (
            _, alloy, api), HttpBrowser() as browser:
        for decision, form in (("deny", 1), ("allow", 0)):
            started = (await api.post("/connectors/hubspot/credentials", json={
                "credentialType": "oauth2", "redirectUri": APP, "state": decision})).json()
            page = await browser.goto(started["oauthUrl"], stop_at=APP)
            assert isinstance(page, httpx2.Response) and "Allow access" in page.text
            back = await browser.submit_form(page, form_index=form, stop_at=APP)
            assert isinstance(back, httpx2.URL), back
            query = query_params(back)
            assert query["state"] == decision
            if decision == "deny":
                assert query["error"] == "access_denied" and "code" not in query
            else:
                done = await api.post("/connectors/hubspot/credentials/callback",
                                      json={"code": query["code"], "state": decision})
                assert done.status_code == 200, done.text
        assert alloy.rows("connections") == 1


async def test_deleting_the_connection_deletes_the_refresh_token_at_hubspot(
        start_alloy: StartAlloy) -> None:
    async with alloy_with_emulator(start_alloy, HubSpotEmulator()) as (hubspot, _, api):
        flow = await connect_flow(api, "hubspot", redirect_uri=APP)
        token = (await token_of(api, flow.connection_id)).json()
        [refresh_token] = hubspot.refresh_tokens
        deleted = await api.delete(f"/connections/{flow.connection_id}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json() == {"success": True, "revoked": True, "revocationError": None}
        [revoke] = hubspot.revoke_requests
        # DELETE /oauth/v1/refresh-tokens/{token}, no client authentication, no body.
        assert revoke.method == "DELETE"
        assert revoke.path == f"/oauth/v1/refresh-tokens/{refresh_token}"
        assert "authorization" not in revoke.headers
        assert hubspot.refresh_tokens == {}
        async with httpx2.AsyncClient() as http:
            renewed = await http.post(f"{hubspot.base_url}/oauth/v3/token", data={
                "grant_type": "refresh_token", "refresh_token": refresh_token,
                "client_id": hubspot.client_id, "client_secret": hubspot.client_secret})
            # As HubSpot documents: the access token already issued lives on until it expires.
            details = await http.get(f"{hubspot.base_url}/account-info/v3/details",
                                     headers={"Authorization": f"Bearer {token['accessToken']}"})
        assert renewed.status_code == 400 and renewed.json()["status"] == "BAD_REFRESH_TOKEN"
        assert details.status_code == 200


async def test_a_hubspot_refresh_token_unknown_there_is_reported_not_revoked(
        start_alloy: StartAlloy) -> None:
    async with alloy_with_emulator(start_alloy, HubSpotEmulator()) as (hubspot, _, api):
        flow = await connect_flow(api, "hubspot", redirect_uri=APP)
        hubspot.refresh_tokens.clear()  # the app was uninstalled from the portal
        deleted = await api.delete(f"/connections/{flow.connection_id}")
        assert deleted.status_code == 200
        body = deleted.json()
        assert (await api.get(f"/connections/{flow.connection_id}")).status_code == 404
        assert body["success"] is True and body["revoked"] is False
        assert "refresh token not found" in body["revocationError"]
        assert len(hubspot.revoke_requests) == 1  # one kind of token, tried once

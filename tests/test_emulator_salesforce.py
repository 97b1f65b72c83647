"""Salesforce, end to end against its emulator, through the built-in `salesforce` entry."""

from __future__ import annotations

import httpx2

from alloy_oauth.oauth.apply import api_request_auth
from alloy_oauth.providers import builtin_catalog
from alloy_oauth.testing import SalesforceEmulator
from alloy_oauth.testing.flow import connect_flow
from alloy_oauth.testing.salesforce import API_VERSION
from tests.conftest import StartAlloy
from tests.support.emulators import alloy_with_emulator
from tests.test_refresh import token_of

APP = "http://localhost:3999/oauth/callback"


async def test_salesforce_uses_instance_url_as_api_base_and_refreshes(
        start_alloy: StartAlloy) -> None:
    async with alloy_with_emulator(start_alloy, SalesforceEmulator()) as (sf, _, api):
        flow = await connect_flow(api, "salesforce", redirect_uri=APP)
        assert flow.connection_id, flow.query
        asked = sf.authorize_requests[-1]
        # refresh_token is always asked for: without it Salesforce issues no refresh token.
        assert asked["scope"].split() == ["api", "refresh_token"]
        assert asked["code_challenge_method"] == "S256"
        exchange = sf.token_requests[-1]
        assert exchange.params["client_secret"] == sf.client_secret
        assert len(exchange.params["code_verifier"]) >= 43

        conn = (await api.get(f"/connections/{flow.connection_id}")).json()
        assert conn["metadata"]["instance_url"] == sf.base_url
        assert conn["metadata"]["id"].startswith(f"{sf.base_url}/id/")
        assert conn["expiresAt"] is None  # Salesforce gives no expires_in
        assert "signature" not in conn["metadata"]

        first = (await token_of(api, flow.connection_id)).json()
        forced = await token_of(api, flow.connection_id, forceRefresh="true")
        assert forced.status_code == 200, forced.text
        renewed = forced.json()["accessToken"]
        assert renewed != first["accessToken"] and renewed in sf.access_tokens
        # The refresh answer has no refresh token: the stored one keeps working.
        again = await token_of(api, flow.connection_id, forceRefresh="true")
        assert again.status_code == 200, again.text

        connector = builtin_catalog()["salesforce"]
        base = connector.api_base(conn["metadata"])
        assert base == sf.base_url
        headers, query = api_request_auth(connector, "Bearer", again.json()["accessToken"], None)
        async with httpx2.AsyncClient() as http:
            limits = await http.get(f"{base}/services/data/{API_VERSION}/limits",
                                    headers=headers, params=query)
        assert limits.status_code == 200, limits.text
        assert "DailyApiRequests" in limits.json()

        assert (await api.delete(f"/connections/{flow.connection_id}")).status_code == 200
        assert sf.revoke_requests and sf.refresh_tokens == {}


async def test_salesforce_refresh_answer_without_access_token_is_502_and_keeps_the_token(
        start_alloy: StartAlloy) -> None:
    async with alloy_with_emulator(start_alloy, SalesforceEmulator()) as (sf, _, api):
        flow = await connect_flow(api, "salesforce", redirect_uri=APP)
        stored = (await token_of(api, flow.connection_id)).json()
        sf.issue_token_answer(200, {"instance_url": sf.base_url, "token_type": "Bearer",
                                    "issued_at": "1764288000000"})
        broken = await token_of(api, flow.connection_id, forceRefresh="true")
        assert broken.status_code == 502, broken.text
        body = broken.json()
        assert body["error"] == "provider_error"
        assert "access_token" in body["message"] or "token" in body["message"]
        # The stored connection is unchanged: the same token is still served.
        after = await token_of(api, flow.connection_id)
        assert after.status_code == 200, after.text
        assert after.json()["accessToken"] == stored["accessToken"]
        assert stored["accessToken"] in sf.access_tokens


async def test_salesforce_instance_url_that_is_not_https_is_refused(
        start_alloy: StartAlloy) -> None:
    async with alloy_with_emulator(start_alloy, SalesforceEmulator()) as (sf, alloy, api):
        sf.issue_token_answer(200, {"access_token": "00Dx!AQ", "token_type": "Bearer",
                                    "instance_url": "http://evil.example.com",
                                    "id": "https://login.salesforce.com/id/1/2"})
        flow = await connect_flow(api, "salesforce", redirect_uri=APP)
        assert flow.error == "provider_error"
        assert "instance_url" in flow.query["error_description"]
        assert alloy.rows("connections") == 0

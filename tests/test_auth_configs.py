"""Bring-your-own OAuth app per account: POST /auth-configs, used through authConfigId."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from alloy_oauth.testing import NotionEmulator
from alloy_oauth.testing.flow import connect_flow
from tests.conftest import StartAlloy

APP = "http://localhost:3999/oauth/callback"


async def create(api: httpx2.AsyncClient, **body: Any) -> httpx2.Response:
    return await api.post("/auth-configs", json=body)


async def test_auth_config_is_stored_with_its_secret_encrypted_and_never_shown(
        start_alloy: StartAlloy) -> None:
    secret = "byo-client-secret-4f9a1c77"
    with start_alloy() as alloy:
        async with alloy.api() as api:
            made = await create(api, connectorId="hubspot", clientId="my-hubspot-app",
                                clientSecret=secret, scopes=["oauth", "crm.objects.contacts.read"])
            assert made.status_code == 200, made.text
            body = made.json()
            config_id = body["authConfigId"]
            assert config_id.startswith("acfg_") and body["clientId"] == "my-hubspot-app"
            got = (await api.get(f"/auth-configs/{config_id}")).json()
            listed = (await api.get("/auth-configs", params={"connectorId": "hubspot"})).json()
            connectors = (await api.get("/connectors")).json()["connectors"]
            for answer in (made.text, str(got), str(listed)):
                assert secret not in answer
            assert [c["authConfigId"] for c in listed["authConfigs"]] == [config_id]
            # HubSpot now counts as configured for this account
            assert next(c for c in connectors if c["id"] == "hubspot")["configured"] is True
            raw = b"".join(p.read_bytes() for p in alloy.db_path.parent.glob(
                alloy.db_path.name + "*") if p.is_file())
            assert secret.encode() not in raw
            assert alloy.rows("auth_configs") == 1

            assert (await api.delete(f"/auth-configs/{config_id}")).json() == {"success": True}
            gone = await api.get(f"/auth-configs/{config_id}")
            assert gone.status_code == 404 and gone.json()["error"] == "auth_config_not_found"


@pytest.mark.parametrize("body,status,needle", [
    ({"clientId": "a", "clientSecret": "b"}, 400, "connectorId is required"),
    ({"connectorId": "hubspot", "clientSecret": "b"}, 400, "clientId is required"),
    ({"connectorId": "hubspot", "clientId": "a"}, 400, "clientSecret is required"),
    ({"connectorId": "hubspot", "clientId": "a b", "clientSecret": "c"}, 400, "clientId must"),
    ({"connectorId": "hubspot", "clientId": "a", "clientSecret": "c", "scopes": "oauth"}, 400,
     "scopes must be a list"),
    ({"connectorId": "nope", "clientId": "a", "clientSecret": "c"}, 404, "Connector not found"),
    ({"connectorId": "sendgrid", "clientId": "a", "clientSecret": "c"}, 400,
     "does not use OAuth"),
])
async def test_bad_auth_config_is_refused_naming_the_field(
        start_alloy: StartAlloy, body: dict[str, Any], status: int, needle: str) -> None:
    with start_alloy() as alloy:
        async with alloy.api() as api:
            resp = await create(api, **body)
        assert resp.status_code == status, resp.text
        assert needle in resp.json()["message"]
        assert alloy.rows("auth_configs") == 0


async def test_unconfigured_connector_says_both_ways_to_configure_it(
        start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        async with alloy.api() as api:
            resp = await api.post("/connectors/hubspot/credentials",
                                  json={"credentialType": "oauth2", "redirectUri": APP})
        assert resp.status_code == 400
        message = resp.json()["message"]
        assert resp.json()["error"] == "connector_not_configured"
        assert "ALLOY_CONNECTOR_HUBSPOT_CLIENT_ID" in message and "POST /auth-configs" in message


async def test_flow_and_refresh_run_on_the_accounts_own_app(start_alloy: StartAlloy) -> None:
    # No ALLOY_CONNECTOR_NOTION_* at all: the account brings the app the emulator knows.
    with NotionEmulator(client_id="byo-notion-app") as notion, start_alloy(
            providers=notion.providers_entry()) as alloy:
        async with alloy.api() as api:
            made = (await create(api, connectorId="notion", clientId=notion.client_id,
                                 clientSecret=notion.client_secret)).json()
            flow = await connect_flow(api, "notion", redirect_uri=APP,
                                      authConfigId=made["authConfigId"])
            assert flow.connection_id, flow.query
            assert notion.token_requests[-1].basic_auth == (notion.client_id,
                                                            notion.client_secret)
            conn = (await api.get(f"/connections/{flow.connection_id}")).json()
            assert conn["metadata"]["authConfigId"] == made["authConfigId"]
            forced = await api.get(f"/connections/{flow.connection_id}/token",
                                   params={"forceRefresh": "true"})
            assert forced.status_code == 200, forced.text
            assert notion.token_requests[-1].grant_type == "refresh_token"
            assert notion.token_requests[-1].basic_auth == (notion.client_id,
                                                            notion.client_secret)


async def test_auth_config_scopes_are_the_flows_default_scopes(start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        async with alloy.api() as api, httpx2.AsyncClient() as browser:
            made = (await create(api, connectorId="hubspot", clientId="hs-app",
                                 clientSecret="hs-secret-123456",
                                 scopes=["oauth", "crm.objects.deals.read"])).json()
            started = await api.post("/connectors/hubspot/credentials", json={
                "credentialType": "oauth2", "redirectUri": APP,
                "authConfigId": made["authConfigId"]})
            assert started.status_code == 200, started.text
            hop = await browser.get(started.json()["oauthUrl"])
    location = httpx2.URL(hop.headers["location"])
    assert location.params["client_id"] == "hs-app"
    assert location.params["scope"] == "oauth crm.objects.deals.read"


async def test_another_accounts_auth_config_is_not_found(start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        _, other_key = alloy.new_account()
        async with alloy.api() as api, httpx2.AsyncClient(
                base_url=alloy.base_url, headers={"Authorization": f"Bearer {other_key}"}) as other:
            made = (await create(api, connectorId="hubspot", clientId="hs-app",
                                 clientSecret="hs-secret-123456")).json()
            for resp in (await other.get(f"/auth-configs/{made['authConfigId']}"),
                         await other.delete(f"/auth-configs/{made['authConfigId']}"),
                         await other.post("/connectors/hubspot/credentials", json={
                             "credentialType": "oauth2", "redirectUri": APP,
                             "authConfigId": made["authConfigId"]})):
                assert resp.status_code == 404, resp.text
                assert resp.json()["error"] == "auth_config_not_found"
            assert (await other.get("/auth-configs")).json() == {"authConfigs": []}
            # ... and an auth config for another connector is not usable either
            wrong = await api.post("/connectors/notion/credentials", json={
                "credentialType": "oauth2", "redirectUri": APP,
                "authConfigId": made["authConfigId"]})
            assert wrong.status_code == 404
        assert alloy.rows("oauth_flows") == 0

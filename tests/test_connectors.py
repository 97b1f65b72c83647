"""Connector endpoints, per-connection inputs, and credentials that are not OAuth."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx2
import pytest

from alloy_oauth.oauth.apply import api_request_auth
from alloy_oauth.providers import builtin_catalog
from alloy_oauth.testing import Grant, ProviderEmulator
from alloy_oauth.testing.flow import connect_flow
from tests.conftest import StartAlloy
from tests.support.emulators import alloy_with_emulator

APP = "http://localhost:3999/oauth/callback"


async def test_connectors_list_the_whole_catalog_with_configured_flags(
        start_alloy: StartAlloy) -> None:
    env = {"ALLOY_CONNECTOR_NOTION_CLIENT_ID": "id", "ALLOY_CONNECTOR_NOTION_CLIENT_SECRET": "s"}
    with start_alloy(connector_env=env) as alloy:
        async with alloy.api() as api:
            listed = (await api.get("/connectors")).json()["connectors"]
    by_id = {c["id"]: c for c in listed}
    assert set(builtin_catalog()) <= set(by_id)
    assert by_id["notion"]["configured"] is True
    assert by_id["hubspot"]["configured"] is False  # no OAuth app for it
    assert by_id["sendgrid"]["configured"] is True  # API keys need no app
    assert by_id["slack"]["authenticationTypes"] == ["oauth2", "bearer"]


async def test_connector_detail_and_unknown_connector(start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        async with alloy.api() as api:
            detail = (await api.get("/connectors/zendesk")).json()["connector"]
            missing = await api.get("/connectors/no-such-thing")
    assert detail["oauth"]["authorizationUrl"] == (
        "https://${subdomain}.zendesk.com/oauth/authorizations/new")
    assert detail["inputs"]["subdomain"]["example"] == "acme"
    assert missing.status_code == 404 and missing.json()["error"] == "connector_not_found"


async def test_metadata_input_schema_asks_for_the_connectors_inputs(
        start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        async with alloy.api() as api:
            meta = (await api.get("/connectors/zendesk/credentials/metadata")).json()["metadata"]
    kinds = {m["authenticationType"]: m for m in meta}
    assert set(kinds) == {"oauth2", "basic"}
    oauth_schema = kinds["oauth2"]["inputSchema"]
    assert oauth_schema["required"] == ["subdomain"]
    assert oauth_schema["properties"]["subdomain"]["pattern"] == "[a-z0-9][a-z0-9-]*"
    assert kinds["oauth2"]["authConfigRequired"] is True  # no deployment app: bring your own
    basic = kinds["basic"]
    assert set(basic["inputSchema"]["required"]) == {"subdomain", "username", "password"}
    assert basic["inputSchema"]["properties"]["password"]["writeOnly"] is True
    assert basic["authConfigRequired"] is False
    assert set(basic["sampleInput"]) == {"subdomain", "username", "password"}


@pytest.mark.parametrize("data,needle", [
    ({}, "Missing input 'subdomain'"),
    ({"subdomain": "acme.evil.example/x"}, "Input 'subdomain' (Zendesk subdomain) is malformed"),
    ({"subdomain": 7}, "Input 'subdomain'"),
])
async def test_initiate_with_a_missing_or_malformed_input_is_400_naming_it(
        start_alloy: StartAlloy, data: dict[str, Any], needle: str) -> None:
    env = {"ALLOY_CONNECTOR_ZENDESK_CLIENT_ID": "i", "ALLOY_CONNECTOR_ZENDESK_CLIENT_SECRET": "s"}
    with start_alloy(connector_env=env) as alloy:
        async with alloy.api() as api:
            resp = await api.post("/connectors/zendesk/credentials",
                                  json={"credentialType": "oauth2", "redirectUri": APP,
                                        "data": data})
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"] == "invalid_input" and needle in resp.json()["message"]
        assert alloy.rows("oauth_flows") == 0


async def test_inputs_fill_the_authorize_url(start_alloy: StartAlloy) -> None:
    env = {"ALLOY_CONNECTOR_ZENDESK_CLIENT_ID": "i", "ALLOY_CONNECTOR_ZENDESK_CLIENT_SECRET": "s"}
    with start_alloy(connector_env=env) as alloy:
        async with alloy.api() as api, httpx2.AsyncClient() as browser:
            started = await api.post("/connectors/zendesk/credentials",
                                     json={"credentialType": "oauth2", "redirectUri": APP,
                                           "data": {"subdomain": "acme"}})
            hop = await browser.get(started.json()["oauthUrl"])
    assert hop.status_code in (302, 307)
    assert hop.headers["location"].startswith(
        "https://acme.zendesk.com/oauth/authorizations/new?")


# --- credentials that are not OAuth -----------------------------------------------------------

STATIC: list[tuple[str, str, dict[str, str], Callable[[dict[str, str], dict[str, str]], bool]]] = [
    ("stripe", "apiKey", {"apiKey": "sk_test_123"},
     lambda h, q: h["Authorization"] == "Bearer sk_test_123"),
    ("sendgrid", "apiKey", {"apiKey": "SG.abc"},
     lambda h, q: h["Authorization"] == "Bearer SG.abc"),
    ("openai", "apiKey", {"apiKey": "sk-proj-1"},
     lambda h, q: h["Authorization"] == "Bearer sk-proj-1"),
    ("anthropic", "apiKey", {"apiKey": "sk-ant-1"},
     lambda h, q: h["x-api-key"] == "sk-ant-1" and h["anthropic-version"] == "2023-06-01"),
    ("postmark", "apiKey", {"apiKey": "pm-1"},
     lambda h, q: h["X-Postmark-Server-Token"] == "pm-1" and "Authorization" not in h),
    ("canny", "apiKey", {"apiKey": "ck-1"}, lambda h, q: q == {"apiKey": "ck-1"}),
    ("linear-api-key", "apiKey", {"apiKey": "lin_api_1"},
     lambda h, q: h["Authorization"] == "lin_api_1"),
    ("twilio", "basic", {"username": "AC1f00d", "password": "twilio-auth-token-77"},
     lambda h, q: h["Authorization"] == "Basic " + base64.b64encode(
         b"AC1f00d:twilio-auth-token-77").decode()),
    ("mailchimp", "basic", {"username": "any", "password": "mc-key-0a1b2c-us21", "dc": "us21"},
     lambda h, q: h["Authorization"].startswith("Basic ")),
    ("freshdesk", "basic", {"username": "fd-key-0123456", "password": "X", "domain": "acme"},
     lambda h, q: h["Authorization"] == "Basic " + base64.b64encode(
         b"fd-key-0123456:X").decode()),
    ("zendesk", "basic", {"username": "me@acme.test/token", "password": "zd-api-token-1",
                          "subdomain": "acme"},
     lambda h, q: h["Authorization"].startswith("Basic")),
    ("airtable", "bearer", {"token": "patXYZ123"},
     lambda h, q: h["Authorization"] == "Bearer patXYZ123"),
    ("notion", "bearer", {"token": "ntn_1"},
     lambda h, q: h["Authorization"] == "Bearer ntn_1" and h["Notion-Version"] == "2025-09-03"),
    ("cloudflare", "bearer", {"token": "cf-1"}, lambda h, q: h["Authorization"] == "Bearer cf-1"),
    ("shopify", "apiKey", {"apiKey": "shpat_1", "shop": "my-store"},
     lambda h, q: h["X-Shopify-Access-Token"] == "shpat_1"),
]


@pytest.mark.parametrize("connector_id,kind,data,applied", STATIC,
                         ids=[s[0] for s in STATIC])
async def test_non_oauth_credential_is_created_from_data_stored_encrypted_and_applied(
        start_alloy: StartAlloy, connector_id: str, kind: str, data: dict[str, str],
        applied: Callable[[dict[str, str], dict[str, str]], bool]) -> None:
    with start_alloy() as alloy:
        async with alloy.api() as api:
            resp = await api.post(f"/connectors/{connector_id}/credentials",
                                  json={"credentialType": kind, "data": data})
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert body["status"] == "connected"
            conn = (await api.get(f"/connections/{body['connectionId']}")).json()
        assert conn["type"] == kind
        secret_names = {"apiKey", "token", "password", "username"}
        assert not set(conn["metadata"]) & secret_names  # only the public inputs are metadata
        raw = b"".join(p.read_bytes() for p in alloy.db_path.parent.glob(
            alloy.db_path.name + "*") if p.is_file())  # the database and its WAL
        for name, value in data.items():
            if name in secret_names and len(value) > 6:
                assert value.encode() not in raw, f"{name} stored in clear"
    connector = builtin_catalog()[connector_id]
    secrets = {k: v for k, v in data.items() if k in {"apiKey", "token", "username", "password"}}
    headers, query = api_request_auth(connector, None, None, secrets)
    assert applied(headers, query), (headers, query)


@pytest.mark.parametrize("connector_id,body,needle", [
    ("stripe", {"credentialType": "apiKey", "data": {}}, "Missing input 'apiKey'"),
    ("stripe", {"credentialType": "apiKey", "data": {"apiKey": "sk\r\nX-Evil: 1"}},
     "malformed"),
    ("stripe", {"credentialType": "apiKey", "data": {"apiKey": "sk", "extra": "x"}},
     "Unknown input 'extra'"),
    ("twilio", {"credentialType": "basic", "data": {"username": "AC1"}},
     "Missing input 'password'"),
    ("freshdesk", {"credentialType": "basic",
                   "data": {"username": "k", "password": "X", "domain": "a b"}},
     "Input 'domain'"),
    ("twilio", {"credentialType": "apiKey", "data": {"apiKey": "k"}},
     "does not support credentialType 'apiKey'"),
])
async def test_non_oauth_credential_with_bad_data_is_400_and_stores_nothing(
        start_alloy: StartAlloy, connector_id: str, body: dict[str, Any], needle: str) -> None:
    with start_alloy() as alloy:
        async with alloy.api() as api:
            resp = await api.post(f"/connectors/{connector_id}/credentials", json=body)
        assert resp.status_code == 400, resp.text
        assert needle in resp.json()["message"]
        assert alloy.rows("connections") == 0


# --- a value the provider hands over on the callback (QuickBooks' realmId) ---------------------

class QuickBooksEmulator(ProviderEmulator):
    """Intuit's documented behaviour: the company id comes back as `realmId` on the callback."""

    connector_id = "quickbooks"
    authorize_path = "/connect/oauth2"
    token_path = "/oauth2/v1/tokens/bearer"
    client_auth = "basic"
    realm_id = "9130355377777777"

    def url_overrides(self) -> dict[str, str]:
        return {**super().url_overrides(),
                "api_base_url": self.base_url + "/v3/company/${realmId}"}

    def callback_params(self, grant: Grant) -> dict[str, str]:
        return {"realmId": self.realm_id}


async def test_value_from_the_callback_query_is_kept_and_builds_the_api_base(
        start_alloy: StartAlloy) -> None:
    async with alloy_with_emulator(start_alloy, QuickBooksEmulator()) as (qbo, _, api):
        flow = await connect_flow(api, "quickbooks", redirect_uri=APP)
        assert flow.connection_id, flow.query
        conn = (await api.get(f"/connections/{flow.connection_id}")).json()
        assert conn["metadata"]["realmId"] == qbo.realm_id
        connector = builtin_catalog()["quickbooks"].model_copy(
            update={"api_base_url": qbo.base_url + "/v3/company/${realmId}"})
        assert connector.api_base(conn["metadata"]) == (
            f"{qbo.base_url}/v3/company/{qbo.realm_id}")
        assert qbo.token_requests[-1].basic_auth == (qbo.client_id, qbo.client_secret)


class QuickBooksWithoutRealm(QuickBooksEmulator):
    def callback_params(self, grant: Grant) -> dict[str, str]:
        return {}


async def test_callback_without_the_value_the_api_base_needs_is_an_error(
        start_alloy: StartAlloy) -> None:
    async with alloy_with_emulator(start_alloy, QuickBooksWithoutRealm()) as (qbo, alloy, api):
        flow = await connect_flow(api, "quickbooks", redirect_uri=APP)
        assert flow.error == "provider_error"
        assert "realmId" in flow.query["error_description"]
        assert alloy.rows("connections") == 0 and qbo.token_requests == []


async def test_an_input_cannot_move_the_token_request_to_another_host(
        start_alloy: StartAlloy) -> None:
    # A custom connector whose input pattern is the permissive default.
    providers = {"loose": {"name": "Loose", "authorization_url": "https://${site}/authorize",
                           "token_url": "https://${site}/token",
                           "inputs": {"site": {"title": "Site", "example": "acme.example"}}}}
    env = {"ALLOY_CONNECTOR_LOOSE_CLIENT_ID": "i", "ALLOY_CONNECTOR_LOOSE_CLIENT_SECRET": "s"}
    with start_alloy(providers=providers, connector_env=env) as alloy:
        async with alloy.api() as api:
            for value in ("evil.example/steal?x=", "evil.example#", "user@evil.example"):
                resp = await api.post("/connectors/loose/credentials", json={
                    "credentialType": "oauth2", "redirectUri": APP, "data": {"site": value}})
                assert resp.status_code == 400, resp.text
                assert "Input 'site'" in resp.json()["message"]
            ok = await api.post("/connectors/loose/credentials", json={
                "credentialType": "oauth2", "redirectUri": APP, "data": {"site": "acme.example"}})
            assert ok.status_code == 200, ok.text
        assert alloy.rows("oauth_flows") == 1

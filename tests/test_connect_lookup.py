"""`connect_lookup`: values only the provider's API names (Xero's tenant id, DocuSign's base_uri,
Mailchimp's data centre), looked up once with the new token right after the code exchange and
kept as connection metadata; a failed lookup stores no connection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from alloy_oauth.providers import CatalogError, lookup_value, parse_entries
from alloy_oauth.testing._base import ProviderEmulator, RecordedRequest
from alloy_oauth.testing.flow import connect_flow
from tests.conftest import StartAlloy
from tests.test_catalog_startup import refusal_to_start

APP = "http://localhost:3999/oauth/callback"
ID = "lookupish"


class LookupProvider(ProviderEmulator):
    """An OAuth provider with one lookup endpoint (answering what the test says, only to a
    valid access token in the expected scheme) and an API that records every call."""

    connector_id = ID
    authorize_path = "/oauth/authorize"
    token_path = "/oauth/token"

    def __init__(self, body: Any, *, status: int = 200, scheme: str = "Bearer") -> None:
        self.lookup_body = body
        self.lookup_status = status
        self.lookup_scheme = scheme
        self.lookup_requests: list[RecordedRequest] = []
        super().__init__()

    def register_api(self, app: FastAPI) -> None:
        @app.get("/lookup")
        async def lookup(request: Request) -> Response:
            self.lookup_requests.append(self._record(request, dict(request.query_params)))
            if self.bearer_grant(request, self.lookup_scheme) is None:
                return JSONResponse({"error": "unauthorized"}, status_code=401)
            if isinstance(self.lookup_body, str):
                return Response(self.lookup_body, status_code=self.lookup_status,
                                media_type="text/html")
            return JSONResponse(self.lookup_body, status_code=self.lookup_status)

        @app.get("/{rest:path}")
        async def api(request: Request, rest: str) -> Response:
            self.record_api(request)
            if self.bearer_grant(request) is None:
                return JSONResponse({"error": "unauthorized"}, status_code=401)
            return JSONResponse({"path": request.url.path})

    def entry(self, **fields: Any) -> dict[str, Any]:
        return {ID: {"name": "Lookup-ish", "authorization_url": self.base_url + "/oauth/authorize",
                     "token_url": self.base_url + "/oauth/token", **fields}}

    def xeroish(self) -> dict[str, Any]:
        return self.entry(api_base_url=self.base_url + "/api",
                          api_headers={"Xero-tenant-id": "${tenant_id}"},
                          connect_lookup={"url": self.base_url + "/lookup",
                                          "keep": {"tenant_id": "0.tenantId",
                                                   "tenant_name": "0.tenantName"}})

    def docusignish(self) -> dict[str, Any]:
        return self.entry(api_base_url="${base_uri}/restapi",
                          connect_lookup={"url": self.base_url + "/lookup",
                                          "keep": {"base_uri": "accounts[is_default].base_uri",
                                                   "account_id":
                                                       "accounts[is_default].account_id"}})


TENANTS = [{"id": "c-1", "tenantId": "fe79f7dd-b6d4-4a92-ba7b-538af6289c58",
            "tenantType": "ORGANISATION", "tenantName": "Demo Company (NZ)"},
           {"id": "c-2", "tenantId": "00000000-0000-0000-0000-000000000002",
            "tenantType": "ORGANISATION", "tenantName": "Second Org"}]


async def test_a_looked_up_tenant_is_kept_and_sent_as_a_header_and_refresh_does_not_repeat_it(
        start_alloy: StartAlloy) -> None:
    with LookupProvider(TENANTS) as provider, start_alloy(
            providers=provider.xeroish(), connector_env=provider.connector_env()) as alloy:
        async with alloy.api() as api:
            flow = await connect_flow(api, ID, redirect_uri=APP)
            assert flow.connection_id, flow.query
            metadata = (await api.get(f"/connections/{flow.connection_id}")).json()["metadata"]
            proxied = await api.get(f"/connections/{flow.connection_id}/proxy/api.xro/2.0/x")
            refreshed = await api.get(f"/connections/{flow.connection_id}/token",
                                      params={"forceRefresh": "true"})
            after = (await api.get(f"/connections/{flow.connection_id}")).json()["metadata"]
    assert metadata["tenant_id"] == TENANTS[0]["tenantId"]
    assert metadata["tenant_name"] == "Demo Company (NZ)"
    assert proxied.status_code == 200, proxied.text
    call = provider.api_requests[-1]
    assert call.path == "/api/api.xro/2.0/x"
    assert call.headers["xero-tenant-id"] == TENANTS[0]["tenantId"]
    # The lookup carried the new access token the connector's way, and ran once.
    assert len(provider.lookup_requests) == 1
    assert provider.lookup_requests[0].headers["authorization"].startswith("Bearer at_")
    assert refreshed.status_code == 200, refreshed.text
    assert [r.grant_type for r in provider.token_requests] == ["authorization_code",
                                                               "refresh_token"]
    assert len(provider.lookup_requests) == 1
    assert after["tenant_id"] == metadata["tenant_id"]


async def test_a_looked_up_base_uri_of_the_default_account_is_the_api_base_url(
        start_alloy: StartAlloy) -> None:
    with LookupProvider({}) as provider:
        base = provider.base_url
        provider.lookup_body = {"sub": "u-1", "accounts": [
            {"account_id": "a-1", "is_default": False, "base_uri": provider.base_url + "/na2"},
            {"account_id": "a-2", "is_default": True, "base_uri": provider.base_url + "/eu"}]}
        with start_alloy(providers=provider.docusignish(),
                         connector_env=provider.connector_env()) as alloy:
            async with alloy.api() as api:
                flow = await connect_flow(api, ID, redirect_uri=APP)
                assert flow.connection_id, flow.query
                conn = (await api.get(f"/connections/{flow.connection_id}")).json()
                proxied = await api.get(
                    f"/connections/{flow.connection_id}/proxy/v2.1/accounts/a-2/envelopes")
    assert conn["metadata"]["base_uri"] == base + "/eu"
    assert conn["metadata"]["account_id"] == "a-2"
    assert proxied.status_code == 200, proxied.text
    assert provider.api_requests[-1].path == "/eu/restapi/v2.1/accounts/a-2/envelopes"


async def test_a_lookup_fills_an_input_that_oauth_flows_then_do_not_ask_for(
        start_alloy: StartAlloy) -> None:
    with LookupProvider({"dc": "us7", "api_endpoint": "https://us7.api.mailchimp.com"},
                        scheme="OAuth") as provider:
        providers = provider.entry(
            auth_types=["oauth2", "basic"], api_base_url=provider.base_url + "/${dc}/3.0",
            inputs={"dc": {"title": "Data centre", "pattern": "[a-z]+[0-9]+",
                           "example": "us21"}},
            connect_lookup={"url": provider.base_url + "/lookup", "auth_scheme": "OAuth",
                            "keep": {"dc": "dc"}})
        with start_alloy(providers=providers, connector_env=provider.connector_env()) as alloy:
            async with alloy.api() as api:
                flow = await connect_flow(api, ID, redirect_uri=APP)  # no dc given
                assert flow.connection_id, flow.query
                metadata = (await api.get(f"/connections/{flow.connection_id}")).json()[
                    "metadata"]
                proxied = await api.get(f"/connections/{flow.connection_id}/proxy/ping")
                basic = await api.post(f"/connectors/{ID}/credentials", json={
                    "credentialType": "basic", "data": {"username": "any", "password": "k-1"}})
    assert metadata["dc"] == "us7"
    assert provider.lookup_requests[0].headers["authorization"].startswith("OAuth at_")
    assert proxied.status_code == 200, proxied.text
    assert provider.api_requests[-1].path == "/us7/3.0/ping"
    # Credentials that are not OAuth have no lookup: they still give the input.
    assert basic.status_code == 400 and "'dc'" in basic.json()["message"]


FAILURES = [
    ("xero", 500, {"error": "boom"}, "tenant_id", "answered HTTP 500"),
    ("xero", 200, "<html>maintenance</html>", "tenant_id", "not JSON"),
    ("xero", 200, [], "tenant_id", "answered without 0.tenantId"),
    ("xero", 200, [{"tenantId": "t\r\nX-Evil: 1", "tenantName": "x"}], "tenant_id",
     "control characters"),
    ("docusign", 200, {"accounts": [{"is_default": False, "account_id": "a",
                                     "base_uri": "https://x.example"}]},
     "account_id", "without accounts[is_default].account_id"),
    ("docusign", 200, {"accounts": [{"is_default": True, "account_id": "a",
                                     "base_uri": "ftp://files.example"}]},
     "base_uri", "not an https URL"),
]


@pytest.mark.parametrize("shape,status,body,name,why", FAILURES,
                         ids=["http-500", "not-json", "missing-path", "control-characters",
                              "no-default-account", "base-uri-not-https"])
async def test_a_failed_lookup_stores_no_connection_and_names_connector_and_value(
        start_alloy: StartAlloy, shape: str, status: int, body: Any, name: str,
        why: str) -> None:
    with LookupProvider(body, status=status) as provider:
        providers = provider.xeroish() if shape == "xero" else provider.docusignish()
        with start_alloy(providers=providers, connector_env=provider.connector_env()) as alloy:
            async with alloy.api() as api:
                flow = await connect_flow(api, ID, redirect_uri=APP, state="app-state-1")
                listed = await api.get("/connections")
            stored = alloy.rows("connections")
    assert flow.connection_id is None
    assert flow.error == "provider_error", flow.query
    assert flow.query["state"] == "app-state-1" and "code" not in flow.query
    described = flow.query["error_description"]
    assert f"'{ID}'" in described and name in described and why in described, described
    assert not any(token in described for token in provider.access_tokens)
    assert len(provider.lookup_requests) == 1
    assert listed.status_code == 200 and listed.json()["connections"] == []
    assert stored == 0


def test_lookup_paths_index_lists_and_pick_the_flagged_item() -> None:
    body = {"accounts": [{"is_default": "false", "id": 1}, {"is_default": "true", "id": 2}],
            "list": [[{"x": "deep"}]]}
    assert lookup_value(body, "accounts[is_default].id") == 2
    assert lookup_value(body, "accounts.1.id") == 2
    assert lookup_value(body, "list.0.0.x") == "deep"
    assert lookup_value(body, "accounts.5.id") is None
    assert lookup_value(body, "accounts.id") is None
    assert lookup_value([{"tenantId": "t"}], "0.tenantId") == "t"


def _entry(**fields: Any) -> dict[str, Any]:
    return {"acme": {"name": "Acme", "authorization_url": "https://p.example/auth",
                     "token_url": "https://p.example/token", **fields}}


LOOKUP = {"url": "https://p.example/me", "keep": {"tenant": "0.id"}}


@pytest.mark.parametrize("fields,needle", [
    ({"connect_lookup": {**LOOKUP, "keep": {"tenant": "0..id"}}},
     "field 'connect_lookup.keep'"),
    ({"connect_lookup": {**LOOKUP, "keep": {}}}, "field 'connect_lookup.keep'"),
    ({"connect_lookup": {**LOOKUP, "keep": {"tenant-id": "0.id"}}},
     "field 'connect_lookup.keep'"),
    ({"connect_lookup": {**LOOKUP, "keep": {"key": "0.refresh_token"}}}, "looks like a secret"),
    ({"connect_lookup": {**LOOKUP, "method": "POST"}}, "field 'connect_lookup.method'"),
    ({"connect_lookup": {**LOOKUP, "auth_scheme": "Bearer x"}},
     "field 'connect_lookup.auth_scheme'"),
    ({"connect_lookup": {**LOOKUP, "url": "http://p.example/me"}},
     "connect_lookup.url must be an https URL"),
    ({"connect_lookup": {**LOOKUP, "url": "https://${region}.p.example/me"}},
     "connect_lookup.url uses ${region}"),
    ({"connect_lookup": LOOKUP, "authorize_params": {"org": "${tenant}"},
      "inputs": {"tenant": {"title": "Tenant", "example": "t"}}},
     "authorize_params.org uses ${tenant}, which connect_lookup fills only after"),
    ({"connect_lookup": LOOKUP, "keep_from_callback": ["tenant"]},
     "connect_lookup.keep.tenant is also kept"),
    ({"connect_lookup": LOOKUP, "auth_types": ["apiKey"]}, "auth_types must include oauth2"),
    ({"connect_lookup": LOOKUP, "api_headers": {"X-Org": "${org}"}},
     "api_headers.X-Org uses ${org}"),
])
def test_a_malformed_connect_lookup_is_refused_naming_entry_and_field(
        tmp_path: Path, fields: dict[str, Any], needle: str) -> None:
    path = tmp_path / "providers.yaml"
    path.write_text(yaml.safe_dump(_entry(**fields)))
    with pytest.raises(CatalogError) as err:
        parse_entries(path, development=True)
    assert "entry 'acme'" in str(err.value) and needle in str(err.value), str(err.value)


def test_looked_up_names_count_as_declared_in_api_base_url_and_api_headers(
        tmp_path: Path) -> None:
    path = tmp_path / "providers.yaml"
    path.write_text(yaml.safe_dump(_entry(
        api_base_url="${host}/v1", api_headers={"X-Tenant": "${tenant}"},
        connect_lookup={"url": "https://p.example/me",
                        "keep": {"tenant": "0.id", "host": "0.api_host"}})))
    acme = parse_entries(path, development=False)["acme"]
    assert acme.lookup_names == {"tenant", "host"} <= acme.kept_names
    assert acme.api_base_variable == "host"


def test_the_server_refuses_to_start_with_a_malformed_connect_lookup(tmp_path: Path) -> None:
    bad = tmp_path / "providers.yaml"
    bad.write_text(yaml.safe_dump(_entry(connect_lookup={**LOOKUP, "keep": {"t": "a..b"}})))
    message = refusal_to_start(tmp_path, bad)
    assert str(bad) in message and "entry 'acme'" in message
    assert "field 'connect_lookup.keep'" in message


async def test_an_input_the_flow_looks_up_is_asked_only_of_the_other_credential_types(
        start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        async with alloy.api() as api:
            answer = await api.get("/connectors/mailchimp/credentials/metadata")
    assert answer.status_code == 200
    schemas = {m["authenticationType"]: m for m in answer.json()["metadata"]}
    oauth, basic = schemas["oauth2"], schemas["basic"]
    assert "dc" not in oauth["inputSchema"]["properties"]
    assert "dc" not in oauth["inputSchema"]["required"] and "dc" not in oauth["sampleInput"]
    assert "dc" in basic["inputSchema"]["required"] and basic["sampleInput"]["dc"] == "us21"

"""Per-connection header values: `${name}` in `api_headers`, filled from the connection's inputs
and kept values, sent on every proxied call (Harvest's Harvest-Account-Id, Xero's
Xero-tenant-id)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from alloy_oauth.providers import CatalogError, parse_entries
from alloy_oauth.testing import SalesforceEmulator
from alloy_oauth.testing.flow import connect_flow
from tests.conftest import StartAlloy
from tests.support.servers import run_asgi
from tests.test_proxy import header_values, proxied, upstream_app
from tests.test_refresh import FakeProvider, seed_connection

APP = "http://localhost:3999/oauth/callback"
HARVESTISH = {
    "harvestish": {
        "name": "Harvest-like",
        "auth_types": ["oauth2", "bearer"],
        "inputs": {"account_id": {"title": "Harvest account ID", "pattern": "[0-9]+",
                                  "example": "123456"}},
        "api_headers": {"Harvest-Account-Id": "${account_id}", "User-Agent": "alloy-test"},
    }
}


async def test_an_input_fills_a_header_of_every_proxied_call(start_alloy: StartAlloy) -> None:
    with proxied(start_alloy, extra_connectors=HARVESTISH) as (alloy, _, _conn):
        async with alloy.api() as api:
            made = await api.post("/connectors/harvestish/credentials", json={
                "credentialType": "bearer",
                "data": {"token": "pat-secret-1", "account_id": "987654"}})
            assert made.status_code == 200, made.text
            conn_id = made.json()["connectionId"]
            echoed = await api.get(f"/connections/{conn_id}/proxy/echo/users/me")
            assert echoed.status_code == 200, echoed.text
            other = await api.post("/connectors/harvestish/credentials", json={
                "credentialType": "bearer",
                "data": {"token": "pat-secret-2", "account_id": "111"}})
            echoed_other = await api.get(
                f"/connections/{other.json()['connectionId']}/proxy/echo/users/me")
    sent = echoed.json()
    assert header_values(sent, "harvest-account-id") == ["987654"]
    assert header_values(sent, "user-agent") == ["alloy-test"]
    assert header_values(sent, "authorization") == ["Bearer pat-secret-1"]
    # Each connection its own value.
    assert header_values(echoed_other.json(), "harvest-account-id") == ["111"]


async def test_a_value_kept_from_the_token_answer_fills_a_header_after_a_real_flow(
        start_alloy: StartAlloy) -> None:
    upstream = FakeProvider()
    with SalesforceEmulator() as sf, run_asgi(upstream_app(upstream)) as api_url:
        sf_url = sf.base_url
        providers = {"salesforce": {
            **sf.providers_entry()["salesforce"], "api_base_url": f"{api_url}/api",
            "inputs": {"region": {"title": "Region", "pattern": "[a-z]+", "example": "eu"}},
            "api_headers": {"X-Identity": "${id}", "X-Region": "${region}"}}}
        with start_alloy(providers=providers, connector_env=sf.connector_env()) as alloy:
            async with alloy.api() as api:
                flow = await connect_flow(api, "salesforce", redirect_uri=APP,
                                          data={"region": "eu"})
                assert flow.connection_id, flow.query
                identity = (await api.get(
                    f"/connections/{flow.connection_id}")).json()["metadata"]["id"]
                echoed = await api.get(f"/connections/{flow.connection_id}/proxy/echo/x")
    assert echoed.status_code == 200, echoed.text
    assert identity.startswith(sf_url + "/id/")
    assert header_values(echoed.json(), "x-identity") == [identity]
    assert header_values(echoed.json(), "x-region") == ["eu"]


async def test_a_connection_without_the_value_a_header_needs_is_a_clear_400(
        start_alloy: StartAlloy) -> None:
    tenantish = {"tenantish": {"name": "Xero-like", "keep_from_callback": ["tenant"],
                               "api_headers": {"Xero-tenant-id": "${tenant}"}}}
    with proxied(start_alloy, extra_connectors=tenantish) as (alloy, provider, _):
        conn_id = seed_connection(alloy, connector_id="tenantish")  # kept nothing
        async with alloy.api() as api:
            answer = await api.get(f"/connections/{conn_id}/proxy/echo/x")
            with contextlib.closing(sqlite3.connect(alloy.db_path)) as db:
                db.execute("UPDATE connections SET metadata = ? WHERE id = ?",
                           ('{"tenant": "a\\r\\nX-Evil: 1"}', conn_id))
                db.commit()
            injected = await api.get(f"/connections/{conn_id}/proxy/echo/x")
    assert answer.status_code == 400
    assert answer.json()["error"] == "missing_header_value"
    assert "'tenant'" in answer.json()["message"] and "Xero-tenant-id" in answer.json()["message"]
    assert injected.status_code == 400 and "control characters" in injected.json()["message"]
    assert provider.api_calls == []


@pytest.mark.parametrize("fields,needle", [
    ({"api_headers": {"X-Account": "${account}"}}, "api_headers.X-Account uses ${account}"),
    ({"inputs": {"account": {"title": "A", "example": "1", "required": False}},
      "api_headers": {"X-Account": "${account}"}}, "must be required"),
])
def test_a_header_variable_must_be_declared_and_required(
        tmp_path: Path, fields: dict[str, Any], needle: str) -> None:
    path = tmp_path / "providers.yaml"
    path.write_text(yaml.safe_dump({"acme": {
        "name": "Acme", "authorization_url": "https://p.example/auth",
        "token_url": "https://p.example/token", **fields}}))
    with pytest.raises(CatalogError) as err:
        parse_entries(path, development=True)
    assert "entry 'acme'" in str(err.value) and needle in str(err.value), str(err.value)

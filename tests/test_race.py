"""The race: two server processes on one database, 200 concurrent token requests for an
expired connection, against oidc-provider with refresh-token rotation (a second use of a
refresh token fails there). Exactly one refresh reaches the provider and all 200 answers carry
the same, valid token; 20 rounds, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx2
import yaml

from alloy_oauth import AsyncAlloyOAuthFlow
from alloy_oauth.accounts import create_account_with_key
from alloy_oauth.crypto import new_key
from alloy_oauth.store.db import migrate
from tests.support.browser import HttpBrowser, query_params
from tests.support.oidc import provider_yaml_entry, start_oidc_provider
from tests.support.postgres import PostgresCluster
from tests.support.servers import free_port
from tests.test_refresh import set_expiry, with_sessions
from tests.test_two_processes import serve

ROUNDS = 20
REQUESTS = 200
APP_CALLBACK = "http://localhost:3999/oauth/callback"


async def connect(api_key: str, base_url: str) -> str:
    async with AsyncAlloyOAuthFlow(api_key=api_key, base_url=base_url) as flow, \
            HttpBrowser() as browser:
        start = await flow.initiate_oauth_flow("oidc", APP_CALLBACK)
        back = await browser.oidc_login_and_consent(start.oauth_url, stop_at=APP_CALLBACK)
        params = query_params(back)
        conn = await flow.handle_oauth_callback("oidc", params["code"], params["state"])
        return conn.connection_id


async def race_rounds(database_url: str, tmp_path: Path) -> None:
    port_a, port_b = free_port(), free_port()
    public = f"http://127.0.0.1:{port_a}"
    with start_oidc_provider(redirect_uris=[f"{public}/api/strategy/callback"]) as oidc:
        providers = tmp_path / "providers.yaml"
        providers.write_text(yaml.safe_dump(provider_yaml_entry(oidc)))
        migrate(database_url)
        _, api_key = with_sessions(database_url,
                                   lambda sessions: create_account_with_key(sessions, "race"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOY_")}
        env.update({
            "ALLOY_DATABASE_URL": database_url, "ALLOY_ENCRYPTION_KEYS": new_key("race"),
            "ALLOY_PUBLIC_URL": public, "ALLOY_PROVIDERS_FILE": str(providers),
            "ALLOY_CONNECTOR_OIDC_CLIENT_ID": oidc.client_id,
            "ALLOY_CONNECTOR_OIDC_CLIENT_SECRET": oidc.client_secret,
            # Only the requests race here; the background refresher has its own test.
            "ALLOY_BACKGROUND_REFRESH": "false", "ALLOY_WEBHOOK_DELIVERY": "false",
        })
        with serve(port_a, env, tmp_path) as server_a, serve(port_b, env, tmp_path) as server_b:
            conn_id = await connect(api_key, server_a)
            headers = {"Authorization": f"Bearer {api_key}"}
            limits = httpx2.Limits(max_connections=REQUESTS, max_keepalive_connections=REQUESTS)
            async with httpx2.AsyncClient(base_url=server_a, headers=headers, timeout=60,
                                          limits=limits) as a, \
                    httpx2.AsyncClient(base_url=server_b, headers=headers, timeout=60,
                                       limits=limits) as b, \
                    httpx2.AsyncClient(timeout=10) as plain:
                seen: set[str] = set()
                for round_no in range(ROUNDS):
                    set_expiry(database_url, conn_id, -30)
                    await oidc.areset_stats()
                    answers = await asyncio.gather(*(
                        (a if i % 2 else b).get(f"/connections/{conn_id}/token")
                        for i in range(REQUESTS)))
                    assert [r.status_code for r in answers] == [200] * REQUESTS, \
                        (round_no, {r.status_code: r.text for r in answers})
                    tokens = {r.json()["accessToken"] for r in answers}
                    stats = await oidc.astats()
                    assert stats["token_requests"] == {"refresh_token": 1}, (round_no, stats)
                    assert stats["token_success"] == {"refresh_token": 1}, (round_no, stats)
                    assert len(tokens) == 1, (round_no, len(tokens))
                    token = tokens.pop()
                    assert token not in seen  # a fresh token every round
                    seen.add(token)
                    me = await plain.get(oidc.userinfo_url,
                                         headers={"Authorization": f"Bearer {token}"})
                    assert me.status_code == 200, me.text
                info = (await a.get(f"/connections/{conn_id}")).json()
                assert info["status"] == "connected" and info["lastError"] is None


async def test_two_processes_on_sqlite_refresh_exactly_once_per_expiry(
        tmp_path: Path) -> None:
    await race_rounds(f"sqlite+aiosqlite:///{tmp_path / 'race.db'}", tmp_path)


async def test_two_processes_on_postgresql_refresh_exactly_once_per_expiry(
        tmp_path: Path, postgres: PostgresCluster) -> None:
    await race_rounds(postgres.create_database("race"), tmp_path)

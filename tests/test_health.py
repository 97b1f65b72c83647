"""Connection health: temporary failures keep serving the valid token and back off; a revoked
grant is needs_reauth after one attempt, with a webhook and no more provider calls; the
background refresher renews tokens with bounded concurrency, safely from several processes;
a failed revocation on delete still deletes, and is recorded."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import yaml

from alloy_oauth import AsyncAlloyOAuthFlow, verify_webhook_signature
from alloy_oauth.accounts import create_account_with_key
from alloy_oauth.crypto import new_key
from alloy_oauth.server.app import create_app
from alloy_oauth.settings import Settings
from alloy_oauth.store.db import migrate
from tests.conftest import Alloy, StartAlloy
from tests.support.browser import HttpBrowser, query_params
from tests.support.oidc import provider_yaml_entry, start_oidc_provider
from tests.support.postgres import PostgresCluster
from tests.support.servers import free_port, run_asgi
from tests.test_refresh import (
    CLIENT_ENV,
    alloy_with_fake,
    provider_entry,
    read_connection,
    seed_connection,
    set_expiry,
    start_fake_provider,
    start_receiver,
    stored_refresh_token,
    token_of,
    with_sessions,
)

APP_CALLBACK = "http://localhost:3999/oauth/callback"


async def wait_until_cooled(alloy: Alloy, conn_id: str) -> None:
    conn = read_connection(alloy.settings.database_url, conn_id)
    assert conn.next_retry_at is not None
    delay = (conn.next_retry_at - conn.updated_at).total_seconds()
    await asyncio.sleep(max(0.0, delay) + 0.05)


async def test_provider_500_then_timeout_then_recovery_ends_connected_without_losing_tokens(
        start_alloy: StartAlloy) -> None:
    settings = {"refresh_retry_base": 0.4, "http_timeout": 1.0}
    with alloy_with_fake(start_alloy, script=["500", "timeout", "ok"], hang=3.0,
                         settings=settings) as (alloy, provider):
        conn_id = seed_connection(alloy, expires_in=120)  # valid, but inside the margin
        async with alloy.api() as api:
            first = await token_of(api, conn_id)
            assert first.status_code == 200 and first.json()["accessToken"] == "at-0"
            info = (await api.get(f"/connections/{conn_id}")).json()
            assert info["status"] == "error" and info["lastError"].startswith("server_error")
            # Cooling down: the valid token is served and the provider left alone.
            for _ in range(20):
                assert (await token_of(api, conn_id)).json()["accessToken"] == "at-0"
            assert provider.refresh_count() == 1

            await wait_until_cooled(alloy, conn_id)
            second = await token_of(api, conn_id)  # the provider hangs past the timeout
            assert second.status_code == 200 and second.json()["accessToken"] == "at-0"
            info = (await api.get(f"/connections/{conn_id}")).json()
            assert info["status"] == "error" and info["lastError"].startswith("timeout")
            for _ in range(20):
                assert (await token_of(api, conn_id)).json()["accessToken"] == "at-0"
            assert provider.refresh_count() == 2
            assert read_connection(alloy.settings.database_url, conn_id).refresh_failures == 2

            await wait_until_cooled(alloy, conn_id)
            third = await token_of(api, conn_id)
            assert third.json()["accessToken"] == "at-1"
            info = (await api.get(f"/connections/{conn_id}")).json()
            assert info["status"] == "connected" and info["lastError"] is None
            assert info["lastRefreshAt"] is not None
            # No refresh token was lost: every attempt presented the original, the new one is
            # stored, and the next refresh works with it.
            assert [r["presented"] for r in provider.refreshes] == ["rt-0"] * 3
            assert stored_refresh_token(alloy, conn_id) == "rt-1"
            fourth = await token_of(api, conn_id, forceRefresh="true")
            assert fourth.json()["accessToken"] == "at-2"
            events = (await api.get("/webhooks/events",
                                    params={"type": "connection.recovered"})).json()["events"]
        assert provider.refresh_count() == 4
        assert [e["connectionId"] for e in events] == [conn_id]
        stored = read_connection(alloy.settings.database_url, conn_id)
        assert stored.refresh_failures == 0 and stored.next_retry_at is None


async def test_expired_token_and_failing_provider_answer_502_with_retry_after(
        start_alloy: StartAlloy) -> None:
    with alloy_with_fake(start_alloy, script=["500", "500"],
                         settings={"refresh_retry_base": 30.0}) as (alloy, provider):
        conn_id = seed_connection(alloy, expires_in=-10)
        async with alloy.api() as api:
            answers = [await token_of(api, conn_id) for _ in range(5)]
        assert {a.status_code for a in answers} == {502}
        assert {a.json()["error"] for a in answers} == {"provider_error"}
        assert all(15 <= int(a.headers["retry-after"]) <= 30 for a in answers)
        assert "at-0" not in answers[0].text
        assert provider.refresh_count() == 1


async def test_revoked_grant_needs_reauth_after_one_attempt_with_webhook_and_no_more_calls(
        start_alloy: StartAlloy) -> None:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    with start_oidc_provider(redirect_uris=[f"{public}/api/strategy/callback"]) as oidc, \
            start_receiver() as receiver, start_alloy(
                providers=provider_yaml_entry(oidc), public_url=public,
                connector_env={"ALLOY_CONNECTOR_OIDC_CLIENT_ID": oidc.client_id,
                               "ALLOY_CONNECTOR_OIDC_CLIENT_SECRET": oidc.client_secret},
                webhook_delivery=True, webhook_poll_interval=0.1,
                background_refresh=True, refresh_interval=0.2) as alloy:
        async with alloy.api() as api, AsyncAlloyOAuthFlow(
                api_key=alloy.api_key, base_url=alloy.base_url) as flow, \
                HttpBrowser() as browser:
            hook = (await api.put("/webhooks", json={"url": receiver.url})).json()["webhook"]
            secret = hook["secret"]

            async def connect() -> str:
                start = await flow.initiate_oauth_flow("oidc", APP_CALLBACK)
                back = await browser.oidc_login_and_consent(start.oauth_url,
                                                            stop_at=APP_CALLBACK)
                params = query_params(back)
                done = await flow.handle_oauth_callback("oidc", params["code"], params["state"])
                return done.connection_id

            conn_id = await connect()
            await receiver.wait_for("connection.created")
            # The user revokes the grant at the provider.
            async with httpx2.AsyncClient() as http:
                revoked = await http.post(
                    oidc.revocation_url, auth=(oidc.client_id, oidc.client_secret),
                    data={"token": stored_refresh_token(alloy, conn_id),
                          "token_type_hint": "refresh_token"})
            assert revoked.status_code == 200
            await oidc.areset_stats()
            # Expired now: the request or the background refresher, whichever is first, tries.
            set_expiry(alloy.settings.database_url, conn_id, -30)

            answer = await token_of(api, conn_id)
            assert answer.status_code == 409 and answer.json()["error"] == "needs_reauth"
            stats = await oidc.astats()
            assert stats["token_requests"] == {"refresh_token": 1}
            assert stats["token_error_codes"] == {"invalid_grant": 1}
            info = (await api.get(f"/connections/{conn_id}")).json()
            assert info["status"] == "needs_reauth"
            assert info["lastError"].startswith("invalid_grant")

            # Nothing calls the provider again: not the token endpoint, not the proxy, not the
            # background refresher (it ticks every 0.2 s).
            for _ in range(10):
                again = await token_of(api, conn_id, forceRefresh="true")
                assert again.status_code == 409
            proxied = await api.get(f"/connections/{conn_id}/proxy/me")
            assert proxied.status_code == 409 and proxied.json()["error"] == "needs_reauth"
            await asyncio.sleep(1.0)
            assert (await oidc.astats())["token_requests"] == {"refresh_token": 1}

            [(headers, body)] = await receiver.wait_for("connection.needs_reauth")
            assert verify_webhook_signature(body, headers["alloy-signature"], secret)
            assert not verify_webhook_signature(body, headers["alloy-signature"], "whsec_x")
            event = receiver.events("connection.needs_reauth")[0]
            assert event["data"]["connectionId"] == conn_id
            assert event["data"]["status"] == "needs_reauth"

            # Reconnecting gives a working connection again.
            fresh_id = await connect()
            assert (await token_of(api, fresh_id)).status_code == 200
            assert len(await receiver.wait_for("connection.created", count=2)) == 2


def shared_database(database_url: str, tmp_path: Path, provider_url: str) -> Alloy:
    """A migrated database with an account, and the settings servers on it share."""
    providers = tmp_path / "providers.yaml"
    providers.write_text(yaml.safe_dump(provider_entry(provider_url)))
    settings = Settings(database_url=database_url, public_url="http://127.0.0.1:1",
                        encryption_keys=new_key("shared"), providers_file=str(providers),
                        key_file=str(tmp_path / "dev.key"), connector_env=CLIENT_ENV)
    migrate(database_url)
    account_id, key = with_sessions(
        database_url, lambda sessions: create_account_with_key(sessions, "shared"))
    return Alloy(base_url="", api_key=key, account_id=account_id, settings=settings,
                 db_path=tmp_path / "unused.db")


@contextlib.contextmanager
def run_servers(settings: Settings, count: int) -> Iterator[list[str]]:
    """`count` servers on one database, each with its own runtime (as processes have)."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(run_asgi(create_app(settings))) for _ in range(count)]


async def _background_refresh_is_bounded_and_once(database_url: str, tmp_path: Path) -> None:
    with start_fake_provider(delay=0.3) as provider:
        alloy = shared_database(database_url, tmp_path, provider.url)
        due = [seed_connection(alloy, refresh_token=f"rt-due-{i}", expires_in=120)
               for i in range(8)]
        later = seed_connection(alloy, refresh_token="rt-later", expires_in=3000)
        settings = alloy.settings.model_copy(update={
            "background_refresh": True, "refresh_interval": 0.3, "refresh_concurrency": 3})
        with run_servers(settings, 2):
            deadline = time.monotonic() + 20
            while provider.refresh_count() < len(due) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # more ticks of both processes: nothing more to do
        presented = sorted(r["presented"] for r in provider.refreshes)
        assert presented == sorted(f"rt-due-{i}" for i in range(8))  # each exactly once
        for conn_id in due:
            conn = read_connection(database_url, conn_id)
            assert conn.status == "connected" and conn.version == 2
        assert read_connection(database_url, later).version == 1
        # In parallel, but two processes with three refreshes each at most.
        assert 2 <= provider.max_concurrent <= 6


async def test_background_refresher_on_sqlite_renews_each_due_token_once(
        tmp_path: Path) -> None:
    await _background_refresh_is_bounded_and_once(
        f"sqlite+aiosqlite:///{tmp_path / 'bg.db'}", tmp_path)


async def test_background_refresher_on_postgresql_is_bounded_and_renews_each_once(
        tmp_path: Path, postgres: PostgresCluster) -> None:
    await _background_refresh_is_bounded_and_once(
        postgres.create_database("bg"), tmp_path)


async def test_background_refresher_leaves_needs_reauth_and_cooling_connections_alone(
        start_alloy: StartAlloy) -> None:
    with alloy_with_fake(start_alloy, script=["invalid_grant", "500"], settings={
            "background_refresh": True, "refresh_interval": 0.2,
            "refresh_retry_base": 60.0}) as (alloy, provider):
        seed_connection(alloy, refresh_token="rt-a", expires_in=100)
        seed_connection(alloy, refresh_token="rt-b", expires_in=100)
        deadline = time.monotonic() + 10
        while provider.refresh_count() < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        assert provider.refresh_count() == 2
        assert alloy.rows("connections", "status = 'needs_reauth'") == 1
        assert alloy.rows("connections", "status = 'error'") == 1


async def test_delete_still_deletes_when_revocation_fails_and_records_it(
        start_alloy: StartAlloy) -> None:
    with alloy_with_fake(start_alloy, revoke_status=503) as (alloy, provider):
        conn_id = seed_connection(alloy)
        async with alloy.api() as api:
            deleted = await api.delete(f"/connections/{conn_id}")
            assert deleted.status_code == 200 and deleted.json()["success"] is True
            assert (await api.get(f"/connections/{conn_id}")).status_code == 404
            [event] = (await api.get("/webhooks/events",
                                     params={"type": "connection.deleted"})).json()["events"]
        assert provider.revocations == ["rt-0", "at-0"]  # the refresh token, then the access
        assert event["connectionId"] == conn_id
        assert event["data"]["revoked"] is False
        assert "503" in event["data"]["revocationError"]
        assert "rt-0" not in str(event) and "at-0" not in str(event)


async def test_delete_revokes_the_grant_when_the_provider_answers(
        start_alloy: StartAlloy) -> None:
    with alloy_with_fake(start_alloy) as (alloy, provider):
        conn_id = seed_connection(alloy)
        async with alloy.api() as api:
            assert (await api.delete(f"/connections/{conn_id}")).status_code == 200
            [event] = (await api.get("/webhooks/events",
                                     params={"type": "connection.deleted"})).json()["events"]
        assert provider.revocations == ["rt-0"]
        assert event["data"]["revoked"] is True and event["data"]["revocationError"] is None

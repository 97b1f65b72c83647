"""The request path's reads (API key, connection) on SQLite and PostgreSQL: every stored
field comes back as written (JSON, times), and nothing is cached between requests."""

from __future__ import annotations

import asyncio
from datetime import datetime

import asyncpg
import pytest

from alloy_oauth.store.reads import READ_POOL_SIZE
from tests.conftest import StartAlloy
from tests.support.aio import run_coro
from tests.support.postgres import PostgresCluster
from tests.test_refresh import (
    alloy_with_fake,
    read_connection,
    seed_connection,
    set_expiry,
    token_of,
    update_connection,
)


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
async def test_connections_read_back_exactly_on_both_databases(
        start_alloy: StartAlloy, database: str, request: pytest.FixtureRequest) -> None:
    settings: dict[str, str] = {}
    if database == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        settings = {"database_url": cluster.create_database("reads")}
    with alloy_with_fake(start_alloy, settings=settings) as (alloy, _provider):
        oauth_id = seed_connection(alloy, expires_in=3000)
        stored = read_connection(alloy.settings.database_url, oauth_id)
        async with alloy.api() as api:
            created = await api.post("/connectors/freshdesk/credentials", json={
                "credentialType": "basic",
                "data": {"username": "key-123456", "password": "X", "domain": "acme"}})
            assert created.status_code == 200, created.text
            basic_id = created.json()["connectionId"]

            answer = await api.get(f"/connections/{basic_id}")
            assert answer.status_code == 200
            shown = answer.json()
            assert shown["metadata"] == {"domain": "acme"}  # a JSON column, decoded
            assert shown["connectorId"] == "freshdesk" and shown["status"] == "connected"
            assert "key-123456" not in answer.text
            by_credential = await api.get(f"/connections/{shown['credentialId']}")
            assert by_credential.json() == shown

            token = await token_of(api, oauth_id)
            assert token.status_code == 200 and token.json()["accessToken"] == "at-0"
            assert stored.expires_at is not None
            assert datetime.fromisoformat(token.json()["expiresAt"]) == stored.expires_at

            # Another account's key sees neither; a wrong key is refused.
            _, other_key = alloy.new_account()
            for path in (f"/connections/{basic_id}", f"/connections/{oauth_id}",
                         f"/connections/{oauth_id}/token", f"/connections/{oauth_id}/proxy/me"):
                hidden = await api.get(path, headers={"Authorization": f"Bearer {other_key}"})
                assert hidden.status_code == 404 and "at-0" not in hidden.text
                wrong = await api.get(path, headers={"Authorization": "Bearer ak_wrong"})
                assert wrong.status_code == 401 and "at-0" not in wrong.text
            not_oauth = await token_of(api, basic_id)
            assert not_oauth.status_code == 409 and not_oauth.json()["error"] == "not_oauth"

            # Deleted through the API: the next read does not find it.
            assert (await api.delete(f"/connections/{basic_id}")).status_code == 200
            assert (await api.get(f"/connections/{basic_id}")).status_code == 404


def set_status(url: str, conn_id: str, status: str) -> None:
    update_connection(url, conn_id, status=status,
                      last_error="invalid_grant: revoked elsewhere")


async def test_a_token_that_looks_valid_is_not_served_once_the_connection_needs_the_user(
        start_alloy: StartAlloy) -> None:
    with alloy_with_fake(start_alloy) as (alloy, provider):
        conn_id = seed_connection(alloy, expires_in=3000)
        async with alloy.api() as api:
            assert (await token_of(api, conn_id)).json()["accessToken"] == "at-0"
            # Another process marks it (a refused refresh): the next call here sees it.
            set_status(alloy.settings.database_url, conn_id, "needs_reauth")
            refused = await token_of(api, conn_id)
            assert refused.status_code == 409 and refused.json()["error"] == "needs_reauth"
            assert "at-0" not in refused.text
            # A temporary failure elsewhere ("error") still serves the valid token.
            set_status(alloy.settings.database_url, conn_id, "error")
            assert (await token_of(api, conn_id)).json()["accessToken"] == "at-0"
            # Due for a refresh: the full path refreshes it.
            set_expiry(alloy.settings.database_url, conn_id, 30)
            assert (await token_of(api, conn_id)).json()["accessToken"] == "at-1"
        assert provider.refresh_count() == 1


def terminate_other_sessions(cluster: PostgresCluster, database_url: str) -> int:
    """What a database restart does to the server's connections: ends them all."""
    name = database_url.rsplit("/", 1)[1]

    async def work() -> int:
        conn = await asyncpg.connect(host=cluster.host, port=cluster.port, user=cluster.user,
                                     database="postgres")
        try:
            ended: int = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()", name)
            return ended
        finally:
            await conn.close()
    return run_coro(work)


async def test_postgres_reads_survive_dropped_connections_and_more_callers_than_connections(
        start_alloy: StartAlloy, postgres: PostgresCluster) -> None:
    settings = {"database_url": postgres.create_database("dropped")}
    with alloy_with_fake(start_alloy, settings=settings) as (alloy, provider):
        conn_id = seed_connection(alloy, expires_in=3000)
        async with alloy.api() as api:
            # Four times the reader's connections at once: each waits its turn, none fails.
            answers = await asyncio.gather(*(token_of(api, conn_id)
                                             for _ in range(4 * READ_POOL_SIZE)))
            assert [a.status_code for a in answers] == [200] * (4 * READ_POOL_SIZE)
            assert terminate_other_sessions(postgres, alloy.settings.database_url) >= 2
            # Every idle connection is dead now: the next reads answer all the same.
            for _ in range(3):
                again = await asyncio.gather(*(token_of(api, conn_id) for _ in range(5)))
                assert [a.json()["accessToken"] for a in again] == ["at-0"] * 5
            shown = await api.get(f"/connections/{conn_id}/proxy/me")
            assert shown.status_code != 500, shown.text
        assert provider.refresh_count() == 0

"""Revocation the provider's own way (the `revocation` catalog field), what `DELETE
/connections/{id}` reports about it, and `DELETE /users/{id}` revoking each of the user's
connections before it deletes them and the user."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from alloy_oauth.client import AsyncAlloyOAuthFlow, DeletedConnection
from alloy_oauth.providers import CatalogError, parse_entries
from alloy_oauth.testing import GitHubEmulator, HubSpotEmulator
from alloy_oauth.testing.flow import connect_flow
from tests.conftest import Alloy, StartAlloy
from tests.support.servers import run_asgi
from tests.test_refresh import seed_connection

APP = "http://localhost:3999/oauth/callback"


# --- a provider whose revocation calls are not RFC 7009 ----------------------------------------

@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)


@dataclass
class OwnWayProvider:
    """Records every revocation call; a token or path holding "fail" gets a 500. `delay`
    holds each call open so that concurrency shows (`max_in_flight`)."""

    url: str = ""
    delay: float = 0.0
    seen: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0


def own_way_app(p: OwnWayProvider) -> FastAPI:
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["POST", "DELETE"])
    async def revoke(path: str, request: Request) -> Response:
        body = await request.body()
        p.seen.append(Seen(request.method, request.scope["raw_path"].decode(),
                           {k.lower(): v for k, v in request.headers.items()}, body))
        p.in_flight += 1
        p.max_in_flight = max(p.max_in_flight, p.in_flight)
        try:
            await asyncio.sleep(p.delay)
        finally:
            p.in_flight -= 1
        if "fail" in path or b"fail" in body or "fail" in request.headers.get("authorization",
                                                                              ""):
            return JSONResponse({"error": "server_error", "error_description": "it broke"},
                                status_code=500)
        return Response(status_code=204 if request.method == "DELETE" else 200)

    return app


@contextlib.contextmanager
def own_way_provider(**knobs: Any) -> Iterator[OwnWayProvider]:
    provider = OwnWayProvider(**knobs)
    with run_asgi(own_way_app(provider)) as url:
        provider.url = url
        yield provider


def entry(url: str, **fields: Any) -> dict[str, Any]:
    return {"name": "Own way", "authorization_url": f"{url}/authorize",
            "token_url": f"{url}/token", "api_base_url": f"{url}/api", **fields}


def env_for(*connector_ids: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for cid in connector_ids:
        key = cid.upper().replace("-", "_")
        env[f"ALLOY_CONNECTOR_{key}_CLIENT_ID"] = f"{cid}-client"
        env[f"ALLOY_CONNECTOR_{key}_CLIENT_SECRET"] = f"{cid}-secret-value"
    return env


def move_to_user(alloy: Alloy, conn_id: str, user_id: str) -> None:
    with contextlib.closing(sqlite3.connect(alloy.db_path)) as db:
        db.execute("UPDATE connections SET user_id = ? WHERE id = ?", (user_id, conn_id))
        db.commit()


async def deleted_events(api: Any) -> list[dict[str, Any]]:
    answer = await api.get("/webhooks/events", params={"type": "connection.deleted"})
    assert answer.status_code == 200, answer.text
    events: list[dict[str, Any]] = answer.json()["events"]
    return events


# --- the field, as the provider documents its call ---------------------------------------------

async def test_dropbox_style_revocation_posts_with_the_access_token_as_bearer_and_no_body(
        start_alloy: StartAlloy) -> None:
    with own_way_provider() as p:
        providers = {"dropboxish": entry(p.url, revocation={
            "url": f"{p.url}/2/auth/token/revoke", "auth": "bearer"})}
        with start_alloy(providers=providers, connector_env=env_for("dropboxish")) as alloy:
            conn_id = seed_connection(alloy, connector_id="dropboxish", access_token="sl.at-1",
                                      refresh_token="rt-1")
            async with alloy.api() as api:
                answer = await api.delete(f"/connections/{conn_id}")
                assert answer.json() == {"success": True, "revoked": True,
                                         "revocationError": None}
                [event] = await deleted_events(api)
    [call] = p.seen
    assert (call.method, call.path) == ("POST", "/2/auth/token/revoke")
    assert call.headers["authorization"] == "Bearer sl.at-1"
    assert call.body == b"" and "content-type" not in call.headers
    assert event["data"]["revoked"] is True and event["connectionId"] == conn_id


async def test_the_token_goes_in_the_path_or_a_form_field_with_basic_client_credentials(
        start_alloy: StartAlloy) -> None:
    with own_way_provider() as p:
        providers = {
            "by-path": entry(p.url, inputs={"team": {"title": "Team", "example": "blue",
                                                     "pattern": "[a-z]+"}},
                             revocation={"method": "DELETE", "auth": "none", "token": "path",
                                         "token_kind": "refresh_token",
                                         "url": f"{p.url}/teams/${{team}}/tokens/${{token}}"}),
            "by-form": entry(p.url, revocation={
                "url": f"{p.url}/apps/${{client_id}}/revoke", "auth": "client_basic",
                "token": "form:access_token"}),
        }
        with start_alloy(providers=providers,
                         connector_env=env_for("by-path", "by-form")) as alloy:
            by_path = seed_connection(alloy, connector_id="by-path", refresh_token="r/t+1")
            with contextlib.closing(sqlite3.connect(alloy.db_path)) as db:
                db.execute("UPDATE connections SET metadata = ? WHERE id = ?",
                           ('{"team": "blue"}', by_path))
                db.commit()
            by_form = seed_connection(alloy, connector_id="by-form", access_token="at-9")
            async with alloy.api() as api:
                for conn_id in (by_path, by_form):
                    answer = (await api.delete(f"/connections/{conn_id}")).json()
                    assert answer["revoked"] is True, answer
    path_call, form_call = p.seen
    # The refresh token is one path segment, escaped; no client credentials.
    assert (path_call.method, path_call.path) == ("DELETE", "/teams/blue/tokens/r%2Ft%2B1")
    assert "authorization" not in path_call.headers and path_call.body == b""
    assert form_call.path == "/apps/by-form-client/revoke"
    assert form_call.headers["content-type"] == "application/x-www-form-urlencoded"
    assert form_call.body == b"access_token=at-9"
    assert base64.b64decode(form_call.headers["authorization"].split()[1]) == (
        b"by-form-client:by-form-secret-value")


@pytest.mark.parametrize("revocation,needle", [
    ({"url": "https://p.example/revoke", "auth": "client_basic", "token": "body_json:token",
      "verb": "POST"}, "field 'revocation.verb'"),
    ({"url": "http://p.example/revoke", "auth": "bearer"}, "revocation.url must be an https"),
    ({"url": "https://p.example/${tenant}/revoke", "auth": "bearer"}, "${tenant}"),
    ({"url": "https://p.example/revoke", "auth": "none", "token": "path"},
     "`token: path` and `${token}`"),
    ({"url": "https://p.example/revoke/${token}", "auth": "none"},
     "`token: path` and `${token}`"),
    ({"url": "https://p.example/revoke", "auth": "client_basic"}, "says where the revoked"),
    ({"url": "https://p.example/revoke", "auth": "none", "token": "header:X"},
     "`body_json:<field>`"),
    ({"url": "https://p.example/revoke", "auth": "bearer", "method": "PATCH"},
     "field 'revocation.method'"),
])
def test_a_wrong_revocation_field_is_refused_at_load_naming_it(
        tmp_path: Path, revocation: dict[str, Any], needle: str) -> None:
    path = tmp_path / "providers.yaml"
    path.write_text(yaml.safe_dump({"acme": {
        "name": "Acme", "authorization_url": "https://p.example/auth",
        "token_url": "https://p.example/token", "revocation": revocation}}))
    with pytest.raises(CatalogError) as err:
        parse_entries(path, development=True)
    assert "entry 'acme'" in str(err.value) and needle in str(err.value), str(err.value)


@pytest.mark.parametrize("extra,needle", [
    ("  revocation_url: https://p.example/revoke\n", "exclude each other"),
    ("  revocation_client_auth: false\n", "applies to revocation_url only"),
    ("  inputs: {token: {title: T, example: x}}\n", "'token' is a variable of revocation.url"),
    ("  inputs: {team: {title: T, example: x, required: false}}\n"
     "  api_headers: {X-Team: '${team}'}\n", "must be required"),
])
def test_revocation_conflicts_with_other_fields_are_refused(
        tmp_path: Path, extra: str, needle: str) -> None:
    path = tmp_path / "providers.yaml"
    path.write_text("acme:\n  name: Acme\n  authorization_url: https://p.example/auth\n"
                    "  token_url: https://p.example/token\n"
                    "  revocation: {url: 'https://p.example/x', auth: bearer}\n" + extra)
    with pytest.raises(CatalogError) as err:
        parse_entries(path, development=True)
    assert needle in str(err.value), str(err.value)


# --- DELETE /connections/{id} reports what happened at the provider ----------------------------

async def test_delete_reports_revoked_true_through_the_client(start_alloy: StartAlloy) -> None:
    with GitHubEmulator() as github, start_alloy(providers=github.providers_entry(),
                                                 connector_env=github.connector_env()) as alloy:
        async with alloy.api() as api:
            flow = await connect_flow(api, "github", redirect_uri=APP)
        assert flow.connection_id
        async with AsyncAlloyOAuthFlow(api_key=alloy.api_key, base_url=alloy.base_url) as client:
            result = await client.delete_connection(flow.connection_id)
        assert result == DeletedConnection(revoked=True, revocation_error=None)
        assert len(github.revoke_requests) == 1 and github.access_tokens == {}


async def test_delete_reports_revoked_false_when_the_provider_is_down_and_still_deletes(
        start_alloy: StartAlloy) -> None:
    hubspot = HubSpotEmulator().start()
    try:
        with start_alloy(providers=hubspot.providers_entry(),
                         connector_env=hubspot.connector_env()) as alloy:
            async with alloy.api() as api:
                flow = await connect_flow(api, "hubspot", redirect_uri=APP)
            assert flow.connection_id
            hubspot.stop()  # the provider is down
            async with AsyncAlloyOAuthFlow(api_key=alloy.api_key,
                                           base_url=alloy.base_url) as client:
                result = await client.delete_connection(flow.connection_id)
            async with alloy.api() as api:
                gone = await api.get(f"/connections/{flow.connection_id}")
                [event] = await deleted_events(api)
    finally:
        hubspot.stop()
    assert result.revoked is False
    assert result.revocation_error and result.revocation_error.startswith("unreachable")
    assert gone.status_code == 404
    assert event["data"]["revoked"] is False
    assert event["data"]["revocationError"] == result.revocation_error


async def test_delete_reports_revoked_null_for_a_provider_without_revocation(
        start_alloy: StartAlloy) -> None:
    with own_way_provider() as p, start_alloy(providers={"plain": entry(p.url)},
                                              connector_env=env_for("plain")) as alloy:
        conn_id = seed_connection(alloy, connector_id="plain")
        other = seed_connection(alloy, connector_id="plain")
        async with alloy.api() as api:
            answer = await api.delete(f"/connections/{conn_id}")
            users = (await api.get("/users")).json()["data"]
            [default] = [u for u in users if u["username"] == "default"]
            by_credential = await api.delete(
                f"/users/{default['userId']}/credentials/{other}")
        async with AsyncAlloyOAuthFlow(api_key=alloy.api_key, base_url=alloy.base_url) as client:
            third = seed_connection(alloy, connector_id="plain")
            result = await client.delete_connection(third)
    assert answer.json() == {"success": True, "revoked": None, "revocationError": None}
    assert by_credential.json() == {"success": True, "revoked": None, "revocationError": None}
    assert result == DeletedConnection(revoked=None, revocation_error=None)
    assert p.seen == []


# --- DELETE /users/{id} --------------------------------------------------------------------------

async def test_deleting_a_user_revokes_each_connection_records_events_and_deletes_the_user(
        start_alloy: StartAlloy) -> None:
    with GitHubEmulator() as github, start_alloy(providers=github.providers_entry(),
                                                 connector_env=github.connector_env()) as alloy:
        async with alloy.api() as api:
            user_id = (await api.post("/users", json={"username": "ada"})).json()["userId"]
            mine = [await connect_flow(api, "github", redirect_uri=APP, userId=user_id)
                    for _ in range(2)]
            kept = await connect_flow(api, "github", redirect_uri=APP)  # the default user's
            tokens = {f.connection_id: (await api.get(
                f"/connections/{f.connection_id}/token")).json()["accessToken"] for f in mine}

            answer = await api.delete(f"/users/{user_id}")
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"success": True, "connectionsDeleted": 2}

            assert (await api.get(f"/users/{user_id}")).status_code == 404
            for flow in mine:
                assert (await api.get(f"/connections/{flow.connection_id}")).status_code == 404
            assert (await api.get(f"/connections/{kept.connection_id}")).status_code == 200
            events = await deleted_events(api)
    # Both grants were deleted at GitHub, each with its own token; the default user's was not.
    assert sorted(r.params["access_token"] for r in github.revoke_requests) == sorted(
        tokens.values())
    assert len(github.access_tokens) == 1
    assert sorted(e["connectionId"] for e in events) == sorted(tokens)
    for event in events:
        assert event["data"]["userId"] == user_id and event["data"]["status"] == "deleted"
        assert event["data"]["revoked"] is True and event["data"]["revocationError"] is None
        assert tokens[event["connectionId"]] not in str(event)


async def test_the_default_user_still_cannot_be_deleted_and_nothing_is_revoked(
        start_alloy: StartAlloy) -> None:
    with GitHubEmulator() as github, start_alloy(providers=github.providers_entry(),
                                                 connector_env=github.connector_env()) as alloy:
        async with alloy.api() as api:
            flow = await connect_flow(api, "github", redirect_uri=APP)
            users = (await api.get("/users")).json()["data"]
            [default] = [u for u in users if u["username"] == "default"]
            answer = await api.delete(f"/users/{default['userId']}")
            assert answer.status_code == 409 and answer.json()["error"] == "default_user"
            assert (await api.get(f"/connections/{flow.connection_id}")).status_code == 200
            assert await deleted_events(api) == []
        assert github.revoke_requests == []


async def test_a_users_revocations_run_four_at_a_time_and_a_failure_never_blocks_the_delete(
        start_alloy: StartAlloy) -> None:
    with own_way_provider(delay=0.3) as p:
        providers = {"slow": entry(p.url, revocation={
            "url": f"{p.url}/revoke", "auth": "none", "token": "body_json:token"})}
        with start_alloy(providers=providers, connector_env=env_for("slow")) as alloy:
            async with alloy.api() as api:
                user_id = (await api.post("/users", json={"username": "bob"})).json()["userId"]
                conns = [seed_connection(alloy, connector_id="slow", access_token=f"at-{n}")
                         for n in range(7)]
                conns.append(seed_connection(alloy, connector_id="slow", access_token="at-fail"))
                for conn_id in conns:
                    move_to_user(alloy, conn_id, user_id)
                answer = await api.delete(f"/users/{user_id}")
                assert answer.json() == {"success": True, "connectionsDeleted": 8}
                events = {e["connectionId"]: e["data"] for e in await deleted_events(api)}
                assert (await api.get(f"/users/{user_id}")).status_code == 404
            assert alloy.rows("connections") == 0
    assert len(p.seen) == 8
    assert p.max_in_flight == 4
    failed = events.pop(conns[-1])
    assert failed["revoked"] is False and "server_error" in failed["revocationError"]
    assert all(e["revoked"] is True for e in events.values()) and len(events) == 7

"""Refresh that cannot race: single flight, the row lock, compare-and-swap, rotation kept.

Also home of the scriptable fake provider (token endpoint + API) and the connection-seeding
helpers that test_health, test_proxy, test_actions and test_webhooks use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select, update

from alloy_oauth import connections
from alloy_oauth.connections import _refresh
from alloy_oauth.crypto import SecretBox, parse_keys
from alloy_oauth.errors import Conflict
from alloy_oauth.ids import new_id
from alloy_oauth.oauth import ProviderError
from alloy_oauth.runtime import build_runtime
from alloy_oauth.store.db import create_engine, sessionmaker
from alloy_oauth.store.models import Connection, User, utcnow
from tests.conftest import Alloy, StartAlloy
from tests.support.aio import run_coro
from tests.support.servers import run_asgi

CLIENT_ENV = {"ALLOY_CONNECTOR_FAKE_CLIENT_ID": "fake-client",
              "ALLOY_CONNECTOR_FAKE_CLIENT_SECRET": "fake-secret-value"}


# --- a scriptable provider ---------------------------------------------------------------------

@dataclass
class FakeProvider:
    """Token endpoint with refresh-token rotation (a refresh token used once, or revoked, is
    invalid_grant afterwards; any other is taken as a live grant),
    a revocation endpoint, and an API under /api that wants a live access token.

    `script` lists what the next refreshes do: "ok", "no-refresh-token" (an answer without a
    refresh token), "500", "timeout" (no answer for `hang` seconds), "invalid_grant".
    """

    retired: set[str] = field(default_factory=set)
    rotate: bool = True
    ttl: int = 3600
    delay: float = 0.0
    hang: float = 5.0
    script: list[str] = field(default_factory=list)
    refreshes: list[dict[str, Any]] = field(default_factory=list)
    revocations: list[str] = field(default_factory=list)
    revoke_status: int = 200
    live_tokens: set[str] = field(default_factory=lambda: {"at-0"})
    api_calls: list[dict[str, Any]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    concurrent: int = 0
    max_concurrent: int = 0
    url: str = ""
    events: dict[str, threading.Event] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    issued: int = 0

    def event(self, name: str) -> threading.Event:
        with self.lock:
            return self.events.setdefault(name, threading.Event())

    def bump(self, name: str) -> int:
        with self.lock:
            self.counters[name] = self.counters.get(name, 0) + 1
            return self.counters[name]

    def refresh_count(self) -> int:
        return len(self.refreshes)


def _issue(p: FakeProvider, presented: str, *, with_refresh: bool) -> dict[str, Any]:
    with p.lock:
        p.issued += 1
        access = f"at-{p.issued}"
        p.live_tokens.add(access)
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer",
                                "expires_in": p.ttl}
        if with_refresh:
            body["refresh_token"] = presented
            if p.rotate:
                p.retired.add(presented)
                body["refresh_token"] = f"rt-{p.issued}"
        return body


def fake_provider_app(p: FakeProvider) -> FastAPI:
    app = FastAPI()

    @app.post("/token")
    async def token(request: Request) -> Response:
        form = dict((await request.form()).items())
        with p.lock:
            p.concurrent += 1
            p.max_concurrent = max(p.max_concurrent, p.concurrent)
            step = p.script.pop(0) if p.script else "ok"
            p.refreshes.append({"presented": form.get("refresh_token"), "step": step,
                                "at": time.monotonic()})
        try:
            if p.delay:
                await asyncio.sleep(p.delay)
            if step == "timeout":
                await asyncio.sleep(p.hang)
                return JSONResponse({"error": "server_error"}, status_code=500)
            if step == "500":
                return JSONResponse({"error": "server_error"}, status_code=500)
            presented = str(form.get("refresh_token"))
            if step == "invalid_grant" or presented in p.retired:
                return JSONResponse({"error": "invalid_grant",
                                     "error_description": "grant request is invalid"},
                                    status_code=400)
            return JSONResponse(_issue(p, presented, with_refresh=step != "no-refresh-token"))
        finally:
            with p.lock:
                p.concurrent -= 1

    @app.post("/revoke")
    async def revoke(request: Request) -> Response:
        form = dict((await request.form()).items())
        p.revocations.append(str(form.get("token")))
        if p.revoke_status == 200:
            with p.lock:
                p.live_tokens.discard(str(form.get("token")))
                p.retired.add(str(form.get("token")))
        return Response(status_code=p.revoke_status)

    @app.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE",
                                                 "HEAD", "OPTIONS"])
    async def api(rest: str, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ")
        body = await request.body()
        p.api_calls.append({"method": request.method, "path": request.url.path,
                            "raw_path": request.scope["raw_path"].decode(),
                            "query": request.scope["query_string"].decode(),
                            "headers": dict(request.headers), "body": body})
        if token not in p.live_tokens:
            return JSONResponse({"message": "bad token"}, status_code=401)
        return JSONResponse({"ok": True, "path": rest, "method": request.method,
                             "token": token, "body": body.decode(errors="replace")})

    return app


@contextlib.contextmanager
def start_fake_provider(**knobs: Any) -> Iterator[FakeProvider]:
    provider = FakeProvider(**knobs)
    with run_asgi(fake_provider_app(provider)) as url:
        provider.url = url
        yield provider


def provider_entry(url: str, connector_id: str = "fake", **extra: Any) -> dict[str, Any]:
    return {connector_id: {"name": "Fake provider", "authorization_url": f"{url}/authorize",
                           "token_url": f"{url}/token", "revocation_url": f"{url}/revoke",
                           "api_base_url": f"{url}/api", **extra}}


# --- a webhook receiver ----------------------------------------------------------------------

@dataclass
class Receiver:
    """Records every POST; answers with `statuses` in turn (then 200)."""

    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        found = [json.loads(body) for _, body in self.received]
        return [e for e in found if type_ is None or e["type"] == type_]

    async def wait_for(self, type_: str, count: int = 1, timeout: float = 10.0,
                       ) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [(h, b) for h, b in self.received if json.loads(b)["type"] == type_]
            if len(got) >= count:
                return got
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {count} x {type_} within {timeout} s: {self.events()}")


@contextlib.contextmanager
def start_receiver(statuses: list[int] | None = None) -> Iterator[Receiver]:
    receiver = Receiver(statuses=list(statuses or []))
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> Response:
        receiver.received.append((dict(request.headers), await request.body()))
        status = receiver.statuses.pop(0) if receiver.statuses else 200
        return Response(status_code=status)

    with run_asgi(app) as url:
        receiver.url = f"{url}/hook"
        yield receiver


# --- seeding and reading connections ---------------------------------------------------------

def _box(alloy: Alloy) -> SecretBox:
    assert alloy.settings.encryption_keys is not None
    return SecretBox(parse_keys(alloy.settings.encryption_keys.get_secret_value()))


def with_sessions(url: str, work: Callable[[Any], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        engine = create_engine(url)
        try:
            return await work(sessionmaker(engine))
        finally:
            await engine.dispose()
    return run_coro(go)


def seed_connection(alloy: Alloy, *, connector_id: str = "fake", access_token: str = "at-0",
                    refresh_token: str | None = "rt-0", expires_in: float | None = 3600,
                    lifetime: float = 3600, credential_type: str = "oauth2",
                    secret_data: dict[str, str] | None = None) -> str:
    """A stored connection as a finished flow leaves it (tokens encrypted)."""
    box = _box(alloy)

    async def work(sessions: Any) -> str:
        async with sessions.begin() as db:
            user_id = (await db.execute(select(User.id).where(
                User.account_id == alloy.account_id, User.is_default))).scalar_one()
            conn_id = new_id("conn")
            now = utcnow()
            expires_at = now + timedelta(seconds=expires_in) if expires_in is not None else None
            db.add(Connection(
                id=conn_id, credential_id=new_id("cred"), account_id=alloy.account_id,
                user_id=user_id, connector_id=connector_id, credential_type=credential_type,
                name="seeded", status="connected", scopes=[], metadata_={},
                access_token_enc=(box.encrypt(access_token, f"conn:{conn_id}:access")
                                  if credential_type == "oauth2" else None),
                refresh_token_enc=(box.encrypt(refresh_token, f"conn:{conn_id}:refresh")
                                   if refresh_token and credential_type == "oauth2" else None),
                secret_data_enc=(box.encrypt(json.dumps(secret_data), f"conn:{conn_id}:data")
                                 if secret_data else None),
                token_type="Bearer", expires_at=expires_at,
                issued_at=(expires_at - timedelta(seconds=lifetime)) if expires_at else None,
                last_refresh_at=now))
        return conn_id

    result: str = with_sessions(alloy.settings.database_url, work)
    return result


def update_connection(url: str, conn_id: str, **values: Any) -> None:
    """Change a stored connection's columns, as another process would."""
    async def work(sessions: Any) -> None:
        async with sessions.begin() as db:
            await db.execute(update(Connection).where(Connection.id == conn_id).values(**values))
    with_sessions(url, work)


def set_expiry(url: str, conn_id: str, seconds: float, lifetime: float = 3600) -> None:
    """Make the stored token expire `seconds` from now (negative: already expired)."""
    now = utcnow()
    update_connection(url, conn_id, expires_at=now + timedelta(seconds=seconds),
                      issued_at=now + timedelta(seconds=seconds - lifetime))


def read_connection(url: str, conn_id: str) -> Connection:
    async def work(sessions: Any) -> Connection | None:
        async with sessions() as db:
            return await db.get(Connection, conn_id)
    conn: Connection | None = with_sessions(url, work)
    assert conn is not None
    return conn


def stored_refresh_token(alloy: Alloy, conn_id: str) -> str:
    conn = read_connection(alloy.settings.database_url, conn_id)
    assert conn.refresh_token_enc is not None
    return _box(alloy).decrypt(conn.refresh_token_enc, f"conn:{conn_id}:refresh")


async def token_of(api: httpx2.AsyncClient, conn_id: str, **params: Any) -> httpx2.Response:
    return await api.get(f"/connections/{conn_id}/token", params=params)


@contextlib.contextmanager
def alloy_with_fake(start_alloy: StartAlloy, **knobs: Any) -> Iterator[tuple[Alloy, FakeProvider]]:
    settings = knobs.pop("settings", {})
    with start_fake_provider(**knobs) as provider, start_alloy(
            providers=provider_entry(provider.url), connector_env=CLIENT_ENV,
            **settings) as alloy:
        yield alloy, provider


async def gather_in(n: int, make: Callable[[], Awaitable[httpx2.Response]],
                    ) -> list[httpx2.Response]:
    return list(await asyncio.gather(*(make() for _ in range(n))))


# --- the tests ---------------------------------------------------------------------------------

async def test_concurrent_requests_in_one_process_share_one_refresh(
        start_alloy: StartAlloy) -> None:
    with alloy_with_fake(start_alloy, delay=0.2) as (alloy, provider):
        conn_id = seed_connection(alloy, expires_in=-5)
        async with alloy.api() as api:
            answers = await gather_in(60, lambda: token_of(api, conn_id))
        assert {a.status_code for a in answers} == {200}
        assert {a.json()["accessToken"] for a in answers} == {"at-1"}
        assert provider.refresh_count() == 1
        assert provider.refreshes[0]["presented"] == "rt-0"
        assert stored_refresh_token(alloy, conn_id) == "rt-1"
        stored = read_connection(alloy.settings.database_url, conn_id)
        assert stored.version == 2 and stored.status == "connected"


async def test_rotated_refresh_token_is_stored_and_used_for_the_next_refresh(
        start_alloy: StartAlloy) -> None:
    with alloy_with_fake(start_alloy) as (alloy, provider):
        conn_id = seed_connection(alloy)
        async with alloy.api() as api:
            tokens = [(await token_of(api, conn_id, forceRefresh="true")).json()["accessToken"]
                      for _ in range(3)]
        assert tokens == ["at-1", "at-2", "at-3"]
        assert [r["presented"] for r in provider.refreshes] == ["rt-0", "rt-1", "rt-2"]
        assert stored_refresh_token(alloy, conn_id) == "rt-3"


async def test_old_refresh_token_is_kept_when_the_provider_returns_none(
        start_alloy: StartAlloy) -> None:
    with alloy_with_fake(start_alloy, script=["no-refresh-token", "ok"]) as (alloy, provider):
        conn_id = seed_connection(alloy)
        async with alloy.api() as api:
            first = await token_of(api, conn_id, forceRefresh="true")
            assert first.json()["accessToken"] == "at-1"
            assert stored_refresh_token(alloy, conn_id) == "rt-0"
            second = await token_of(api, conn_id, forceRefresh="true")
        assert second.status_code == 200 and second.json()["accessToken"] == "at-2"
        assert [r["presented"] for r in provider.refreshes] == ["rt-0", "rt-0"]


async def test_token_far_from_expiry_is_served_without_a_refresh(
        start_alloy: StartAlloy) -> None:
    with alloy_with_fake(start_alloy) as (alloy, provider):
        conn_id = seed_connection(alloy, expires_in=3000)
        async with alloy.api() as api:
            answer = await token_of(api, conn_id)
        assert answer.json()["accessToken"] == "at-0"
        assert provider.refresh_count() == 0


async def test_refresh_margin_is_five_minutes_or_half_a_short_lifetime(
        start_alloy: StartAlloy) -> None:
    with alloy_with_fake(start_alloy) as (alloy, provider):
        long_lived = seed_connection(alloy, refresh_token="rt-a", expires_in=290)
        short_far = seed_connection(alloy, refresh_token="rt-b", expires_in=40, lifetime=60)
        short_near = seed_connection(alloy, refresh_token="rt-c", expires_in=25, lifetime=60)
        async with alloy.api() as api:
            assert (await token_of(api, long_lived)).json()["accessToken"] == "at-1"
            assert (await token_of(api, short_far)).json()["accessToken"] == "at-0"
            assert (await token_of(api, short_near)).json()["accessToken"] == "at-2"
        assert provider.refresh_count() == 2


async def test_refresh_margin_can_be_set_per_connector(start_alloy: StartAlloy) -> None:
    env = {**CLIENT_ENV, "ALLOY_CONNECTOR_FAKE_REFRESH_MARGIN": "1800"}
    with start_fake_provider() as provider, start_alloy(
            providers=provider_entry(provider.url), connector_env=env) as alloy:
        conn_id = seed_connection(alloy, expires_in=1200)
        async with alloy.api() as api:
            assert (await token_of(api, conn_id)).json()["accessToken"] == "at-1"
        assert provider.refresh_count() == 1


async def test_a_refresh_for_a_version_already_replaced_calls_no_provider(
        start_alloy: StartAlloy) -> None:
    """Compare-and-swap: a caller that read version 1 after someone wrote version 2 gets
    version 2 back, and the newer token is never overwritten."""
    with alloy_with_fake(start_alloy) as (alloy, provider):
        conn_id = seed_connection(alloy, expires_in=-5)
        async with alloy.api() as api:
            assert (await token_of(api, conn_id)).json()["accessToken"] == "at-1"
        rt = build_runtime(alloy.settings)
        try:
            stale = read_connection(alloy.settings.database_url, conn_id)
            newer = await connections.refresh(rt, stale, seen_version=1)
        finally:
            await rt.aclose()
        assert newer.version == 2
        assert _box(alloy).decrypt(newer.access_token_enc or "",
                                   f"conn:{conn_id}:access") == "at-1"
        assert provider.refresh_count() == 1


async def test_invalid_grant_rereads_before_deciding_and_keeps_a_newer_token(
        start_alloy: StartAlloy) -> None:
    """If the row moved on while the refresh was out (another worker rotated the token),
    invalid_grant for the old refresh token is not a dead grant."""
    with alloy_with_fake(start_alloy) as (alloy, _):
        conn_id = seed_connection(alloy, expires_in=-5)
        rt = build_runtime(alloy.settings)
        try:
            async with rt.sessions() as db:
                row = await db.get(Connection, conn_id)
                assert row is not None
                db.expunge(row)
                await db.execute(update(Connection).where(Connection.id == conn_id)
                                 .values(version=2))
                kept = await _refresh._record_failure(
                    rt, db, row, ProviderError("invalid_grant", "grant request is invalid"))
            assert kept.version == 2 and kept.status == "connected"
            async with rt.sessions() as db:
                row = await db.get(Connection, conn_id)
                assert row is not None
                db.expunge(row)
                with pytest.raises(Conflict):
                    await _refresh._record_failure(
                        rt, db, row, ProviderError("invalid_grant", "grant request is invalid"))
        finally:
            await rt.aclose()
        assert read_connection(alloy.settings.database_url, conn_id).status == "needs_reauth"


async def test_a_caller_that_goes_away_does_not_cancel_the_refresh(
        start_alloy: StartAlloy) -> None:
    with alloy_with_fake(start_alloy, delay=0.5) as (alloy, provider):
        conn_id = seed_connection(alloy, expires_in=-5)
        async with alloy.api() as api:
            with contextlib.suppress(httpx2.TimeoutException):
                await api.get(f"/connections/{conn_id}/token", timeout=0.1)
            await asyncio.sleep(0.8)
            answer = await token_of(api, conn_id)
        assert answer.json()["accessToken"] == "at-1"
        assert provider.refresh_count() == 1
        assert stored_refresh_token(alloy, conn_id) == "rt-1"


async def test_force_refresh_takes_the_usual_boolean_spellings_and_names_a_bad_one(
        start_alloy: StartAlloy) -> None:
    with alloy_with_fake(start_alloy) as (alloy, provider):
        conn_id = seed_connection(alloy, expires_in=3000)
        async with alloy.api() as api:
            for value in ("false", "0", "no", "OFF"):
                assert (await token_of(api, conn_id, forceRefresh=value)).json()[
                    "accessToken"] == "at-0"
            assert provider.refresh_count() == 0
            bad = await token_of(api, conn_id, forceRefresh="maybe")
            assert bad.status_code == 422 and bad.json()["error"] == "validation_error"
            assert "forceRefresh" in bad.json()["message"] and "maybe" in bad.json()["message"]
            assert provider.refresh_count() == 0
            assert stored_refresh_token(alloy, conn_id) == "rt-0"
            for value in ("true", "1", "Yes", "on"):
                assert (await token_of(api, conn_id, forceRefresh=value)).status_code == 200
        assert provider.refresh_count() == 4


async def test_token_and_proxy_routes_are_documented_and_refuse_other_methods_in_json(
        start_alloy: StartAlloy) -> None:
    # Both are served by plain routes ahead of FastAPI's routing; the OpenAPI document still
    # describes them, and a method they do not take gets the usual JSON error.
    with alloy_with_fake(start_alloy) as (alloy, provider):
        conn_id = seed_connection(alloy, expires_in=3000)
        async with alloy.api() as api:
            paths = (await api.get("/openapi.json")).json()["paths"]
            token = paths["/connections/{connection_id}/token"]
            assert list(token) == ["get"]
            assert {(p["name"], p["in"]) for p in token["get"]["parameters"]} == {
                ("connection_id", "path"), ("forceRefresh", "query")}
            proxy = paths["/connections/{connection_id}/proxy/{path}"]
            assert set(proxy) == {"get", "post", "put", "patch", "delete", "head", "options"}
            assert len({op["operationId"] for op in proxy.values()}) == 7
            for method in ("POST", "PUT", "DELETE"):
                wrong = await api.request(method, f"/connections/{conn_id}/token")
                assert wrong.status_code == 405, method
                assert wrong.json()["error"] == "method_not_allowed"
                assert "GET" in wrong.headers["allow"]
            assert (await token_of(api, conn_id)).json()["accessToken"] == "at-0"
        assert provider.refresh_count() == 0

"""The proxy against a real local HTTP server: every method, raw paths and repeated query
keys, large bodies streaming both ways, 401 refresh-and-retry, 429 with Retry-After, retries
only where safe, hop-by-hop headers stripped, no credential echoed."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tests.conftest import Alloy, StartAlloy
from tests.support.servers import free_port, run_asgi
from tests.test_refresh import (
    CLIENT_ENV,
    FakeProvider,
    provider_entry,
    seed_connection,
    start_fake_provider,
)

MIB = 1 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upstream_app(p: FakeProvider) -> FastAPI:
    """The provider's API. Counters and gates live on the FakeProvider (thread-safe)."""
    app = FastAPI()
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

    @app.api_route("/api/echo/{rest:path}", methods=methods)
    async def echo(rest: str, request: Request) -> Response:
        body = await request.body()
        return JSONResponse({
            "method": request.method, "raw_path": request.scope["raw_path"].decode(),
            "query": request.scope["query_string"].decode(),
            "headers": [[k.decode(), v.decode()] for k, v in request.headers.raw],
            "length": len(body), "sha": sha(body)}, headers={"X-Echo-Method": request.method})

    @app.api_route("/api/private", methods=methods)
    async def private(request: Request) -> Response:
        p.bump("private")
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in p.live_tokens:
            return JSONResponse({"message": "token expired"}, status_code=401)
        return JSONResponse({"token_ok": True})

    @app.get("/api/download")
    async def download(size: int, gate: str) -> Response:
        first = b"a" * (64 * 1024)

        async def body() -> AsyncIterator[bytes]:
            yield first
            # The rest only once the caller has the first chunk: a proxy that buffers the
            # answer never gets there.
            released = await asyncio.to_thread(p.event(gate).wait, 10)
            if not released:
                return
            sent = len(first)
            block = b"b" * (256 * 1024)
            while sent < size:
                chunk = block[: size - sent]
                sent += len(chunk)
                yield chunk

        return StreamingResponse(body(), media_type="application/octet-stream")

    @app.api_route("/api/upload", methods=["POST", "PUT"])
    async def upload(request: Request) -> Response:
        digest = hashlib.sha256()
        length = 0
        async for chunk in request.stream():
            digest.update(chunk)
            length += len(chunk)
            if length >= MIB + MIB // 2:
                p.event("upload-started").set()
        return JSONResponse({"length": length, "sha": digest.hexdigest(),
                             "chunked": "transfer-encoding" in request.headers,
                             "content_length": request.headers.get("content-length")})

    @app.api_route("/api/ratelimited/{name}", methods=methods)
    async def ratelimited(name: str, request: Request) -> Response:
        n = p.bump(f"rl-{name}")
        wait = request.query_params.get("wait", "1")
        if n == 1:
            return JSONResponse({"message": "slow down"}, status_code=429,
                                headers={"Retry-After": wait})
        return JSONResponse({"attempt": n})

    @app.api_route("/api/unavailable/{name}", methods=methods)
    async def unavailable(name: str) -> Response:
        p.bump(f"un-{name}")
        return JSONResponse({"message": "down"}, status_code=503)

    @app.get("/api/hop")
    async def hop(request: Request) -> Response:
        response = Response(b"hop body", media_type="text/plain")
        response.headers["Connection"] = "X-Hop"
        response.headers["X-Hop"] = "1"
        response.headers["Keep-Alive"] = "timeout=5"
        response.headers["X-Echo-Auth"] = request.headers.get("authorization", "")
        response.headers["X-Kept"] = "yes"
        response.raw_headers.append((b"set-cookie", b"a=1"))
        response.raw_headers.append((b"set-cookie", b"b=2"))
        return response

    @app.get("/api/gzip")
    async def gzipped() -> Response:
        return Response(gzip.compress(json.dumps({"packed": True}).encode()),
                        media_type="application/json", headers={"Content-Encoding": "gzip"})

    @app.get("/api/status/{code}")
    async def status(code: int) -> Response:
        return JSONResponse({"code": code}, status_code=code, headers={"X-From": "upstream"})

    return app


@contextlib.contextmanager
def proxied(start_alloy: StartAlloy, *, extra_connectors: dict[str, Any] | None = None,
            **settings: Any) -> Iterator[tuple[Alloy, FakeProvider, str]]:
    """Alloy + the fake provider's token endpoint + the upstream API; yields the alloy, the
    provider, and a connection (token at-0, valid for an hour)."""
    with start_fake_provider() as provider, run_asgi(upstream_app(provider)) as api_url:
        connectors = {**provider_entry(provider.url, api_base_url=f"{api_url}/api"),
                      **{k: {**v, "api_base_url": f"{api_url}/api",
                             "authorization_url": f"{provider.url}/authorize",
                             "token_url": f"{provider.url}/token"}
                         for k, v in (extra_connectors or {}).items()}}
        env = dict(CLIENT_ENV)
        for key in extra_connectors or {}:
            env[f"ALLOY_CONNECTOR_{key.upper()}_CLIENT_ID"] = "fake-client"
            env[f"ALLOY_CONNECTOR_{key.upper()}_CLIENT_SECRET"] = "fake-secret-value"
        with start_alloy(providers=connectors, connector_env=env, **settings) as alloy:
            yield alloy, provider, seed_connection(alloy)


def header_values(echoed: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in echoed["headers"] if k == name]


async def test_every_method_path_query_headers_and_body_pass_through(
        start_alloy: StartAlloy) -> None:
    with proxied(start_alloy) as (alloy, _, conn_id):
        async with alloy.api() as api:
            for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
                body = f"payload for {method} \u00e9".encode() if method != "GET" else b""
                answer = await api.request(
                    method, f"/connections/{conn_id}/proxy/echo/a%2Fb/c%20d"
                    "?x=1&x=2&y=a+b&z=%2F&empty=",
                    content=body or None,
                    headers=[("X-Custom", "v"), ("X-Multi", "1"), ("X-Multi", "2"),
                             ("Content-Type", "text/plain")])
                assert answer.status_code == 200, answer.text
                echoed = answer.json()
                assert echoed["method"] == method
                assert echoed["raw_path"] == "/api/echo/a%2Fb/c%20d"
                assert echoed["query"] == "x=1&x=2&y=a+b&z=%2F&empty="
                assert header_values(echoed, "x-custom") == ["v"]
                assert header_values(echoed, "x-multi") == ["1", "2"]
                assert header_values(echoed, "authorization") == ["Bearer at-0"]
                assert header_values(echoed, "x-api-version") == []
                assert alloy.api_key not in answer.text
                assert echoed["length"] == len(body) and echoed["sha"] == sha(body)
                assert answer.headers["x-echo-method"] == method
            head = await api.head(f"/connections/{conn_id}/proxy/echo/x")
            assert head.status_code == 200 and head.content == b""
            assert head.headers["x-echo-method"] == "HEAD"


async def test_large_bodies_stream_both_ways(start_alloy: StartAlloy) -> None:
    with proxied(start_alloy) as (alloy, provider, conn_id):
        async with alloy.api() as api:
            # Download: the upstream sends the rest only after we got the first chunk.
            size = 32 * MIB
            got = 0
            digest = hashlib.sha256()
            async with api.stream("GET", f"/connections/{conn_id}/proxy/download",
                                  params={"size": size, "gate": "dl"}) as answer:
                assert answer.status_code == 200
                async for chunk in answer.aiter_raw():
                    if got == 0:
                        provider.event("dl").set()
                    got += len(chunk)
                    digest.update(chunk)
            expected = b"a" * (64 * 1024) + b"b" * (size - 64 * 1024)
            assert got == size and digest.hexdigest() == sha(expected)

            # Upload: after 1.5 MiB we wait until the upstream has them before sending more.
            part = b"u" * (MIB + MIB // 2)
            rest = b"v" * (6 * MIB)
            waited: list[bool] = []

            async def body() -> AsyncIterator[bytes]:
                for i in range(0, len(part), 64 * 1024):
                    yield part[i:i + 64 * 1024]
                waited.append(await asyncio.to_thread(provider.event("upload-started").wait, 10))
                for i in range(0, len(rest), 256 * 1024):
                    yield rest[i:i + 256 * 1024]

            sent = await api.post(f"/connections/{conn_id}/proxy/upload", content=body())
            assert sent.status_code == 200, sent.text
            assert waited == [True]
            assert sent.json()["length"] == len(part) + len(rest)
            assert sent.json()["sha"] == sha(part + rest)

            # A large body with a Content-Length keeps it (no chunked encoding upstream).
            blob = b"w" * (3 * MIB)
            fixed = await api.put(f"/connections/{conn_id}/proxy/upload", content=blob)
            assert fixed.json()["length"] == len(blob)
            assert fixed.json()["content_length"] == str(len(blob))
            assert fixed.json()["chunked"] is False


async def test_401_refreshes_once_and_retries(start_alloy: StartAlloy) -> None:
    with proxied(start_alloy) as (alloy, provider, conn_id):
        provider.live_tokens.discard("at-0")  # the provider revoked it early
        async with alloy.api() as api:
            answer = await api.post(f"/connections/{conn_id}/proxy/private", content=b"{}")
            assert answer.status_code == 200 and answer.json() == {"token_ok": True}
            assert provider.refresh_count() == 1 and provider.counters["private"] == 2
            # Still 401 after the refresh: one refresh, one retry, then the answer as is.
            still = await api.get(f"/connections/{conn_id}/proxy/status/401")
            assert still.status_code == 401 and still.json() == {"code": 401}
            assert still.headers["x-from"] == "upstream"
            assert provider.refresh_count() == 2
            token = (await api.get(f"/connections/{conn_id}/token")).json()["accessToken"]
        assert token == "at-2"


async def test_429_with_retry_after_is_waited_for_idempotent_methods_only(
        start_alloy: StartAlloy) -> None:
    with proxied(start_alloy) as (alloy, provider, conn_id):
        async with alloy.api() as api:
            started = time.monotonic()
            answer = await api.get(f"/connections/{conn_id}/proxy/ratelimited/get")
            assert answer.status_code == 200 and answer.json() == {"attempt": 2}
            assert time.monotonic() - started >= 0.9

            post = await api.post(f"/connections/{conn_id}/proxy/ratelimited/post",
                                  content=b"x")
            assert post.status_code == 429 and post.headers["retry-after"] == "1"
            assert provider.counters["rl-post"] == 1

            # A wait longer than the proxy's limit is the caller's to make.
            started = time.monotonic()
            long = await api.get(f"/connections/{conn_id}/proxy/ratelimited/long",
                                 params={"wait": "120"})
            assert long.status_code == 429 and long.headers["retry-after"] == "120"
            assert time.monotonic() - started < 5
            assert provider.counters["rl-long"] == 1


async def test_5xx_is_retried_for_idempotent_methods_only(start_alloy: StartAlloy) -> None:
    with proxied(start_alloy, proxy_retries=2) as (alloy, provider, conn_id):
        async with alloy.api() as api:
            get = await api.get(f"/connections/{conn_id}/proxy/unavailable/get")
            put = await api.put(f"/connections/{conn_id}/proxy/unavailable/put", content=b"x")
            post = await api.post(f"/connections/{conn_id}/proxy/unavailable/post",
                                  content=b"x")
            patch = await api.patch(f"/connections/{conn_id}/proxy/unavailable/patch",
                                    content=b"x")
        assert {r.status_code for r in (get, put, post, patch)} == {503}
        assert get.json() == {"message": "down"}
        assert provider.counters == {"un-get": 3, "un-put": 3, "un-post": 1, "un-patch": 1}


async def test_hop_by_hop_headers_are_stripped_and_no_credential_is_echoed(
        start_alloy: StartAlloy) -> None:
    with proxied(start_alloy) as (alloy, _, conn_id):
        async with alloy.api() as api:
            answer = await api.get(f"/connections/{conn_id}/proxy/hop",
                                   headers={"Connection": "keep-alive, X-Drop-Me",
                                            "X-Drop-Me": "1", "Keep-Alive": "timeout=1"})
        async with alloy.api() as api:  # a client without the cookies set above
            echoed = (await api.get(f"/connections/{conn_id}/proxy/echo/h",
                                    headers={"Connection": "X-Drop-Me", "X-Drop-Me": "1",
                                             "TE": "trailers", "Upgrade": "h2c"})).json()
        assert answer.status_code == 200 and answer.content == b"hop body"
        assert "x-hop" not in answer.headers and "keep-alive" not in answer.headers
        assert answer.headers["x-kept"] == "yes"
        assert answer.headers.get_list("set-cookie") == ["a=1", "b=2"]
        assert answer.headers["x-echo-auth"] == "[redacted]"
        assert "at-0" not in str(answer.headers)
        names = {k for k, _ in echoed["headers"]}
        assert not names & {"x-drop-me", "te", "upgrade", "keep-alive"}
        assert "cookie" not in names  # the proxy keeps no cookie jar of its own


async def test_compressed_answers_pass_through_unchanged(start_alloy: StartAlloy) -> None:
    with proxied(start_alloy) as (alloy, _, conn_id):
        async with alloy.api() as api:
            async with api.stream("GET", f"/connections/{conn_id}/proxy/gzip",
                                  headers={"Accept-Encoding": "gzip"}) as answer:
                raw = b"".join([chunk async for chunk in answer.aiter_raw()])
            asked = (await api.get(f"/connections/{conn_id}/proxy/echo/e",
                                   headers={"Accept-Encoding": "br, gzip"})).json()
            request = api.build_request("GET", f"/connections/{conn_id}/proxy/echo/e")
            del request.headers["accept-encoding"]
            unasked = (await api.send(request)).json()
        assert answer.headers["content-encoding"] == "gzip"
        assert raw[:2] == b"\x1f\x8b" and json.loads(gzip.decompress(raw)) == {"packed": True}
        assert header_values(asked, "accept-encoding") == ["br, gzip"]
        # A caller that asked for no encoding gets none.
        assert header_values(unasked, "accept-encoding") == ["identity"]


async def test_credential_is_applied_the_connectors_way(start_alloy: StartAlloy) -> None:
    extra = {
        "fakeq": {"name": "Query auth", "api_auth": "query", "api_auth_name": "access_token"},
        "fakekey": {"name": "Key auth", "auth_types": ["apiKey"], "api_auth": "header",
                    "api_auth_name": "X-API-Key", "api_headers": {"X-Api-Flavour": "mint"}},
    }
    with proxied(start_alloy, extra_connectors=extra) as (alloy, _, _conn):
        query_conn = seed_connection(alloy, connector_id="fakeq", access_token="at-q")
        async with alloy.api() as api:
            made = await api.post("/connectors/fakekey/credentials", json={
                "credentialType": "apiKey", "data": {"apiKey": "key-123456789"}})
            assert made.status_code == 200, made.text
            key_conn = made.json()["connectionId"]
            by_query = (await api.get(f"/connections/{query_conn}/proxy/echo/q",
                                      params=[("a", "1"), ("access_token", "mine")])).json()
            by_header = (await api.get(f"/connections/{key_conn}/proxy/echo/k")).json()
        assert by_query["query"] == "a=1&access_token=at-q"
        assert header_values(by_query, "authorization") == []
        assert header_values(by_header, "x-api-key") == ["key-123456789"]
        assert header_values(by_header, "x-api-flavour") == ["mint"]
        assert header_values(by_header, "authorization") == []


async def test_the_path_cannot_climb_out_of_the_api_base(start_alloy: StartAlloy) -> None:
    with proxied(start_alloy) as (alloy, _, conn_id):
        async with alloy.api() as api:
            climb = await api.get(f"/connections/{conn_id}/proxy/echo/%2e%2e/%2E%2E/etc")
            slashes = await api.get(f"/connections/{conn_id}/proxy/echo//evil.example/x")
        assert climb.status_code == 400 and climb.json()["error"] == "invalid_path"
        assert slashes.status_code == 200
        assert slashes.json()["raw_path"] == "/api/echo//evil.example/x"


async def test_provider_answers_pass_back_with_their_status(start_alloy: StartAlloy) -> None:
    with proxied(start_alloy) as (alloy, _, conn_id):
        async with alloy.api() as api:
            for code in (201, 204, 404, 418):
                answer = await api.get(f"/connections/{conn_id}/proxy/status/{code}")
                assert answer.status_code == code
                assert answer.headers["x-from"] == "upstream"
                if code != 204:
                    assert answer.json() == {"code": code}


async def test_proxy_refuses_unknown_foreign_and_unauthenticated_calls(
        start_alloy: StartAlloy) -> None:
    with proxied(start_alloy) as (alloy, provider, conn_id):
        _, other_key = alloy.new_account()
        async with alloy.api() as api:
            unknown = await api.get("/connections/conn_nope/proxy/echo/x")
        async with httpx2.AsyncClient(base_url=alloy.base_url) as anon:
            foreign = await anon.get(f"/connections/{conn_id}/proxy/echo/x",
                                     headers={"Authorization": f"Bearer {other_key}"})
            nobody = await anon.get(f"/connections/{conn_id}/proxy/echo/x")
        assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
        assert foreign.status_code == 404
        assert nobody.status_code == 401
        assert provider.api_calls == []


async def test_unreachable_provider_api_is_a_502(start_alloy: StartAlloy) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with start_fake_provider() as provider, start_alloy(
            providers=provider_entry(provider.url, api_base_url=dead),
            connector_env=CLIENT_ENV, proxy_retries=1) as alloy:
        conn_id = seed_connection(alloy)
        async with alloy.api() as api:
            answer = await api.get(f"/connections/{conn_id}/proxy/anything")
        assert answer.status_code == 502
        assert answer.json()["error"] == "provider_unreachable"

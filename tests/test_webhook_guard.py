"""Webhook URLs cannot make a production server call internal addresses (SSRF): refused when
set, and again at every delivery, where the connection goes only to a checked address."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest

from alloy_oauth.crypto import new_key
from alloy_oauth.webhooks.guard import (
    GuardedTransport,
    IPAddress,
    TargetRefused,
    address_problem,
)
from tests.conftest import Alloy, StartAlloy
from tests.support.servers import free_port
from tests.test_refresh import start_receiver

PUBLIC_URL = "https://93.184.215.14/hook"  # a public literal: accepted without DNS

# Each kind of URL production refuses, and the words the 400 must use for it.
REFUSED = [
    ("http://93.184.215.14/hook", "must be an https URL"),
    ("ftp://93.184.215.14/hook", "must be an https URL"),
    ("https:///hook", "no host"),
    ("https://127.0.0.1/hook", "127.0.0.1 is a loopback address"),
    ("https://127.0.0.2:8443/hook", "loopback address"),
    ("https://localhost/hook", "'localhost' resolves to a loopback address"),
    ("https://LOCALHOST:9/hook", "'localhost' resolves to a loopback address"),
    ("https://10.1.2.3/hook", "private address"),
    ("https://172.16.5.4/hook", "private address"),
    ("https://192.168.0.1/hook", "private address"),
    ("https://169.254.169.254/latest/meta-data/", "link-local address"),
    ("https://0.0.0.0/hook", "unspecified address"),
    ("https://224.0.0.251/hook", "multicast address"),
    ("https://240.0.0.1/hook", "reserved address"),
    ("https://100.64.0.1/hook", "non-public address"),
    ("https://2130706433/hook", "'2130706433' is 127.0.0.1, a loopback address"),
    ("https://0x7f000001/hook", "is 127.0.0.1, a loopback address"),
    ("https://017700000001/hook", "is 127.0.0.1, a loopback address"),
    ("https://127.1/hook", "is 127.0.0.1, a loopback address"),
    ("https://0x0a.1/hook", "is 10.0.0.1, a private address"),
    ("https://0177.0.0.1/hook", "not a valid URL"),
    ("https://[::1]/hook", "::1 is a loopback address"),
    ("https://[::]/hook", "unspecified address"),
    ("https://[::ffff:127.0.0.1]/hook", "loopback address"),
    ("https://[::ffff:a9fe:a9fe]/hook", "link-local address"),
    ("https://[fc00::1]/hook", "private address"),
    ("https://[fd12:3456::1]/hook", "private address"),
    ("https://[fe80::1]/hook", "link-local address"),
    ("https://[fec0::1]/hook", "site-local address"),
    ("https://[ff02::1]/hook", "multicast address"),
    ("https://[2002:7f00:1::1]/hook", "loopback address"),  # 6to4 around 127.0.0.1
    ("https://[64:ff9b::a00:1]/hook", "private address"),  # NAT64 around 10.0.0.1
    ("https://no-such-host.invalid/hook", "does not resolve"),
]


@contextlib.contextmanager
def production(start_alloy: StartAlloy, **settings: Any) -> Iterator[Alloy]:
    with start_alloy(env="production", public_url=f"https://127.0.0.1:{free_port()}",
                     **settings) as alloy:
        yield alloy


@dataclass
class Listener:
    """A TCP port on 127.0.0.1 that counts the connections made to it (and drops them)."""

    port: int = 0
    accepted: int = 0
    stop: threading.Event = field(default_factory=threading.Event)


@contextlib.contextmanager
def tcp_listener() -> Iterator[Listener]:
    listener = Listener()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.05)
        listener.port = server.getsockname()[1]

        def accept() -> None:
            while not listener.stop.is_set():
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                listener.accepted += 1
                conn.close()

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            yield listener
        finally:
            listener.stop.set()
            thread.join(5)


async def wait_rows(alloy: Alloy, table: str, where: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not alloy.rows(table, where):
        if time.monotonic() > deadline:
            raise AssertionError(f"no row in {table} where {where}")
        await asyncio.sleep(0.05)


async def test_production_refuses_every_kind_of_non_public_webhook_url_and_stores_nothing(
        start_alloy: StartAlloy) -> None:
    with production(start_alloy) as alloy:
        async with alloy.api() as api:
            answers = {url: await api.put("/webhooks", json={"url": url})
                       for url, _ in REFUSED}
            assert alloy.rows("webhook_endpoints") == 0
            good = await api.put("/webhooks", json={"url": PUBLIC_URL})
            later = await api.put("/webhooks", json={"url": "https://[::1]/other"})
            kept = (await api.get("/webhooks")).json()["webhook"]["url"]
    wrong = {url: (answer.status_code, answer.json())
             for (url, reason), answer in zip(REFUSED, answers.values(), strict=True)
             if answer.status_code != 400
             or answer.json()["error"] != "invalid_webhook_url"
             or reason not in answer.json()["message"]}
    assert wrong == {}
    assert good.status_code == 200, good.text
    assert later.status_code == 400 and kept == PUBLIC_URL


async def test_refusal_names_the_host_but_never_the_rest_of_the_url(
        start_alloy: StartAlloy) -> None:
    with production(start_alloy) as alloy:
        async with alloy.api() as api:
            answer = await api.put("/webhooks", json={
                "url": "https://user:pw-secret@10.0.0.9/hook?token=tok-secret"})
    message = answer.json()["message"]
    assert answer.status_code == 400
    assert message.startswith("Invalid webhook URL: its host 10.0.0.9 is a private address")
    assert "pw-secret" not in message and "tok-secret" not in message


async def test_allow_private_setting_admits_internal_receivers_in_production_over_https_only(
        start_alloy: StartAlloy) -> None:
    with production(start_alloy, webhook_allow_private=True) as alloy:
        async with alloy.api() as api:
            internal = await api.put("/webhooks", json={"url": "https://10.0.0.5/hook"})
            loopback = await api.put("/webhooks", json={"url": "https://localhost:8443/hook"})
            plain = await api.put("/webhooks", json={"url": "http://10.0.0.5/hook"})
    assert internal.status_code == 200, internal.text
    assert loopback.status_code == 200, loopback.text
    assert plain.status_code == 400 and "https" in plain.json()["message"]


async def test_development_keeps_allowing_local_and_private_targets(
        start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        async with alloy.api() as api:
            local = await api.put("/webhooks", json={"url": "http://localhost:9/hook"})
            private = await api.put("/webhooks", json={"url": "https://10.0.0.5/hook"})
            plain = await api.put("/webhooks", json={"url": "http://10.0.0.5/hook"})
    assert local.status_code == 200 and private.status_code == 200
    assert plain.status_code == 400


@pytest.mark.parametrize("first,url,reason", [
    # Stored while ALLOY_WEBHOOK_ALLOW_PRIVATE was on; the name resolves at delivery.
    ({"env": "production", "webhook_allow_private": True}, "https://localhost:{port}/hook",
     "refused: its host 'localhost' resolves to a loopback address"),
    # Stored in development over http.
    ({}, "http://127.0.0.1:{port}/hook", "refused: it must be an https URL in production"),
], ids=["private-no-longer-allowed", "http-from-development"])
async def test_a_stored_url_no_longer_allowed_is_refused_at_delivery_once_and_logged(
        start_alloy: StartAlloy, tmp_path: Path, first: dict[str, Any], url: str,
        reason: str) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    if first.get("env") == "production":
        first = {**first, "public_url": f"https://127.0.0.1:{free_port()}"}
    with tcp_listener() as listener:
        with start_alloy(database_url=database_url, **first) as before:
            async with before.api() as api:
                put = await api.put("/webhooks", json={"url": url.format(port=listener.port)})
                assert put.status_code == 200, put.text
                assert (await api.post("/webhooks/test")).status_code == 200
        assert before.rows("webhook_outbox", "status = 'pending'") == 1
        with production(start_alloy, database_url=database_url, webhook_delivery=True,
                        encryption_keys=before.settings.encryption_keys,
                        webhook_poll_interval=0.1, webhook_retry_base=0.1) as after:
            await wait_rows(after, "webhook_outbox", "status = 'failed'")
            await asyncio.sleep(0.6)  # several retry periods: no second attempt
            async with httpx2.AsyncClient(base_url=after.base_url,
                                          headers=before.headers) as api:
                [event] = (await api.get("/webhooks/events")).json()["events"]
                log = (await api.get("/webhooks/deliveries")).json()["deliveries"]
    assert listener.accepted == 0  # refused before any connection
    assert [(d["attempt"], d["statusCode"]) for d in log] == [(1, None)]
    assert log[0]["error"].startswith(reason)
    assert event["status"] == "failed" and event["attempts"] == 1
    assert event["lastError"] == log[0]["error"]


async def test_with_allow_private_the_same_stored_url_is_attempted_at_delivery(
        start_alloy: StartAlloy, tmp_path: Path) -> None:
    # The control for the test above: only the setting differs, and the connection is made.
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    allow = {"webhook_allow_private": True, "database_url": database_url,
             "encryption_keys": new_key("shared")}
    with tcp_listener() as listener:
        with production(start_alloy, **allow) as before:
            async with before.api() as api:
                await api.put("/webhooks", json={"url": f"https://localhost:{listener.port}/h"})
                await api.post("/webhooks/test")
        with production(start_alloy, webhook_delivery=True, webhook_poll_interval=0.1,
                        webhook_retry_base=30, **allow) as after:
            await wait_rows(after, "webhook_deliveries", "1=1")
    assert listener.accepted >= 1
    assert after.rows("webhook_deliveries", "error LIKE 'cannot reach the endpoint%'") == 1
    assert after.rows("webhook_outbox", "status = 'pending' AND attempts = 1") == 1


def _loopback_only(ip: IPAddress) -> str | None:
    return None if ip.is_loopback else "not loopback"


async def test_guarded_transport_connects_to_the_checked_address_with_the_name_as_host(
        ) -> None:
    with start_receiver() as receiver:
        port = int(receiver.url.rsplit(":", 1)[1].split("/")[0])
        url = f"http://localhost:{port}/hook"
        body = b'{"id":"evt_1","type":"webhook.test","createdAt":null,"data":{}}'
        async with httpx2.AsyncClient(transport=GuardedTransport(_loopback_only)) as client:
            sent = await client.post(url, content=body)
        async with httpx2.AsyncClient(transport=GuardedTransport()) as client:
            with pytest.raises(TargetRefused) as refused:
                await client.post(url, content=body)
    assert sent.status_code == 200
    assert [(h["host"], b) for h, b in receiver.received] == [(f"localhost:{port}", body)]
    assert refused.value.reason.startswith("its host 'localhost' resolves to a loopback")


def test_embedded_ipv4_addresses_are_judged_by_the_ipv4_inside() -> None:
    from ipaddress import ip_address
    assert address_problem(ip_address("::ffff:8.8.8.8")) is None
    assert address_problem(ip_address("64:ff9b::808:808")) is None
    assert address_problem(ip_address("2002:808:808::1")) is None
    assert address_problem(ip_address("::ffff:10.0.0.1")) == "a private address"
    assert address_problem(ip_address("2606:4700::1111")) is None
    assert address_problem(ip_address("8.8.8.8")) is None

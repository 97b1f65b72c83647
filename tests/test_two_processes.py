"""Two `alloy-oauth serve` processes on one database behave as one server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2

from alloy_oauth.crypto import new_key
from tests.support.browser import HttpBrowser
from tests.support.servers import free_port

BIN = Path(sys.executable).parent / "alloy-oauth"
APP = "http://localhost:3999/cb"


@contextlib.contextmanager
def serve(port: int, env: dict[str, str], cwd: Path) -> Iterator[str]:
    log = cwd / f"serve-{port}.log"
    with log.open("w") as out:
        proc = subprocess.Popen([str(BIN), "serve", "--port", str(port)], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            with contextlib.suppress(httpx2.HTTPError):
                if httpx2.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_each_step_can_land_on_either_process(tmp_path: Path) -> None:
    port_a, port_b = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOY_")}
    env.update(ALLOY_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}",
               ALLOY_ENCRYPTION_KEYS=new_key("shared"),
               # The address a load balancer would have; here it is process A.
               ALLOY_PUBLIC_URL=f"http://127.0.0.1:{port_a}")
    key = subprocess.run([str(BIN), "keys", "create", "--name", "lb"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    headers = {"Authorization": f"Bearer {key}"}
    with serve(port_a, env, tmp_path) as a, serve(port_b, env, tmp_path) as b:
        async with httpx2.AsyncClient(headers=headers) as api, HttpBrowser() as browser:
            # Step 1 on A; the single-use link opened on B.
            started = (await api.post(f"{a}/connectors/sandbox/credentials", json={
                "credentialType": "oauth2", "redirectUri": APP})).json()
            link = started["oauthUrl"].replace(a, b)
            consent = await browser.goto(link, stop_at="http://localhost:3999")
            assert isinstance(consent, httpx2.Response) and consent.status_code == 200
            # The same link is spent on A too.
            again = await browser.goto(started["oauthUrl"], stop_at="http://never.invalid")
            assert isinstance(again, httpx2.Response) and again.status_code == 400
            back = await browser.submit_form(consent, fields={"decision": "allow"},
                                             stop_at="http://localhost:3999")
            assert isinstance(back, httpx2.URL)
            code, state = back.params["code"], back.params["state"]
            assert state == started["state"]
            # Both processes race to exchange the one code: exactly one wins.
            body = {"code": code, "state": state}
            answers = await asyncio.gather(*(
                api.post(f"{url}/connectors/sandbox/credentials/callback", json=body)
                for url in (a, b, a, b, a, b)))
            statuses = sorted(r.status_code for r in answers)
            assert statuses == [200, 400, 400, 400, 400, 400], [r.text for r in answers]
            conn = next(r for r in answers if r.status_code == 200).json()["connectionId"]
            # Either process serves the connection; a refresh on one is served by the other at
            # once (request-path reads go to the database every time), and so is a delete.
            assert (await api.get(f"{b}/connections/{conn}")).status_code == 200
            old = (await api.get(f"{b}/connections/{conn}/token")).json()["accessToken"]
            new = (await api.get(f"{a}/connections/{conn}/token",
                                 params={"forceRefresh": "true"})).json()["accessToken"]
            assert new != old
            assert (await api.get(f"{b}/connections/{conn}/token")).json()["accessToken"] == new
            assert (await api.delete(f"{a}/connections/{conn}")).status_code == 200
            gone = await api.get(f"{b}/connections/{conn}")
            assert gone.status_code == 404 and gone.json()["error"] == "not_found"
            for path in ("token", "proxy/me"):
                gone = await api.get(f"{b}/connections/{conn}/{path}")
                assert gone.status_code == 404 and gone.json()["error"] == "not_found"
    logs = "".join(p.read_text() for p in tmp_path.glob("serve-*.log"))
    assert "token=[redacted]" in logs  # the access log recorded the link, redacted
    for secret in (key, code, link.split("token=")[1], env["ALLOY_ENCRYPTION_KEYS"]):
        assert secret not in logs

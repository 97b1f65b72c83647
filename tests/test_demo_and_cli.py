"""`alloy-oauth demo`, `keys create` and `connect`, run as a user runs them."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import httpx2

from alloy_oauth import AsyncAlloyOAuthFlow
from tests.support.browser import HttpBrowser, query_params
from tests.support.demo import BIN, CLEAN_ENV, run_demo


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, env={**CLEAN_ENV, **(env or {})})


async def allow_in_sandbox(browser: HttpBrowser, url: str | httpx2.URL, stop_at: str,
                           ) -> httpx2.URL:
    """Open a link that leads to the sandbox consent page and press Allow."""
    consent = await browser.goto(url, stop_at=stop_at)
    assert isinstance(consent, httpx2.Response) and consent.status_code == 200, consent
    assert "Allow" in consent.text
    back = await browser.submit_form(consent, fields={"decision": "allow"}, stop_at=stop_at)
    assert isinstance(back, httpx2.URL), back
    return back


def test_keys_create_prints_only_the_key_on_a_fresh_machine(tmp_path: Path) -> None:
    result = cli("keys", "create", "--name", "ci", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and result.stdout.startswith("ak_")
    key = result.stdout.strip()
    assert key not in result.stderr
    assert key.encode() not in (tmp_path / "alloy-oauth.db").read_bytes()


def test_encryption_key_command_prints_a_usable_key(tmp_path: Path) -> None:
    result = cli("keys", "encryption-key", "--kid", "prod1", cwd=tmp_path)
    assert result.returncode == 0
    from alloy_oauth.crypto import parse_keys
    [(kid, raw)] = parse_keys(result.stdout.strip())
    assert kid == "prod1" and len(raw) == 32


def test_serve_refuses_production_without_keys_or_https(tmp_path: Path) -> None:
    result = cli("serve", cwd=tmp_path, env={"ALLOY_ENV": "production"})
    assert result.returncode == 2
    assert "ALLOY_ENCRYPTION_KEYS is required" in result.stderr
    assert "ALLOY_PUBLIC_URL must be an https URL" in result.stderr


async def test_demo_connects_the_sandbox_through_the_example_app(tmp_path: Path) -> None:
    with run_demo(tmp_path, env={"ALLOY_SANDBOX_TOKEN_TTL": "2"}) as demo:
        key, port, example = demo.api_key, demo.port, demo.example
        async with HttpBrowser() as browser:
            home = await browser.goto(example, stop_at="http://never.invalid")
            assert isinstance(home, httpx2.Response) and "/connect/sandbox" in home.text
            back = await allow_in_sandbox(browser, f"{example}/connect/sandbox",
                                          stop_at=f"{example}/oauth/callback")
            page = await browser.goto(back, stop_at="http://never.invalid")
        assert isinstance(page, httpx2.Response)
        assert page.status_code == 200 and "Connection Successful!" in page.text, page.text
        conn_id = page.text.split("Connection ID: ")[1].split("<")[0].strip()

        # The guide's step 6: use the connection ID. Tokens live 2 s here, so the second
        # request refreshes (the sandbox rotates refresh tokens) and still works.
        async with AsyncAlloyOAuthFlow(api_key=key, base_url=f"http://localhost:{port}") as flow:
            first = await flow.get_access_token(conn_id)
            await asyncio.sleep(1.2)
            second = await flow.get_access_token(conn_id)
            assert second.access_token != first.access_token
            async with httpx2.AsyncClient() as http:
                me = await http.get(f"http://localhost:{port}/sandbox/api/me",
                                    headers={"Authorization": f"Bearer {second.access_token}"})
            assert me.status_code == 200 and me.json()["username"]
            info = await flow.get_connection(conn_id)
            assert info["status"] == "connected" and info["lastRefreshAt"]


async def test_connect_command_prints_connection_id_and_writes_env_file(tmp_path: Path) -> None:
    with run_demo(tmp_path) as demo:
        key, port = demo.api_key, demo.port
        env_file = tmp_path / "app.env"
        env_file.write_text("OTHER=1\nCONNECTION_ID=old\n")
        proc = subprocess.Popen(
            [str(BIN), "connect", "sandbox", "--no-browser", "--env-file", str(env_file),
             "--timeout", "30"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**CLEAN_ENV, "ALLOY_API_KEY": key,
                 "ALLOY_BASE_URL": f"http://localhost:{port}"})
        try:
            assert proc.stderr is not None
            url = ""
            while not url.startswith("http"):
                line = await asyncio.to_thread(proc.stderr.readline)
                assert line, "connect exited before printing the URL"
                url = line.strip()
            async with HttpBrowser() as browser:
                back = await allow_in_sandbox(browser, url, stop_at="http://127.0.0.1:")
                assert query_params(back)["code"]
                done = await browser.goto(back, stop_at="http://never.invalid")
                assert isinstance(done, httpx2.Response) and done.status_code == 200
            out, err = await asyncio.to_thread(proc.communicate, timeout=30)
        finally:
            proc.kill()
        assert proc.returncode == 0, err
        assert out.startswith("CONNECTION_ID=conn_") and out.count("\n") == 1
        conn_id = out.strip().split("=")[1]
        assert env_file.read_text().splitlines() == ["OTHER=1", f"CONNECTION_ID={conn_id}"]
        async with AsyncAlloyOAuthFlow(api_key=key, base_url=f"http://localhost:{port}") as flow:
            assert (await flow.get_connection(conn_id))["connectorId"] == "sandbox"

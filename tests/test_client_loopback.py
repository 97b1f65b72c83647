"""The terminal flow: a loopback callback server, driven here by an httpx2 "browser", with the
Alloy server faked by httpx2.MockTransport. Also the .env writer."""

from __future__ import annotations

import json
import queue
import stat
import threading
import webbrowser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest

from alloy_oauth.client import AlloyError, AlloyOAuthFlow, Connection, InvalidAuthorizationCode
from alloy_oauth.client.loopback import connect_via_loopback, write_env_file

OAUTH_URL = "http://alloy.test/api/strategy/connector/sandbox/authorize?userId=u&token=t"
CONNECTED = {"connectionId": "conn_42", "credentialId": "cred_1", "status": "connected"}


class FakeAlloy:
    """Answers initiate (echoing the client's state) and the code exchange."""

    def __init__(self, exchange: httpx2.Response | None = None, state: str | None = None) -> None:
        self.exchange = exchange or httpx2.Response(200, json=CONNECTED)
        self.state = state
        self.bodies: dict[str, list[Any]] = {"initiate": [], "exchange": []}

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        if request.url.path.endswith("/credentials/callback"):
            self.bodies["exchange"].append(body)
            return self.exchange
        self.bodies["initiate"].append(body)
        state = self.state or body["state"]
        return httpx2.Response(
            200, json={"oauthUrl": OAUTH_URL, "credentialId": "cred_1", "state": state}
        )

    @property
    def redirect_uri(self) -> str:
        return str(self.bodies["initiate"][0]["redirectUri"])

    @property
    def state_sent(self) -> str:
        return str(self.bodies["initiate"][0]["state"])


class LoopbackRun:
    """connect_via_loopback in a thread; the test plays the browser."""

    def __init__(self, alloy: FakeAlloy, **kwargs: Any) -> None:
        self.alloy = alloy
        self.urls: queue.Queue[str] = queue.Queue()
        self.result: Connection | None = None
        self.error: BaseException | None = None
        self.flow = AlloyOAuthFlow(
            api_key="sk_test", base_url="http://alloy.test", transport=httpx2.MockTransport(alloy)
        )
        kwargs.setdefault("open_browser", False)
        kwargs.setdefault("timeout", 5.0)
        kwargs.setdefault("on_url", self.urls.put)

        def target() -> None:
            try:
                self.result = connect_via_loopback(self.flow, "sandbox", **kwargs)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def wait_for_url(self) -> str:
        return self.urls.get(timeout=5)

    def browser_get(self, query: str, path: str = "/callback") -> httpx2.Response:
        base = urlsplit(self.alloy.redirect_uri)
        url = f"{base.scheme}://{base.netloc}{path}?{query}"
        with httpx2.Client(trust_env=False, timeout=5) as browser:
            return browser.get(url)

    def finish(self) -> None:
        self.thread.join(5)
        assert not self.thread.is_alive()
        self.flow.close()


def port_is_closed(redirect_uri: str) -> bool:
    try:
        with httpx2.Client(trust_env=False, timeout=1) as browser:
            browser.get(redirect_uri)
    except httpx2.ConnectError:
        return True
    return False


def test_loopback_flow_returns_the_connection_and_tells_the_browser_to_close(
    capsys: pytest.CaptureFixture[str],
) -> None:
    alloy = FakeAlloy()
    run = LoopbackRun(alloy, scopes=["read"], user_id="user_1")
    assert run.wait_for_url() == OAUTH_URL
    redirect = urlsplit(alloy.redirect_uri)
    assert (redirect.scheme, redirect.hostname, redirect.path) == ("http", "127.0.0.1", "/callback")
    assert redirect.port and redirect.port > 0
    assert alloy.bodies["initiate"][0]["scopes"] == ["read"]
    assert alloy.bodies["initiate"][0]["userId"] == "user_1"

    page = run.browser_get(f"code=code_secret_1&state={alloy.state_sent}")
    run.finish()

    assert page.status_code == 200
    assert "close this window" in page.text
    assert run.error is None
    assert run.result == Connection("conn_42", "cred_1", "connected")
    assert alloy.bodies["exchange"] == [{"code": "code_secret_1", "state": alloy.state_sent}]
    assert "code_secret_1" not in capsys.readouterr().err  # no request log with the code
    assert port_is_closed(alloy.redirect_uri)


def test_the_server_returned_state_is_the_one_checked() -> None:
    alloy = FakeAlloy(state="server-made-state")
    run = LoopbackRun(alloy)
    run.wait_for_url()
    page = run.browser_get("code=c1&state=server-made-state")
    run.finish()
    assert page.status_code == 200
    assert run.result is not None


def test_a_callback_with_another_state_fails_with_state_mismatch_and_no_exchange() -> None:
    alloy = FakeAlloy()
    run = LoopbackRun(alloy)
    run.wait_for_url()
    page = run.browser_get("code=c1&state=forged")
    run.finish()
    assert page.status_code == 400
    assert isinstance(run.error, AlloyError)
    assert run.error.code == "state_mismatch"
    assert alloy.bodies["exchange"] == []


def test_a_code_without_state_is_a_state_mismatch() -> None:
    alloy = FakeAlloy()
    run = LoopbackRun(alloy)
    run.wait_for_url()
    run.browser_get("code=c1")
    run.finish()
    assert isinstance(run.error, AlloyError)
    assert run.error.code == "state_mismatch"


def test_a_provider_error_is_raised_with_its_code_and_shown_escaped() -> None:
    alloy = FakeAlloy()
    run = LoopbackRun(alloy)
    run.wait_for_url()
    page = run.browser_get(
        f"error=access_denied&error_description=%3Cb%3EUser%3C/b%3E+said+no&state={alloy.state_sent}"
    )
    run.finish()
    assert page.status_code == 400
    assert "&lt;b&gt;User&lt;/b&gt; said no" in page.text
    assert "<b>" not in page.text
    assert isinstance(run.error, AlloyError)
    assert (run.error.code, run.error.message) == ("access_denied", "<b>User</b> said no")
    assert alloy.bodies["exchange"] == []


def test_a_failed_exchange_is_raised_and_shown_to_the_browser() -> None:
    refused = httpx2.Response(
        400, json={"error": "invalid_grant", "message": "Invalid authorization code"}
    )
    alloy = FakeAlloy(exchange=refused)
    run = LoopbackRun(alloy)
    run.wait_for_url()
    page = run.browser_get(f"code=c1&state={alloy.state_sent}")
    run.finish()
    assert page.status_code == 502
    assert "Invalid authorization code" in page.text
    assert isinstance(run.error, InvalidAuthorizationCode)


def test_unrelated_requests_do_not_end_the_wait() -> None:
    alloy = FakeAlloy()
    run = LoopbackRun(alloy)
    run.wait_for_url()
    assert run.browser_get("", path="/favicon.ico").status_code == 404
    assert run.browser_get("foo=bar").status_code == 400
    assert run.thread.is_alive()
    assert run.browser_get(f"code=c1&state={alloy.state_sent}").status_code == 200
    run.finish()
    assert run.result is not None


def test_no_callback_within_the_timeout_raises_timeout_and_frees_the_port() -> None:
    alloy = FakeAlloy()
    run = LoopbackRun(alloy, timeout=0.2)
    run.wait_for_url()
    run.finish()
    assert isinstance(run.error, AlloyError)
    assert run.error.code == "timeout"
    assert port_is_closed(alloy.redirect_uri)


def test_a_failed_initiate_is_raised_and_the_listener_closed() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        refuse.body = json.loads(request.content)  # type: ignore[attr-defined]
        return httpx2.Response(
            400, json={"error": "invalid_redirect_uri", "message": "Invalid redirect_uri."}
        )

    flow = AlloyOAuthFlow(
        api_key="k", base_url="http://a.test", transport=httpx2.MockTransport(refuse)
    )
    with pytest.raises(AlloyError) as info:
        connect_via_loopback(flow, "sandbox", open_browser=False, on_url=lambda u: None)
    assert info.value.code == "invalid_redirect_uri"
    assert port_is_closed(refuse.body["redirectUri"])  # type: ignore[attr-defined]


def test_open_browser_opens_the_oauth_url(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: queue.Queue[str] = queue.Queue()

    def fake_open(url: str, *args: Any, **kwargs: Any) -> bool:
        opened.put(url)
        return True

    monkeypatch.setattr(webbrowser, "open", fake_open)
    alloy = FakeAlloy()
    shown: list[str] = []
    run = LoopbackRun(alloy, open_browser=True, on_url=shown.append)
    assert opened.get(timeout=5) == OAUTH_URL
    assert shown == [OAUTH_URL]
    run.browser_get(f"code=c1&state={alloy.state_sent}")
    run.finish()
    assert run.result is not None


# --------------------------------------------------------------------------- .env


def test_write_env_file_creates_a_private_file(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    write_env_file(target, "CONNECTION_ID", "conn_1")
    assert target.read_text() == "CONNECTION_ID=conn_1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_write_env_file_replaces_the_key_and_keeps_other_lines(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    target.write_text(
        "# my settings\nALLOY_API_KEY=sk_1\nexport CONNECTION_ID=old\n\nOTHER=x\n"
        "CONNECTION_ID=older\nCONNECTION_IDX=keep\n"
    )
    target.chmod(0o640)
    write_env_file(target, "CONNECTION_ID", "conn_new")
    assert target.read_text() == (
        "# my settings\nALLOY_API_KEY=sk_1\nexport CONNECTION_ID=conn_new\n\nOTHER=x\n"
        "CONNECTION_IDX=keep\n"
    )
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_write_env_file_appends_a_missing_key(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    target.write_text("A=1")  # no final newline
    write_env_file(str(target), "B", "2")
    assert target.read_text() == "A=1\nB=2\n"


def test_write_env_file_quotes_values_that_need_it(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    write_env_file(target, "NAME", "two words $HOME")
    assert target.read_text() == "NAME='two words $HOME'\n"


def test_write_env_file_rejects_bad_keys_and_multiline_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_env_file(tmp_path / ".env", "BAD KEY", "x")
    with pytest.raises(ValueError):
        write_env_file(tmp_path / ".env", "KEY", "a\nb")
    assert not (tmp_path / ".env").exists()

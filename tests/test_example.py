"""Unit tests of the example web app (alloy_oauth.example) with the Alloy server faked."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from alloy_oauth.example import create_app
from alloy_oauth.logsafe import QueryRedactingFilter

OAUTH_URL = "http://alloy.test/api/strategy/connector/notion/authorize?userId=u&token=t"


class FakeAlloy:
    def __init__(self) -> None:
        self.initiate: list[dict[str, Any]] = []
        self.exchange: list[dict[str, Any]] = []
        self.initiate_answer: httpx2.Response | None = None
        self.exchange_answer: httpx2.Response | None = None
        self.counter = 0

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        if request.url.path.endswith("/callback"):
            self.exchange.append(body)
            if self.exchange_answer is not None:
                return self.exchange_answer
            self.counter += 1
            return httpx2.Response(
                200,
                json={"connectionId": f"conn_{self.counter}", "credentialId": "cred_1",
                      "status": "connected"},
            )
        self.initiate.append(body)
        if self.initiate_answer is not None:
            return self.initiate_answer
        return httpx2.Response(
            200, json={"oauthUrl": OAUTH_URL, "credentialId": "cred_1", "state": body["state"]}
        )


@pytest.fixture
def alloy() -> FakeAlloy:
    return FakeAlloy()


@pytest.fixture
def client(alloy: FakeAlloy, tmp_path: Path):
    app = create_app(
        alloy_base_url="http://alloy.test",
        api_key="sk_test",
        public_url="http://localhost:3000",
        db_path=tmp_path / "sub" / "example.db",
        session_secret="s" * 32,
        transport=httpx2.MockTransport(alloy),
    )
    with TestClient(app, follow_redirects=False) as c:
        yield c


def start(client: TestClient, alloy: FakeAlloy, connector: str = "notion") -> str:
    r = client.get(f"/connect/{connector}")
    assert r.status_code == 302
    assert r.headers["location"] == OAUTH_URL
    return str(alloy.initiate[-1]["state"])


def test_home_page_lists_a_connect_link_per_connector(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert "<a href='/connect/notion'>Connect Notion</a>" in r.text
    assert "Connect Google Drive" in r.text
    assert "No connections yet" in r.text


def test_callback_exchanges_code_stores_and_shows_connection_id(
        client: TestClient, alloy: FakeAlloy, tmp_path: Path) -> None:
    state = start(client, alloy)
    assert alloy.initiate[-1]["redirectUri"] == "http://localhost:3000/oauth/callback"
    cookie = client.cookies.get("alloy_example_session")
    assert cookie
    r = client.get("/oauth/callback", params={"code": "c1", "state": state})
    assert r.status_code == 200, r.text
    assert "<h1>Connection Successful!</h1>" in r.text
    assert "<p>Connection ID: conn_1</p>" in r.text
    assert "<p>Add this to your .env file: CONNECTION_ID=conn_1</p>" in r.text
    assert alloy.exchange == [{"code": "c1", "state": state}]
    assert r.headers["cache-control"] == "no-store"
    listed = client.get("/connections").json()
    assert [(c["connectionId"], c["connector"]) for c in listed] == [("conn_1", "notion")]
    assert "conn_1" in client.get("/").text
    # replay
    r = client.get("/oauth/callback", params={"code": "c1", "state": state})
    assert r.status_code == 400
    assert "Invalid state" in r.text
    assert (tmp_path / "sub" / "example.db").exists()


def test_session_cookie_is_httponly_and_samesite_lax(
        client: TestClient, alloy: FakeAlloy) -> None:
    r = client.get("/connect/notion")
    sc = r.headers["set-cookie"].lower()
    assert "samesite=lax" in sc and "httponly" in sc


def test_callback_with_unknown_state_is_refused_as_csrf(
        client: TestClient, alloy: FakeAlloy) -> None:
    start(client, alloy)
    r = client.get("/oauth/callback", params={"code": "c1", "state": "nope"})
    assert r.status_code == 400 and "Invalid state" in r.text
    r = client.get("/oauth/callback", params={"code": "c1"})
    assert r.status_code == 400 and "Invalid state" in r.text
    assert alloy.exchange == []


def test_state_from_another_browser_is_refused(
        client: TestClient, alloy: FakeAlloy) -> None:
    state = start(client, alloy)
    client.cookies.clear()
    r = client.get("/oauth/callback", params={"code": "c1", "state": state})
    assert r.status_code == 400


def test_two_pending_flows_in_one_session_both_complete(
        client: TestClient, alloy: FakeAlloy) -> None:
    s1 = start(client, alloy, "notion")
    s2 = start(client, alloy, "github")
    assert client.get("/oauth/callback", params={"code": "a", "state": s2}).status_code == 200
    assert client.get("/oauth/callback", params={"code": "b", "state": s1}).status_code == 200
    listed = client.get("/connections").json()
    assert sorted(c["connector"] for c in listed) == ["github", "notion"]


def test_provider_error_is_shown_html_escaped(
        client: TestClient, alloy: FakeAlloy) -> None:
    state = start(client, alloy)
    r = client.get("/oauth/callback", params={"error": "access_denied",
                   "error_description": "<script>x</script>", "state": state})
    assert r.status_code == 400
    assert "OAuth error: access_denied" in r.text
    assert "&lt;script&gt;" in r.text and "<script>" not in r.text
    # state consumed
    r = client.get("/oauth/callback", params={"code": "c", "state": state})
    assert r.status_code == 400


def test_initiate_failure_shows_failed_to_initiate_page(
        client: TestClient, alloy: FakeAlloy) -> None:
    alloy.initiate_answer = httpx2.Response(
        400, json={"error": "invalid_redirect_uri", "message": "Invalid redirect_uri <x>"})
    r = client.get("/connect/notion")
    assert r.status_code == 500
    assert "Failed to initiate OAuth flow: Invalid redirect_uri &lt;x&gt;" in r.text


def test_exchange_failure_shows_failed_to_complete_page(
        client: TestClient, alloy: FakeAlloy) -> None:
    state = start(client, alloy)
    alloy.exchange_answer = httpx2.Response(
        400, json={"error": "invalid_grant", "message": "Invalid authorization code"})
    r = client.get("/oauth/callback", params={"code": "c", "state": state})
    assert r.status_code == 500
    assert "Failed to complete OAuth: Invalid authorization code" in r.text


def test_unknown_connector_link_is_404(client: TestClient) -> None:
    assert client.get("/connect/evil").status_code == 404


def test_access_log_filter_hides_code_and_state() -> None:
    args = ("1.2.3.4", "GET", "/oauth/callback?code=SECRET&state=S2", "1.1", 200)
    rec = logging.LogRecord("uvicorn.access", 20, "", 0, '%s - "%s %s HTTP/%s" %d', args, None)
    QueryRedactingFilter().filter(rec)
    assert "SECRET" not in rec.getMessage() and "S2" not in rec.getMessage()

"""The SDK's JWT, its JSON API and the hosted pages, over plain HTTP (no browser)."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx2
import jwt as pyjwt
import pytest
import pytest_asyncio

from alloy_oauth.crypto import new_key
from alloy_oauth.errors import BadRequest, InvalidRedirectUri
from alloy_oauth.flows import check_redirect_uri
from alloy_oauth.frontend.router import _provider_source
from alloy_oauth.frontend.sessions import check_origin
from alloy_oauth.providers import Connector
from alloy_oauth.runtime import encryption_box
from alloy_oauth.settings import Settings
from alloy_oauth.store.models import Account
from tests.conftest import Alloy, StartAlloy
from tests.support.browser import HttpBrowser
from tests.support.servers import free_port

APP_ORIGIN = "http://127.0.0.1:3999"
NEVER = "http://never.invalid/"


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[HttpBrowser]:
    async with HttpBrowser() as http_browser:
        yield http_browser


async def new_user(alloy: Alloy, username: str = "alice") -> tuple[str, str]:
    """(user id, SDK JWT) of a new user of the account."""
    async with alloy.api() as api:
        user_id = (await api.post("/users", json={"username": username})).json()["userId"]
        answer = await api.get(f"/users/{user_id}/token")
        assert answer.status_code == 200, answer.text
        return user_id, answer.json()["token"]


def sdk(alloy: Alloy, token: str | None, origin: str | None = APP_ORIGIN) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if origin:
        headers["Origin"] = origin
    return httpx2.AsyncClient(base_url=alloy.base_url, headers=headers, timeout=20)


async def new_session(alloy: Alloy, token: str, **body: Any) -> dict[str, Any]:
    async with sdk(alloy, token) as client:
        answer = await client.post("/sdk/sessions", json={"connectorId": "sandbox", **body})
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


async def run_connect_page(browser: HttpBrowser, url: str, decision: str = "allow",
                           fields: dict[str, str] | None = None) -> httpx2.Response:
    """Continue on the connect page, decide at the sandbox; the page the browser ends on."""
    page = await browser.goto(url, stop_at=NEVER)
    assert isinstance(page, httpx2.Response) and page.status_code == 200, page
    consent = await browser.submit_form(page, fields={"action": "continue", **(fields or {})},
                                        stop_at=NEVER)
    assert isinstance(consent, httpx2.Response) and "/sandbox/oauth/authorize" in str(
        consent.url), consent
    end = await browser.submit_form(consent, fields={"username": "alice", "decision": decision},
                                    stop_at=NEVER)
    assert isinstance(end, httpx2.Response)
    return end


def assert_error(response: httpx2.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == code, response.text
    assert response.headers["access-control-allow-origin"] == "*"


# --- the JWT ----------------------------------------------------------------------------------

async def test_user_token_is_a_one_hour_jwt_for_that_user_and_account_only(
        start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        user_id, token = await new_user(alloy)
        claims = pyjwt.decode(token, encryption_box(alloy.settings).derive("sdk-jwt"),
                              algorithms=["HS256"], audience="alloy-sdk", issuer=alloy.base_url)
        assert claims["sub"] == user_id and claims["acct"] == alloy.account_id
        assert claims["exp"] - claims["iat"] == 3600
        _, other_key = alloy.new_account()
        async with httpx2.AsyncClient(base_url=alloy.base_url, headers={
                "Authorization": f"Bearer {other_key}"}) as other:
            assert (await other.get(f"/users/{user_id}/token")).status_code == 404


async def test_the_sdk_api_refuses_missing_bad_and_stale_tokens(start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        user_id, token = await new_user(alloy)
        key = encryption_box(alloy.settings).derive("sdk-jwt")
        now = int(time.time())
        base = {"sub": user_id, "acct": alloy.account_id, "iat": now, "exp": now + 600,
                "iss": alloy.base_url, "aud": "alloy-sdk"}
        bad = {
            "garbage": "not-a-jwt",
            "other key": pyjwt.encode(base, "another-key-of-32-bytes-or-more!!", "HS256"),
            "unsigned": pyjwt.encode(base, None, "none"),
            "other audience": pyjwt.encode({**base, "aud": "something"}, key, "HS256"),
            "other issuer": pyjwt.encode({**base, "iss": "http://elsewhere"}, key, "HS256"),
            "too long a life": pyjwt.encode({**base, "exp": now + 86400}, key, "HS256"),
            "expired": pyjwt.encode({**base, "iat": now - 7200, "exp": now - 3600}, key,
                                    "HS256"),
        }
        for name, value in bad.items():
            async with sdk(alloy, value) as client:
                answer = await client.post("/sdk/sessions", json={"connectorId": "sandbox"})
            assert_error(answer, 401, "invalid_token")
            assert "Invalid SDK token" in answer.json()["message"], name
        async with sdk(alloy, None) as client:
            assert_error(await client.post("/sdk/sessions", json={}), 401, "missing_token")
        async with alloy.api() as api:
            assert (await api.delete(f"/users/{user_id}")).status_code == 200
        async with sdk(alloy, token) as client:
            gone = await client.post("/sdk/sessions", json={"connectorId": "sandbox"})
        assert_error(gone, 401, "invalid_token")
        assert "no longer exists" in gone.json()["message"]
        assert alloy.rows("sdk_sessions") == 0


async def test_preflight_lets_any_page_send_the_jwt(start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        async with httpx2.AsyncClient(base_url=alloy.base_url) as client:
            for path in ("/sdk/sessions", "/sdk/sessions/x", "/sdk/sessions/x/cancel"):
                answer = await client.options(path, headers={
                    "Origin": APP_ORIGIN, "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization,content-type"})
                assert answer.status_code == 204
                assert answer.headers["access-control-allow-origin"] == "*"
                allowed = answer.headers["access-control-allow-headers"].lower()
                assert "authorization" in allowed and "content-type" in allowed


# --- sessions -----------------------------------------------------------------------------------

async def test_bad_session_requests_are_refused_and_store_nothing(
        start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        _, token = await new_user(alloy)
        cases: list[tuple[str | None, dict[str, Any], int, str]] = [
            ("http://evil.example", {"connectorId": "sandbox"}, 400, "invalid_origin"),
            (None, {"connectorId": "sandbox"}, 400, "invalid_origin"),
            ("null", {"connectorId": "sandbox"}, 400, "invalid_origin"),
            (APP_ORIGIN, {"connectorId": "nope"}, 404, "connector_not_found"),
            (APP_ORIGIN, {"connectorId": "notion"}, 400, "connector_not_configured"),
            (APP_ORIGIN, {}, 400, "invalid_connector"),
            (APP_ORIGIN, {"connectorId": "sandbox", "mode": "iframe"}, 400, "invalid_mode"),
            (APP_ORIGIN, {"connectorId": "sandbox", "scopes": "profile"}, 400,
             "invalid_scopes"),
            (APP_ORIGIN, {"connectorId": "sandbox", "data": {"x": 1}}, 400, "invalid_input"),
            (APP_ORIGIN, {"connectorId": "sandbox", "mode": "redirect"}, 400,
             "invalid_return_url"),
            (APP_ORIGIN, {"connectorId": "sandbox", "mode": "redirect",
                          "returnUrl": "https://elsewhere.example/back"}, 400,
             "invalid_return_url"),
        ]
        for origin, body, status, code in cases:
            async with sdk(alloy, token, origin) as client:
                assert_error(await client.post("/sdk/sessions", json=body), status, code)
        async with sdk(alloy, token) as client:
            assert_error(await client.post("/sdk/sessions", content=b"{nope"), 400,
                         "invalid_json")
        assert alloy.rows("sdk_sessions") == 0


def test_origins_follow_the_redirect_uri_policy_in_production() -> None:
    settings = Settings(env="production", public_url="https://alloy.example.com",
                        encryption_keys=new_key("p"),
                        allowed_redirect_uris="https://app.example.com/oauth/*")
    rt: Any = SimpleNamespace(settings=settings)
    account = Account(id="acct_1", name="a", redirect_uris=["https://other.example.org/cb"])
    assert check_origin(rt, account, "https://app.example.com") == "https://app.example.com"
    assert check_origin(rt, account, "https://other.example.org") == "https://other.example.org"
    for refused in ("https://evil.example.com", "http://app.example.com",
                    "http://localhost:3000", "https://app.example.com/path", "null", ""):
        with pytest.raises(BadRequest) as err:
            check_origin(rt, account, refused)
        assert err.value.code == "invalid_origin"
    # The hosted result page is always an allowed redirect URI, allow-list or not.
    assert check_redirect_uri(rt, account, "https://alloy.example.com/connect/result") == (
        "https://alloy.example.com/connect/result")
    with pytest.raises(InvalidRedirectUri):
        check_redirect_uri(rt, account, "https://alloy.example.com/connect/other")


def test_the_provider_sign_in_origin_is_what_connect_forms_may_go_to() -> None:
    fixed = Connector(id="x", name="X", authorization_url="https://auth.example.com/authorize",
                      token_url="https://auth.example.com/token")
    per_user = Connector(id="y", name="Y",
                         authorization_url="https://${shop}.example.com/oauth/authorize",
                         token_url="https://${shop}.example.com/oauth/token")
    assert _provider_source(fixed) == "https://auth.example.com"
    assert _provider_source(per_user) == "https:"


async def test_a_session_is_visible_to_its_user_only(start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        _, alice = await new_user(alloy, "alice")
        _, bob = await new_user(alloy, "bob")
        created = await new_session(alloy, alice)
        path = f"/sdk/sessions/{created['sessionId']}"
        async with sdk(alloy, alice) as client:
            mine = await client.get(path)
        assert mine.status_code == 200 and mine.json()["status"] == "pending"
        _, other_key = alloy.new_account()
        async with httpx2.AsyncClient(base_url=alloy.base_url, headers={
                "Authorization": f"Bearer {other_key}"}) as other_api:
            stranger = (await other_api.get("/users/default/token")).json()["token"]
        for token in (bob, stranger):
            async with sdk(alloy, token) as client:
                assert_error(await client.get(path), 404, "session_not_found")
                assert_error(await client.post(f"{path}/cancel"), 404, "session_not_found")
        async with sdk(alloy, alice) as client:
            cancelled = await client.post(f"{path}/cancel")
            again = await client.post(f"{path}/cancel")
        assert cancelled.json()["status"] == "cancelled" == again.json()["status"]


async def test_an_unfinished_session_expires(
        browser: HttpBrowser, start_alloy: StartAlloy) -> None:
    with start_alloy(flow_ttl=1) as alloy:
        _, token = await new_user(alloy)
        created = await new_session(alloy, token)
        time.sleep(1.2)
        async with sdk(alloy, token) as client:
            state = (await client.get(f"/sdk/sessions/{created['sessionId']}")).json()
        assert state["status"] == "failed" and state["error"]["code"] == "expired"
        page = await browser.goto(created["url"], stop_at=NEVER)
        assert isinstance(page, httpx2.Response)
        assert "Not connected" in page.text and "expired" in page.text


# --- the hosted pages ---------------------------------------------------------------------------

class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def assert_strict_page(response: httpx2.Response) -> None:
    """Security headers, no inline script, every visible input labelled, a language."""
    headers = response.headers
    csp = headers["content-security-policy"]
    for part in ("default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'",
                 "script-src 'self'"):
        assert part in csp, csp
    assert "unsafe" not in csp and "*" not in csp
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    assert "cross-origin-opener-policy" not in headers  # the popup must keep its opener
    parser = _Tags()
    parser.feed(response.text)
    tags = parser.tags
    assert ("html", {"lang": "en"}) in tags
    labels = {a.get("for") for t, a in tags if t == "label"}
    for tag, attrs in tags:
        if tag == "script":
            assert attrs.get("src") or attrs.get("type") == "application/json", attrs
        if tag == "input" and attrs.get("type") != "hidden":
            assert attrs.get("id") in labels, attrs


async def test_hosted_pages_are_strict_and_plain(
        browser: HttpBrowser, start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        _, token = await new_user(alloy)
        connect = await new_session(alloy, token)
        manage = await new_session(alloy, token, kind="manage")
        pages = [
            await browser.client.get(connect["url"]),
            await browser.client.get(manage["url"]),
            await browser.client.get(f"{alloy.base_url}/connect/sandbox?token=nope"),
            await browser.client.get(f"{alloy.base_url}/connect/result?state=nope&code=x"),
            await browser.client.get(f"{alloy.base_url}/connect/connections?token=nope"),
        ]
        assert [p.status_code for p in pages] == [200, 200, 400, 400, 400]
        for page in pages:
            assert page.headers["content-type"].startswith("text/html")
            assert_strict_page(page)
        assert "Continue" in pages[0].text and "Cancel" in pages[0].text
        assert "<code>profile</code>" in pages[0].text  # what it will access
        assert "Traceback" not in "".join(p.text for p in pages)
        form_action = pages[0].headers["content-security-policy"].split("form-action ")[1]
        assert alloy.base_url in form_action.split(";")[0]
        css = await browser.client.get(f"{alloy.base_url}/connect/assets/page.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        missing = await browser.client.get(f"{alloy.base_url}/connect/assets/router.py")
        assert missing.status_code == 404


async def test_a_link_for_one_connector_does_not_open_another(
        browser: HttpBrowser, start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        _, token = await new_user(alloy)
        created = await new_session(alloy, token)
        altered = created["url"].replace("/connect/sandbox?", "/connect/notion?")
        page = await browser.client.get(altered)
        assert page.status_code == 400 and "link was altered" in page.text
        posted = await browser.client.post(f"{alloy.base_url}/connect/notion", data={
            "token": created["url"].split("token=")[1], "action": "continue"})
        assert posted.status_code == 400
        assert alloy.rows("oauth_flows") == 0


def own_sandbox() -> tuple[str, str, str]:
    """A base URL on a free port, an encryption key, and the client secret that the sandbox
    of a server started there with that key accepts."""
    key = new_key("t")
    secret = encryption_box(Settings(encryption_keys=key)).derive("sandbox-client-secret")
    return f"http://127.0.0.1:{free_port()}", key, secret


@contextlib.contextmanager
def tenant_box(start_alloy: StartAlloy, *, inputs: dict[str, Any] | None = None,
               lookup_keep: dict[str, str] | None = None) -> Iterator[tuple[Alloy, str]]:
    """A server whose connector "tenant-box" is its own sandbox with a `${tenant}` in the
    authorization URL; `lookup_keep` adds a connect lookup at the sandbox's /api/me."""
    base, key, secret = own_sandbox()
    entry: dict[str, Any] = {
        "name": "Tenant Box",
        "authorization_url": f"{base}/sandbox/oauth/authorize?tenant=${{tenant}}",
        "token_url": f"{base}/sandbox/oauth/token",
        "scopes": ["profile"],
        "inputs": inputs or {"tenant": {"title": "Workspace", "pattern": "[a-z0-9-]{2,30}",
                                        "example": "acme",
                                        "description": "The name in your URL."}},
    }
    if lookup_keep:
        entry["connect_lookup"] = {"url": f"{base}/sandbox/api/me", "keep": lookup_keep}
    env = {"ALLOY_CONNECTOR_TENANT_BOX_CLIENT_ID": "alloy-sandbox",
           "ALLOY_CONNECTOR_TENANT_BOX_CLIENT_SECRET": secret}
    with start_alloy(providers={"tenant-box": entry}, connector_env=env, public_url=base,
                     encryption_keys=key) as alloy:
        yield alloy, base


async def approve_at_sandbox(browser: HttpBrowser, at_provider: httpx2.URL | httpx2.Response,
                             ) -> None:
    assert isinstance(at_provider, httpx2.URL)
    end = await browser.goto(at_provider, stop_at=NEVER)
    assert isinstance(end, httpx2.Response)
    done = await browser.submit_form(end, fields={"username": "alice", "decision": "allow"},
                                     stop_at=NEVER)
    assert isinstance(done, httpx2.Response) and "Connected" in done.text


async def connection_metadata(alloy: Alloy, user_id: str) -> list[dict[str, Any]]:
    async with alloy.api() as api:
        conns = (await api.get("/connections", params={"userId": user_id})).json()
    return [c["metadata"] for c in conns["connections"]]


async def test_the_connect_page_has_a_field_per_declared_input(
        browser: HttpBrowser, start_alloy: StartAlloy) -> None:
    with tenant_box(start_alloy) as (alloy, base):
        user_id, token = await new_user(alloy)
        created = await new_session(alloy, token, connectorId="tenant-box",
                                    data={"tenant": "Not Valid!"})
        page = await browser.goto(created["url"], stop_at=NEVER)
        assert isinstance(page, httpx2.Response)
        assert_strict_page(page)
        assert '<label for="in-tenant">Workspace</label>' in page.text
        assert 'value="Not Valid!"' in page.text  # prefilled from the SDK's data
        refused = await browser.submit_form(page, fields={"action": "continue"}, stop_at=NEVER)
        assert isinstance(refused, httpx2.Response) and refused.status_code == 400
        assert 'aria-invalid="true"' in refused.text and 'role="alert"' in refused.text
        assert "Workspace should look like acme" in refused.text
        assert alloy.rows("oauth_flows") == 0
        at_provider = await browser.submit_form(
            refused, fields={"action": "continue", "tenant": "acme-corp"},
            stop_at=f"{base}/sandbox/oauth/authorize")
        assert isinstance(at_provider, httpx2.URL)
        assert at_provider.params["tenant"] == "acme-corp"
        await approve_at_sandbox(browser, at_provider)
        assert [m.get("tenant") for m in await connection_metadata(alloy, user_id)] == [
            "acme-corp"]


async def test_the_connect_page_skips_looked_up_inputs_and_refuses_unsafe_url_values(
        browser: HttpBrowser, start_alloy: StartAlloy) -> None:
    # "tenant" goes into a URL (its pattern allows '/', the URL check does not); "region" is
    # filled by the connect lookup after the user approves, so the page does not ask for it.
    inputs = {"tenant": {"title": "Workspace", "pattern": "[a-z0-9/-]{2,30}", "example": "acme"},
              "region": {"title": "Region", "pattern": "[a-z]+", "example": "eu"}}
    with tenant_box(start_alloy, inputs=inputs, lookup_keep={"region": "username"}) as (
            alloy, base):
        user_id, token = await new_user(alloy)
        created = await new_session(alloy, token, connectorId="tenant-box")
        page = await browser.goto(created["url"], stop_at=NEVER)
        assert isinstance(page, httpx2.Response)
        assert 'for="in-tenant"' in page.text and 'for="in-region"' not in page.text
        refused = await browser.submit_form(
            page, fields={"action": "continue", "tenant": "acme/evil"}, stop_at=NEVER)
        assert isinstance(refused, httpx2.Response) and refused.status_code == 400
        assert "Workspace cannot be used: it may only contain" in refused.text
        assert alloy.rows("oauth_flows") == 0
        await approve_at_sandbox(browser, await browser.submit_form(
            refused, fields={"action": "continue", "tenant": "acme"},
            stop_at=f"{base}/sandbox/oauth/authorize"))
        assert [(m.get("tenant"), m.get("region"))
                for m in await connection_metadata(alloy, user_id)] == [("acme", "alice")]


async def test_the_result_page_posts_the_outcome_to_the_opener_origin_only(
        browser: HttpBrowser, start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        user_id, token = await new_user(alloy)
        created = await new_session(alloy, token)
        end = await run_connect_page(browser, created["url"])
        assert end.status_code == 200 and "/connect/result" in str(end.url)
        assert_strict_page(end)
        data = re.search(r'<script type="application/json" id="alloy-data">(.*?)</script>',
                         end.text, re.S)
        assert data is not None
        payload = json.loads(data.group(1))
        assert payload["targetOrigin"] == APP_ORIGIN  # fixed from the SDK's Origin header
        message = payload["message"]
        assert message["type"] == "alloy:connect" and message["status"] == "succeeded"
        assert message["sessionId"] == created["sessionId"]
        async with alloy.api() as api:
            info = await api.get(f"/connections/{message['connectionId']}")
        assert info.json()["userId"] == user_id
        # A reload shows the same outcome and makes nothing new.
        again = await browser.client.get(end.url)
        assert again.status_code == 200 and message["connectionId"] in again.text
        assert alloy.rows("connections") == 1
        # So does the connect page's link, once the attempt is over.
        revisit = await browser.client.get(created["url"])
        assert "Connected" in revisit.text and "Continue" not in revisit.text


async def test_redirect_mode_goes_back_to_the_app_page(
        browser: HttpBrowser, start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        _, token = await new_user(alloy)
        back = f"{APP_ORIGIN}/settings?tab=accounts"
        created = await new_session(alloy, token, mode="redirect", returnUrl=back)
        end = await run_connect_page(browser, created["url"], decision="deny")
        assert end.status_code == 200 and end.headers["referrer-policy"] == "no-referrer"
        target = f"{back}#alloy_session={created['sessionId']}"
        assert f'href="{target}"' in end.text.replace("&amp;", "&")
        async with sdk(alloy, token) as client:
            state = (await client.get(f"/sdk/sessions/{created['sessionId']}")).json()
        assert state["status"] == "failed" and state["error"]["code"] == "access_denied"


async def test_cancelling_while_at_the_provider_keeps_no_connection(
        browser: HttpBrowser, start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        _, token = await new_user(alloy)
        created = await new_session(alloy, token)
        page = await browser.goto(created["url"], stop_at=NEVER)
        assert isinstance(page, httpx2.Response)
        consent = await browser.submit_form(page, fields={"action": "continue"}, stop_at=NEVER)
        assert isinstance(consent, httpx2.Response)
        async with sdk(alloy, token) as client:
            state = (await client.get(f"/sdk/sessions/{created['sessionId']}")).json()
            assert state["status"] == "launched" and state["launchedSecondsAgo"] >= 0
            cancelled = await client.post(f"/sdk/sessions/{created['sessionId']}/cancel")
        assert cancelled.json()["status"] == "cancelled"
        end = await browser.submit_form(consent, fields={"username": "alice",
                                                         "decision": "allow"}, stop_at=NEVER)
        assert isinstance(end, httpx2.Response) and "Cancelled" in end.text
        assert alloy.rows("connections") == 0
        assert alloy.rows("oauth_flows", "code_used_at IS NOT NULL") == 1  # exchanged, dropped


async def test_the_connections_page_shows_and_touches_only_the_users_own(
        browser: HttpBrowser, start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        _, alice = await new_user(alloy, "alice")
        _, bob = await new_user(alloy, "bob")
        ids = {}
        for name, token in (("alice", alice), ("bob", bob)):
            end = await run_connect_page(browser, (await new_session(alloy, token))["url"])
            ids[name] = re.search(r'"connectionId": "(conn_[0-9a-f]+)"', end.text).group(1)  # type: ignore[union-attr]
        manage = await new_session(alloy, alice, kind="manage")
        page = await browser.client.get(manage["url"])
        assert ids["alice"] in page.text and ids["bob"] not in page.text
        token = manage["url"].split("token=")[1]
        foreign = await browser.client.post(f"{alloy.base_url}/connect/connections", data={
            "token": token, "connectionId": ids["bob"], "action": "disconnect"})
        assert foreign.status_code == 404
        assert alloy.rows("connections") == 2
        mine = await browser.client.post(f"{alloy.base_url}/connect/connections", data={
            "token": token, "connectionId": ids["alice"], "action": "disconnect"})
        assert mine.status_code == 303
        shown = await browser.client.get(mine.headers["location"])
        assert "Disconnected Sandbox" in shown.text and "No accounts are connected" in shown.text
        assert alloy.rows("connections") == 1


# --- the script ---------------------------------------------------------------------------------

async def test_the_sdk_is_served_as_a_classic_script_and_as_a_module(
        start_alloy: StartAlloy, tmp_path: Path) -> None:
    with start_alloy() as alloy:
        async with httpx2.AsyncClient(base_url=alloy.base_url) as client:
            classic = await client.get("/sdk/alloy.js")
            module = await client.get("/sdk/alloy.mjs")
            cached = await client.get("/sdk/alloy.js",
                                      headers={"If-None-Match": classic.headers["etag"]})
        for answer in (classic, module):
            assert answer.status_code == 200
            assert answer.headers["content-type"] == "text/javascript; charset=utf-8"
            assert answer.headers["access-control-allow-origin"] == "*"
            assert f'const SERVER = "{alloy.base_url}";' in answer.text
        assert cached.status_code == 304
        assert "export" not in classic.text.split("*/", 1)[1]
        assert "export default alloy;" in module.text
        assert "@typedef {Object} ConnectOptions" in classic.text  # JSDoc types
        node = shutil.which("node")
        assert node is not None, "node is needed (scripts/setup.sh test)"
        (tmp_path / "alloy.js").write_text(classic.text)
        (tmp_path / "alloy.mjs").write_text(module.text)
        for name in ("alloy.js", "alloy.mjs"):
            check = subprocess.run([node, "--check", str(tmp_path / name)],
                                   capture_output=True, text=True, timeout=30)
            assert check.returncode == 0, check.stderr


async def test_a_session_can_use_the_accounts_own_oauth_app(
        browser: HttpBrowser, start_alloy: StartAlloy) -> None:
    base, key, secret = own_sandbox()
    providers = {"own-box": {"name": "Own Box",
                             "authorization_url": f"{base}/sandbox/oauth/authorize",
                             "token_url": f"{base}/sandbox/oauth/token"}}
    with start_alloy(providers=providers, public_url=base, encryption_keys=key) as alloy:
        _, token = await new_user(alloy)
        async with sdk(alloy, token) as client:
            unconfigured = await client.post("/sdk/sessions", json={"connectorId": "own-box"})
            unknown = await client.post("/sdk/sessions", json={
                "connectorId": "own-box", "authConfigId": "ac_nope"})
        assert_error(unconfigured, 400, "connector_not_configured")
        assert_error(unknown, 404, "auth_config_not_found")
        async with alloy.api() as api:
            made = await api.post("/auth-configs", json={
                "connectorId": "own-box", "clientId": "alloy-sandbox", "clientSecret": secret,
                "scopes": ["email"]})
        assert made.status_code == 200, made.text
        config_id = made.json()["authConfigId"]
        created = await new_session(alloy, token, connectorId="own-box", authConfigId=config_id)
        page = await browser.client.get(created["url"])
        assert "<code>email</code>" in page.text  # the auth config's scopes
        end = await run_connect_page(browser, created["url"])
        assert "Connected" in end.text
        async with sdk(alloy, token) as client:
            state = (await client.get(f"/sdk/sessions/{created['sessionId']}")).json()
        async with alloy.api() as api:
            info = (await api.get(f"/connections/{state['connectionId']}")).json()
        assert info["metadata"]["authConfigId"] == config_id

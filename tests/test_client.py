"""Unit tests of the Python client against httpx2.MockTransport: what it sends, how it reads
answers and errors, and when it retries."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx2
import pytest

from alloy_oauth.client import (
    AccessToken,
    AlloyError,
    AlloyOAuthFlow,
    AsyncAlloyOAuthFlow,
    AuthenticationError,
    Connection,
    ConnectionNotFound,
    DeletedConnection,
    InvalidAuthorizationCode,
    InvalidRedirectUri,
    NeedsReauth,
    NotFound,
    OAuthStart,
    RateLimited,
    _core,
)

API_KEY = "sk_test_do_not_leak_0123456789"
BASE = "http://alloy.test"

Handler = Callable[[httpx2.Request], httpx2.Response]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ALLOY_API_KEY", "ALLOY_BASE_URL", "ALLOY_API_VERSION"):
        monkeypatch.delenv(name, raising=False)


class Recorder:
    """A fake server: answers from a queue (the last answer repeats) and keeps the requests."""

    def __init__(self, *answers: httpx2.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def last(self) -> httpx2.Request:
        return self.requests[-1]

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def ok(body: Any, status: int = 200, **headers: str) -> httpx2.Response:
    return httpx2.Response(status, json=body, headers=headers)


def err(status: int, code: str, message: str, **headers: str) -> httpx2.Response:
    return httpx2.Response(status, json={"error": code, "message": message}, headers=headers)


START = {"oauthUrl": "http://alloy.test/authorize?token=tok", "credentialId": "cred_1"}


def make_flow(recorder: Recorder, **kwargs: Any) -> tuple[AlloyOAuthFlow, list[float]]:
    sleeps: list[float] = []
    kwargs.setdefault("api_key", API_KEY)
    kwargs.setdefault("base_url", BASE)
    flow = AlloyOAuthFlow(transport=httpx2.MockTransport(recorder), **kwargs)
    flow._sleep = sleeps.append
    return flow, sleeps


def make_async_flow(recorder: Recorder, **kwargs: Any) -> tuple[AsyncAlloyOAuthFlow, list[float]]:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    kwargs.setdefault("api_key", API_KEY)
    kwargs.setdefault("base_url", BASE)
    flow = AsyncAlloyOAuthFlow(transport=httpx2.MockTransport(recorder), **kwargs)
    flow._sleep = fake_sleep
    return flow, sleeps


# --------------------------------------------------------------------------- settings


def test_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOY_API_KEY", API_KEY)
    monkeypatch.setenv("ALLOY_BASE_URL", "http://env-host.test:9000/")
    monkeypatch.setenv("ALLOY_API_VERSION", "2024-02")
    recorder = Recorder(ok({"connectors": []}))
    flow = AlloyOAuthFlow(transport=httpx2.MockTransport(recorder))
    flow.list_connectors()
    assert str(recorder.last.url) == "http://env-host.test:9000/connectors"
    assert recorder.last.headers["authorization"] == f"Bearer {API_KEY}"
    assert recorder.last.headers["x-api-version"] == "2024-02"


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOY_API_KEY", "sk_from_env")
    monkeypatch.setenv("ALLOY_BASE_URL", "http://env-host.test")
    recorder = Recorder(ok({"connectors": []}))
    flow, _ = make_flow(recorder, api_version="2023-12")
    flow.list_connectors()
    assert recorder.last.url.host == "alloy.test"
    assert recorder.last.headers["authorization"] == f"Bearer {API_KEY}"
    assert recorder.last.headers["x-api-version"] == "2023-12"


def test_defaults_are_localhost_8000_and_version_2025_09() -> None:
    recorder = Recorder(ok({"connectors": []}))
    flow = AlloyOAuthFlow(api_key=API_KEY, transport=httpx2.MockTransport(recorder))
    flow.list_connectors()
    assert str(recorder.last.url) == "http://localhost:8000/connectors"
    assert recorder.last.headers["x-api-version"] == "2025-09"


@pytest.mark.parametrize("cls", [AlloyOAuthFlow, AsyncAlloyOAuthFlow])
def test_missing_api_key_fails_at_construction_saying_what_to_set(cls: type[Any]) -> None:
    with pytest.raises(AuthenticationError) as info:
        cls()
    assert "ALLOY_API_KEY" in str(info.value)
    assert "api_key=" in str(info.value)


def test_repr_of_flow_and_errors_never_shows_the_api_key() -> None:
    recorder = Recorder(err(500, "internal_error", "Something broke."))
    flow, _ = make_flow(recorder)
    with pytest.raises(AlloyError) as info:
        flow.list_connectors()
    assert "alloy.test" in repr(flow)
    for text in (repr(flow), str(flow), repr(info.value), str(info.value)):
        assert API_KEY not in text


def test_access_token_repr_hides_the_token() -> None:
    recorder = Recorder(
        ok({"accessToken": "at_super_secret", "tokenType": "Bearer", "expiresAt": None})
    )
    flow, _ = make_flow(recorder)
    token = flow.get_access_token("conn_1")
    assert token.access_token == "at_super_secret"
    assert "at_super_secret" not in repr(token)
    assert "at_super_secret" not in str(token)


def test_oauth_start_repr_hides_the_single_use_url_token() -> None:
    start = OAuthStart("http://a.test/authorize?userId=u&token=abc123&x=1", "cred_1", "st")
    assert "abc123" not in repr(start)
    assert "userId=u" in repr(start)


# --------------------------------------------------------------------------- the flow


def test_initiate_posts_the_guides_body_with_bearer_and_version_headers() -> None:
    recorder = Recorder(ok({**START, "state": "server-state"}))
    flow, _ = make_flow(recorder)
    start = flow.initiate_oauth_flow("notion", "http://localhost:3000/oauth/callback")
    request = recorder.last
    assert request.method == "POST"
    assert str(request.url) == "http://alloy.test/connectors/notion/credentials"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["x-api-version"] == "2025-09"
    assert request.headers["content-type"] == "application/json"
    body = recorder.body()
    assert body["connectorId"] == "notion"
    assert body["credentialType"] == "oauth2"
    assert body["redirectUri"] == "http://localhost:3000/oauth/callback"
    assert set(body) == {"connectorId", "credentialType", "redirectUri", "state"}
    assert start == OAuthStart(START["oauthUrl"], "cred_1", "server-state")


def test_initiate_without_state_sends_a_fresh_random_state() -> None:
    recorder = Recorder(ok(START))
    flow, _ = make_flow(recorder)
    first = flow.initiate_oauth_flow("notion", "http://localhost:3000/cb")
    second = flow.initiate_oauth_flow("notion", "http://localhost:3000/cb")
    sent = [recorder.body(0)["state"], recorder.body(1)["state"]]
    assert sent[0] != sent[1]
    assert all(len(s) >= 43 for s in sent)  # token_urlsafe(32)
    # A server that does not echo the state: the client returns the one it sent.
    assert [first.state, second.state] == sent


def test_initiate_sends_given_state_user_scopes_data_and_auth_config() -> None:
    recorder = Recorder(ok({**START, "state": "app-state"}))
    flow, _ = make_flow(recorder)
    flow.initiate_oauth_flow(
        "shop",
        "https://app.test/cb",
        user_id="user_7",
        state="app-state",
        scopes=["read", "write"],
        data={"subdomain": "acme"},
        auth_config_id="ac_1",
    )
    assert recorder.body() == {
        "connectorId": "shop",
        "credentialType": "oauth2",
        "redirectUri": "https://app.test/cb",
        "state": "app-state",
        "userId": "user_7",
        "scopes": ["read", "write"],
        "data": {"subdomain": "acme"},
        "authConfigId": "ac_1",
    }


def test_scopes_given_as_one_string_are_split() -> None:
    recorder = Recorder(ok(START))
    flow, _ = make_flow(recorder)
    flow.initiate_oauth_flow("x", "https://app.test/cb", scopes="read write,admin")
    assert recorder.body()["scopes"] == ["read", "write", "admin"]


def test_path_segments_are_url_encoded() -> None:
    recorder = Recorder(ok(START))
    flow, _ = make_flow(recorder)
    flow.initiate_oauth_flow("a/b?c", "https://app.test/cb")
    assert recorder.last.url.raw_path == b"/connectors/a%2Fb%3Fc/credentials"


def test_base_url_path_prefix_is_kept() -> None:
    recorder = Recorder(ok({"connectors": []}))
    flow, _ = make_flow(recorder, base_url="http://proxy.test/alloy/")
    flow.list_connectors()
    assert str(recorder.last.url) == "http://proxy.test/alloy/connectors"


def test_callback_exchange_posts_code_and_state_and_returns_the_connection() -> None:
    answer = {"connectionId": "conn_9", "credentialId": "cred_9", "status": "connected"}
    recorder = Recorder(ok(answer))
    flow, _ = make_flow(recorder)
    connection = flow.handle_oauth_callback("notion", "code_1", "st_1")
    assert recorder.last.method == "POST"
    assert recorder.last.url.path == "/connectors/notion/credentials/callback"
    assert recorder.body() == {"code": "code_1", "state": "st_1"}
    assert connection == Connection("conn_9", "cred_9", "connected")


def test_callback_exchange_without_state_sends_only_the_code() -> None:
    answer = {"connectionId": "conn_9", "credentialId": "cred_9", "status": "connected"}
    recorder = Recorder(ok(answer))
    flow, _ = make_flow(recorder)
    flow.handle_oauth_callback("notion", "code_1")
    assert recorder.body() == {"code": "code_1"}


def test_create_credential_sends_type_data_and_user() -> None:
    answer = {"connectionId": "conn_2", "credentialId": "cred_2", "status": "connected"}
    recorder = Recorder(ok(answer))
    flow, _ = make_flow(recorder)
    connection = flow.create_credential("stripe", "apiKey", {"apiKey": "k"}, user_id="u1")
    assert recorder.last.url.path == "/connectors/stripe/credentials"
    assert recorder.body() == {
        "connectorId": "stripe",
        "credentialType": "apiKey",
        "data": {"apiKey": "k"},
        "userId": "u1",
    }
    assert connection.connection_id == "conn_2"


def test_get_access_token_parses_expiry_and_asks_for_forced_refresh() -> None:
    recorder = Recorder(
        ok({"accessToken": "at", "tokenType": "Bearer", "expiresAt": "2030-01-02T03:04:05Z"})
    )
    flow, _ = make_flow(recorder)
    token = flow.get_access_token("conn_1", force_refresh=True)
    assert recorder.last.method == "GET"
    assert recorder.last.url.path == "/connections/conn_1/token"
    assert recorder.last.url.params["forceRefresh"] == "true"
    assert token == AccessToken("at", "Bearer", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
    flow.get_access_token("conn_1")
    assert "forceRefresh" not in recorder.last.url.params


@pytest.mark.parametrize(
    ("call", "answer", "method", "path", "params", "expected"),
    [
        (
            lambda f: f.get_connection("conn_1"),
            {"connectionId": "conn_1", "status": "connected"},
            "GET",
            "/connections/conn_1",
            {},
            {"connectionId": "conn_1", "status": "connected"},
        ),
        (
            lambda f: f.list_connections(user_id="u1", connector_id="notion"),
            {"connections": [{"connectionId": "conn_1"}]},
            "GET",
            "/connections",
            {"userId": "u1", "connectorId": "notion"},
            [{"connectionId": "conn_1"}],
        ),
        (
            lambda f: f.list_connections(),
            {"connections": []},
            "GET",
            "/connections",
            {},
            [],
        ),
        (
            lambda f: f.delete_connection("conn_1"),
            {"success": True},
            "DELETE",
            "/connections/conn_1",
            {},
            DeletedConnection(revoked=None, revocation_error=None),
        ),
        (
            lambda f: f.list_connectors(),
            {"connectors": [{"id": "notion"}]},
            "GET",
            "/connectors",
            {},
            [{"id": "notion"}],
        ),
        (
            lambda f: f.get_connector("notion"),
            {"connector": {"id": "notion"}},
            "GET",
            "/connectors/notion",
            {},
            {"id": "notion"},
        ),
        (
            lambda f: f.get_user_token("user_1"),
            {"token": "jwt.value"},
            "GET",
            "/users/user_1/token",
            {},
            "jwt.value",
        ),
    ],
)
def test_endpoints_use_the_contract_paths_and_shapes(
    call: Callable[[AlloyOAuthFlow], Any],
    answer: Any,
    method: str,
    path: str,
    params: dict[str, str],
    expected: Any,
) -> None:
    recorder = Recorder(ok(answer))
    flow, _ = make_flow(recorder)
    assert call(flow) == expected
    assert recorder.last.method == method
    assert recorder.last.url.path == path
    assert dict(recorder.last.url.params) == params


def test_create_user_posts_username_and_full_name_and_returns_the_id() -> None:
    recorder = Recorder(ok({"userId": "user_5"}))
    flow, _ = make_flow(recorder)
    assert flow.create_user("ada", "Ada Lovelace") == "user_5"
    assert recorder.last.url.path == "/users"
    assert recorder.body() == {"username": "ada", "fullName": "Ada Lovelace"}


def test_an_answer_missing_a_field_is_an_invalid_response_error() -> None:
    recorder = Recorder(ok({"credentialId": "cred_1"}))
    flow, _ = make_flow(recorder)
    with pytest.raises(AlloyError) as info:
        flow.initiate_oauth_flow("notion", "https://app.test/cb")
    assert info.value.code == "invalid_response"
    assert "oauthUrl" in info.value.message


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("answer", "call", "error_class", "code"),
    [
        (
            err(401, "unauthorized", "Invalid API key."),
            lambda f: f.list_connectors(),
            AuthenticationError,
            "unauthorized",
        ),
        (
            err(400, "invalid_redirect_uri", "Invalid redirect_uri: not allowed."),
            lambda f: f.initiate_oauth_flow("notion", "http://evil.test/cb"),
            InvalidRedirectUri,
            "invalid_redirect_uri",
        ),
        (
            err(400, "invalid_grant", "Invalid authorization code"),
            lambda f: f.handle_oauth_callback("notion", "used"),
            InvalidAuthorizationCode,
            "invalid_grant",
        ),
        (
            err(404, "not_found", "Connection not found: check the ID."),
            lambda f: f.get_access_token("conn_gone"),
            ConnectionNotFound,
            "not_found",
        ),
        (
            err(404, "not_found", "Connector not found."),
            lambda f: f.get_connector("nope"),
            NotFound,
            "not_found",
        ),
        (
            err(409, "needs_reauth", "The user must connect again."),
            lambda f: f.get_access_token("conn_1"),
            NeedsReauth,
            "needs_reauth",
        ),
        (
            err(400, "unsupported_api_version", "Use 2025-09."),
            lambda f: f.list_connectors(),
            AlloyError,
            "unsupported_api_version",
        ),
    ],
)
def test_server_errors_become_the_matching_exception(
    answer: httpx2.Response,
    call: Callable[[AlloyOAuthFlow], Any],
    error_class: type[AlloyError],
    code: str,
) -> None:
    body = json.loads(answer.content)
    flow, _ = make_flow(Recorder(answer))
    with pytest.raises(AlloyError) as info:
        call(flow)
    assert type(info.value) is error_class
    assert info.value.status == answer.status_code
    assert info.value.code == code
    assert info.value.message == body["message"]
    assert str(info.value) == f"{code}: {body['message']}"


def test_not_found_on_a_connector_path_is_not_connection_not_found() -> None:
    flow, _ = make_flow(Recorder(err(404, "not_found", "Connector not found.")))
    with pytest.raises(NotFound) as info:
        flow.list_connectors()
    assert not isinstance(info.value, ConnectionNotFound)


def test_rate_limited_carries_retry_after() -> None:
    flow, _ = make_flow(Recorder(err(429, "rate_limited", "Slow down.", **{"Retry-After": "7"})))
    with pytest.raises(RateLimited) as info:
        flow.handle_oauth_callback("notion", "c")
    assert info.value.retry_after == 7.0


def test_a_non_json_error_body_gives_a_clear_error() -> None:
    flow, _ = make_flow(Recorder(httpx2.Response(502, text="<html>Bad Gateway</html>")))
    with pytest.raises(AlloyError) as info:
        flow.handle_oauth_callback("notion", "c")
    assert info.value.status == 502
    assert info.value.code == "http_502"
    assert "502" in info.value.message
    assert "<html>" not in info.value.message


def test_a_framework_detail_body_keeps_its_message() -> None:
    flow, _ = make_flow(Recorder(httpx2.Response(405, json={"detail": "Method Not Allowed"})))
    with pytest.raises(AlloyError) as info:
        flow.list_connectors()
    assert (info.value.code, info.value.message) == ("http_405", "Method Not Allowed")


def test_network_failure_is_a_connection_error_naming_the_base_url() -> None:
    recorder = Recorder(httpx2.ConnectError("refused"))
    flow, sleeps = make_flow(recorder)
    with pytest.raises(AlloyError) as info:
        flow.initiate_oauth_flow("notion", "https://app.test/cb")
    assert info.value.code == "connection_error"
    assert info.value.status is None
    assert BASE in info.value.message
    assert len(recorder.requests) == 1  # a POST is not repeated
    assert sleeps == []


# --------------------------------------------------------------------------- retries


def test_429_is_retried_for_a_post_honouring_retry_after_seconds() -> None:
    recorder = Recorder(
        err(429, "rate_limited", "Slow down.", **{"Retry-After": "2"}),
        err(429, "rate_limited", "Slow down.", **{"Retry-After": "0.5"}),
        ok(START),
    )
    flow, sleeps = make_flow(recorder)
    start = flow.initiate_oauth_flow("notion", "https://app.test/cb")
    assert start.credential_id == "cred_1"
    assert sleeps == [2.0, 0.5]
    assert len(recorder.requests) == 3
    # The retries send the same state, so the app's stored state stays valid.
    assert len({recorder.body(i)["state"] for i in range(3)}) == 1


def test_retry_after_as_http_date_is_honoured() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    recorder = Recorder(err(429, "rate_limited", "Slow.", **{"Retry-After": when}), ok(START))
    flow, sleeps = make_flow(recorder)
    flow.initiate_oauth_flow("notion", "https://app.test/cb")
    assert len(sleeps) == 1
    assert 27 <= sleeps[0] <= 30


def test_a_retry_after_too_long_to_wait_is_left_to_the_caller() -> None:
    recorder = Recorder(err(429, "rate_limited", "Slow.", **{"Retry-After": "3600"}), ok(START))
    flow, sleeps = make_flow(recorder)
    with pytest.raises(RateLimited) as info:
        flow.initiate_oauth_flow("notion", "https://app.test/cb")
    assert info.value.retry_after == 3600.0
    assert sleeps == []
    assert len(recorder.requests) == 1


def test_retries_stop_after_max_retries() -> None:
    recorder = Recorder(err(429, "rate_limited", "Slow down."))
    flow, sleeps = make_flow(recorder, max_retries=2)
    with pytest.raises(RateLimited):
        flow.list_connectors()
    assert len(recorder.requests) == 3
    assert len(sleeps) == 2


def test_max_retries_zero_never_retries() -> None:
    recorder = Recorder(err(503, "unavailable", "Try later."), ok({"connectors": []}))
    flow, sleeps = make_flow(recorder, max_retries=0)
    with pytest.raises(AlloyError) as info:
        flow.list_connectors()
    assert info.value.status == 503
    assert (len(recorder.requests), sleeps) == (1, [])


def test_a_post_is_not_retried_after_503() -> None:
    recorder = Recorder(err(503, "unavailable", "Try later."), ok(START))
    flow, sleeps = make_flow(recorder)
    with pytest.raises(AlloyError) as info:
        flow.handle_oauth_callback("notion", "code")
    assert info.value.status == 503
    assert len(recorder.requests) == 1
    assert sleeps == []


def test_a_get_is_retried_after_503_with_growing_capped_backoff() -> None:
    recorder = Recorder(
        err(503, "unavailable", "Try later."),
        err(503, "unavailable", "Try later."),
        err(503, "unavailable", "Try later."),
        ok({"connectionId": "conn_1"}),
    )
    flow, sleeps = make_flow(recorder)
    assert flow.get_connection("conn_1") == {"connectionId": "conn_1"}
    assert len(recorder.requests) == 4
    # Jittered within [half, full] of 0.5 * 2**attempt.
    for attempt, slept in enumerate(sleeps):
        ceiling = _core.BACKOFF_BASE * 2**attempt
        assert ceiling / 2 <= slept <= ceiling


def test_a_delete_is_retried_after_a_failed_connect() -> None:
    recorder = Recorder(httpx2.ConnectError("refused"), ok({"success": True}))
    flow, sleeps = make_flow(recorder)
    flow.delete_connection("conn_1")
    assert [r.method for r in recorder.requests] == ["DELETE", "DELETE"]
    assert len(sleeps) == 1


def test_a_read_timeout_is_not_retried_and_says_so() -> None:
    recorder = Recorder(httpx2.ReadTimeout("slow"), ok({"connectors": []}))
    flow, sleeps = make_flow(recorder)
    with pytest.raises(AlloyError) as info:
        flow.list_connectors()
    assert info.value.code == "connection_error"
    assert "did not answer in time" in info.value.message
    assert (len(recorder.requests), sleeps) == (1, [])


def test_backoff_never_exceeds_the_cap() -> None:
    assert all(
        _core.BACKOFF_CAP / 2 <= _core.backoff(n) <= _core.BACKOFF_CAP for n in range(5, 200)
    )


# --------------------------------------------------------------------------- lifecycle


class ClosingTransport(httpx2.MockTransport):
    def __init__(self, handler: Handler) -> None:
        super().__init__(handler)
        self.closed = False

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def test_the_sync_flow_closes_its_connections_as_a_context_manager() -> None:
    transport = ClosingTransport(Recorder(ok({"connectors": []})))
    with AlloyOAuthFlow(api_key=API_KEY, transport=transport) as flow:
        flow.list_connectors()
        assert not transport.closed
    assert transport.closed


async def test_the_async_flow_closes_its_connections_as_an_async_context_manager() -> None:
    transport = ClosingTransport(Recorder(ok({"connectors": []})))
    async with AsyncAlloyOAuthFlow(api_key=API_KEY, transport=transport) as flow:
        await flow.list_connectors()
        assert not transport.closed
    assert transport.closed


# --------------------------------------------------------------------------- async twin


async def test_async_initiate_and_exchange_send_the_same_requests() -> None:
    answer = {"connectionId": "conn_9", "credentialId": "cred_9", "status": "connected"}
    recorder = Recorder(ok(START), ok(answer))
    flow, _ = make_async_flow(recorder)
    async with flow:
        start = await flow.initiate_oauth_flow("notion", "http://localhost:3000/cb", user_id="u")
        connection = await flow.handle_oauth_callback("notion", "code_1", start.state)
    first, second = recorder.requests
    assert first.headers["authorization"] == f"Bearer {API_KEY}"
    assert first.headers["x-api-version"] == "2025-09"
    assert json.loads(first.content)["userId"] == "u"
    assert json.loads(second.content) == {"code": "code_1", "state": start.state}
    assert start.state == json.loads(first.content)["state"]
    assert connection == Connection("conn_9", "cred_9", "connected")


async def test_async_errors_map_like_sync_ones() -> None:
    flow, _ = make_async_flow(Recorder(err(404, "not_found", "Connection not found.")))
    async with flow:
        with pytest.raises(ConnectionNotFound):
            await flow.get_connection("conn_x")


async def test_async_retries_429_with_retry_after_and_not_post_503() -> None:
    recorder = Recorder(err(429, "rate_limited", "Slow.", **{"Retry-After": "1"}), ok(START))
    flow, sleeps = make_async_flow(recorder)
    await flow.initiate_oauth_flow("notion", "https://app.test/cb")
    assert sleeps == [1.0]

    recorder = Recorder(err(503, "unavailable", "Later."), ok(START))
    flow, sleeps = make_async_flow(recorder)
    with pytest.raises(AlloyError):
        await flow.handle_oauth_callback("notion", "c")
    assert (len(recorder.requests), sleeps) == (1, [])

    recorder = Recorder(err(503, "unavailable", "Later."), ok({"token": "jwt"}))
    flow, sleeps = make_async_flow(recorder)
    assert await flow.get_user_token("u") == "jwt"
    assert len(sleeps) == 1
    await flow.aclose()


async def test_async_network_failure_names_the_base_url() -> None:
    flow, _ = make_async_flow(Recorder(httpx2.ConnectError("refused")), max_retries=1)
    with pytest.raises(AlloyError) as info:
        await flow.list_connectors()
    assert info.value.code == "connection_error"
    assert BASE in info.value.message


def test_async_flow_repr_hides_the_key() -> None:
    flow = AsyncAlloyOAuthFlow(api_key=API_KEY, transport=httpx2.MockTransport(Recorder(ok({}))))
    assert API_KEY not in repr(flow)
    assert "AsyncAlloyOAuthFlow" in repr(flow)

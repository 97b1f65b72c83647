"""Each quirk field bends the OAuth requests and answers the way it says, for any connector.

These drive `alloy_oauth.oauth` directly with an in-process transport that plays the provider,
so each bend is pinned on its own; the emulator tests run the same code over real HTTP.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx2
import pytest

from alloy_oauth import oauth
from alloy_oauth.oauth.apply import api_request_auth
from alloy_oauth.providers import Connector

CREDS = oauth.ClientCredentials("client-1", "secret-1")
Answer = Callable[[httpx2.Request], httpx2.Response]


def connector(**fields: Any) -> Connector:
    base: dict[str, Any] = {"id": "acme", "name": "Acme",
                            "authorization_url": "https://acme.example/oauth/authorize",
                            "token_url": "https://acme.example/oauth/token",
                            "revocation_url": "https://acme.example/oauth/revoke"}
    return Connector(**{**base, **fields})


class Provider:
    """Records requests and answers them with `answer`."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[httpx2.Request] = []
        self.transport = httpx2.MockTransport(self._handle)

    def _handle(self, request: httpx2.Request) -> httpx2.Response:
        request.read()
        self.requests.append(request)
        return self.answer(request)

    @property
    def body(self) -> dict[str, str]:
        req = self.requests[-1]
        if req.headers.get("content-type", "").startswith("application/json"):
            loaded: dict[str, str] = json.loads(req.content)
            return loaded
        return dict(parse_qsl(req.content.decode()))


def ok(body: dict[str, Any], status: int = 200) -> Answer:
    return lambda request: httpx2.Response(status, json=body)


async def exchange(c: Connector, provider: Provider, **kw: Any) -> oauth.TokenSet:
    return await oauth.exchange_code(c, CREDS, code="the-code", redirect_uri="https://me/cb",
                                     code_verifier="v" * 64, scopes=["read"],
                                     data=kw.pop("data", {}), transport=provider.transport, **kw)


async def test_json_token_request_with_client_secret_in_the_body() -> None:
    provider = Provider(ok({"access_token": "at", "token_type": "bearer"}))
    c = connector(token_request_format="json", token_auth_method="client_secret_post",
                  token_headers={"Acme-Version": "2"}, token_params={"audience": "${tenant}"},
                  inputs={"tenant": {"title": "Tenant", "example": "x"}})
    await exchange(c, provider, data={"tenant": "blue"})
    req = provider.requests[-1]
    assert req.headers["content-type"] == "application/json"
    assert req.headers["acme-version"] == "2" and "authorization" not in req.headers
    assert provider.body == {"grant_type": "authorization_code", "code": "the-code",
                             "redirect_uri": "https://me/cb", "code_verifier": "v" * 64,
                             "audience": "blue", "client_id": "client-1",
                             "client_secret": "secret-1"}


async def test_basic_client_auth_and_no_pkce_verifier_when_pkce_is_off() -> None:
    provider = Provider(ok({"access_token": "at"}))
    await exchange(connector(pkce=False), provider)
    req = provider.requests[-1]
    expected = "Basic " + base64.b64encode(b"client-1:secret-1").decode()
    assert req.headers["authorization"] == expected
    assert "code_verifier" not in provider.body and "client_secret" not in provider.body


async def test_form_encoded_answer_is_parsed_and_json_not_asked_for() -> None:
    provider = Provider(lambda r: httpx2.Response(
        200, text="access_token=gho_1&scope=repo%2Cgist&token_type=bearer",
        headers={"content-type": "application/x-www-form-urlencoded"}))
    tokens = await exchange(connector(token_response_format="form"), provider)
    assert "application/json" not in provider.requests[-1].headers.get("accept", "")
    assert tokens.access_token == "gho_1" and tokens.scopes == ("repo", "gist")
    assert tokens.expires_at is None and tokens.token_type == "Bearer"


async def test_error_in_a_form_encoded_http_200_answer_is_an_error() -> None:
    provider = Provider(lambda r: httpx2.Response(
        200, text="error=bad_verification_code&error_description=The+code+is+wrong",
        headers={"content-type": "application/x-www-form-urlencoded"}))
    c = connector(token_response_format="form",
                  error_codes={"bad_verification_code": "invalid_grant"})
    with pytest.raises(oauth.ProviderError) as caught:
        await exchange(c, provider)
    assert caught.value.code == "invalid_grant" and caught.value.permanent
    assert caught.value.description == "The code is wrong"


async def test_token_nested_at_token_path_is_used_and_top_level_otherwise() -> None:
    nested = {"ok": True, "access_token": "xoxb-bot", "token_type": "bot",
              "authed_user": {"id": "U1", "access_token": "xoxp-user", "token_type": "user",
                              "scope": "a,b"},
              "team": {"id": "T1", "name": "Team"}}
    c = connector(token_path="authed_user", success_flag="ok",
                  keep_from_token=("team.id", "authed_user.id"))
    tokens = await exchange(c, Provider(ok(nested)))
    assert tokens.access_token == "xoxp-user" and tokens.token_type == "Bearer"
    assert tokens.refresh_token is None  # the bot's fields are not mixed in
    assert tokens.scopes == ("a", "b")
    assert tokens.extra == {"team_id": "T1", "authed_user_id": "U1"}
    top = await exchange(c, Provider(ok({"ok": True, "access_token": "xoxe-top",
                                         "token_type": "user"})))
    assert top.access_token == "xoxe-top"


@pytest.mark.parametrize("body,code,permanent", [
    ({"ok": False, "error": "invalid_code"}, "invalid_grant", True),
    ({"ok": False}, "provider_error", False),
    ({"ok": False, "error": "ratelimited"}, "ratelimited", False),
])
async def test_success_flag_false_with_http_200_is_an_error(body: dict[str, Any], code: str,
                                                            permanent: bool) -> None:
    c = connector(success_flag="ok", error_codes={"invalid_code": "invalid_grant"})
    with pytest.raises(oauth.ProviderError) as caught:
        await exchange(c, Provider(ok(body)))
    assert caught.value.code == code and caught.value.permanent is permanent


async def test_error_named_in_another_field_is_recognised_only_on_failure() -> None:
    c = connector(error_field="status", error_description_field="message",
                  error_codes={"BAD_REFRESH_TOKEN": "invalid_grant"})
    failure = Provider(ok({"status": "BAD_REFRESH_TOKEN", "message": "missing or invalid",
                           "correlationId": "x"}, status=400))
    with pytest.raises(oauth.ProviderError) as caught:
        await oauth.refresh(c, CREDS, refresh_token="rt", scopes=[], data={},
                            transport=failure.transport)
    assert caught.value.code == "invalid_grant" and caught.value.description == "missing or invalid"
    # the same field in a successful answer means nothing
    fine = await exchange(c, Provider(ok({"access_token": "at", "status": "active"})))
    assert fine.access_token == "at"


async def test_nested_error_object_and_server_errors() -> None:
    nested = Provider(ok({"error": {"code": "invalid_grant", "message": "expired"}}, 400))
    with pytest.raises(oauth.ProviderError) as caught:
        await exchange(connector(), nested)
    assert (caught.value.code, caught.value.description) == ("invalid_grant", "expired")
    html = Provider(lambda r: httpx2.Response(502, text="<html>Bad gateway</html>"))
    with pytest.raises(oauth.ProviderError) as caught:
        await exchange(connector(), html)
    assert caught.value.code == "http_502" and caught.value.status == 502
    garbage = Provider(lambda r: httpx2.Response(200, text="not a token"))
    with pytest.raises(oauth.ProviderError) as caught:
        await exchange(connector(), garbage)
    assert caught.value.code == "invalid_token_response"


@pytest.mark.parametrize("body,needle", [
    ({"token_type": "bearer"}, "no access_token"),
    ({"access_token": "at", "expires_in": "soon"}, "expires_in"),
    ({"access_token": 42}, "no access_token"),
])
async def test_answer_in_an_unexpected_shape_is_a_clear_provider_error(
        body: dict[str, Any], needle: str) -> None:
    with pytest.raises(oauth.ProviderError) as caught:
        await exchange(connector(), Provider(ok(body)))
    assert caught.value.code == "invalid_token_response" and needle in caught.value.description


async def test_api_host_from_the_token_answer_must_be_https() -> None:
    c = connector(api_base_url="${instance_url}/services", keep_from_token=("instance_url",))
    good = await exchange(c, Provider(ok({"access_token": "at",
                                          "instance_url": "https://eu1.example.com"})))
    assert good.extra == {"instance_url": "https://eu1.example.com"}
    for bad in ("http://evil.example.com", "javascript:alert(1)", None):
        with pytest.raises(oauth.ProviderError, match="instance_url"):
            await exchange(c, Provider(ok({"access_token": "at", "instance_url": bad})))
    loopback = {"access_token": "at", "instance_url": "http://127.0.0.1:8080"}
    with pytest.raises(oauth.ProviderError):
        await exchange(c, Provider(ok(loopback)))
    allowed = await exchange(c, Provider(ok(loopback)), allow_loopback_http=True)
    assert allowed.extra["instance_url"] == "http://127.0.0.1:8080"


async def test_refresh_sends_refresh_params_keeps_old_refresh_token_and_keeps_no_metadata() -> None:
    provider = Provider(ok({"access_token": "at2", "expires_in": 60, "team": {"id": "T9"}}))
    c = connector(refresh_params={"action": "requesttoken"}, keep_from_token=("team.id",))
    tokens = await oauth.refresh(c, CREDS, refresh_token="rt-old", scopes=["read"], data={},
                                 transport=provider.transport)
    assert provider.body["action"] == "requesttoken"
    assert provider.body["grant_type"] == "refresh_token" and "scope" not in provider.body
    assert tokens.refresh_token == "rt-old" and tokens.expires_at is not None
    assert tokens.extra == {}


def test_authorize_url_scope_param_separator_offline_scopes_and_inputs() -> None:
    c = connector(scope_param="user_scope", scope_separator=",", offline_scopes=("offline",),
                  pkce=False, authorize_params={"context": "stores/${store}"},
                  authorization_url="https://${store}.acme.example/authorize",
                  inputs={"store": {"title": "Store", "example": "abc"}})
    url = oauth.authorization_url(c, CREDS, redirect_uri="https://me/cb", state="s1",
                                  scopes=["read", "write", "offline"], code_verifier="v" * 64,
                                  data={"store": "abc"})
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    assert parts.netloc == "abc.acme.example"
    assert query["user_scope"] == "read,write,offline" and "scope" not in query
    assert query["context"] == "stores/abc" and "code_challenge" not in query
    assert query["client_id"] == "client-1" and query["state"] == "s1"


def test_scopes_may_name_inputs() -> None:
    c = connector(scopes=("https://${org}.crm.example/user_impersonation",),
                  inputs={"org": {"title": "Org", "example": "contoso"}})
    url = oauth.authorization_url(c, CREDS, redirect_uri="https://me/cb", state="s",
                                  scopes=list(c.scopes), code_verifier="v" * 64,
                                  data={"org": "contoso"})
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["scope"] == "https://contoso.crm.example/user_impersonation"
    assert query["code_challenge_method"] == "S256"


async def test_revocation_without_client_credentials_and_with_http_200_errors() -> None:
    provider = Provider(ok({"ok": True, "revoked": True}))
    c = connector(revocation_client_auth=False, success_flag="ok")
    await oauth.revoke(c, CREDS, token="xoxp-1", token_type_hint="access_token", data={},
                       transport=provider.transport)
    req = provider.requests[-1]
    assert "authorization" not in req.headers
    assert provider.body == {"token": "xoxp-1", "token_type_hint": "access_token"}
    refused = Provider(ok({"ok": False, "error": "invalid_auth"}))
    with pytest.raises(oauth.ProviderError, match="invalid_auth"):
        await oauth.revoke(c, CREDS, token="x", token_type_hint="access_token", data={},
                           transport=refused.transport)


async def test_json_revocation_with_basic_client_credentials() -> None:
    provider = Provider(ok({"request_id": "r"}))
    c = connector(token_request_format="json", token_headers={"Notion-Version": "2025-09-03"})
    await oauth.revoke(c, CREDS, token="ntn_1", token_type_hint="access_token", data={},
                       transport=provider.transport)
    req = provider.requests[-1]
    assert req.headers["content-type"] == "application/json"
    assert req.headers["authorization"].startswith("Basic ")
    assert req.headers["notion-version"] == "2025-09-03"
    assert provider.body["token"] == "ntn_1"


@pytest.mark.parametrize("fields,token_type,access,data,headers,query", [
    ({}, "Bearer", "at", None, {"Authorization": "Bearer at"}, {}),
    ({"api_auth_scheme": "Zoho-oauthtoken"}, "Bearer", "at", None,
     {"Authorization": "Zoho-oauthtoken at"}, {}),
    ({"api_auth": "header", "api_auth_name": "X-Token", "api_headers": {"V": "1"}}, "Bearer",
     "at", None, {"V": "1", "X-Token": "at"}, {}),
    ({"api_auth": "query", "api_auth_name": "api_token"}, "Bearer", "at", None, {},
     {"api_token": "at"}),
    ({"api_headers": {"Authorization": "ignored"}}, None, None, {"token": "t"},
     {"Authorization": "Bearer t"}, {}),
    ({}, None, None, {"username": "u", "password": "p"},
     {"Authorization": "Basic dTpw"}, {}),
    ({"api_auth": "header", "api_auth_name": "x-api-key"}, None, None, {"apiKey": "k"},
     {"x-api-key": "k"}, {}),
])
def test_credential_is_applied_the_connectors_way(fields: dict[str, Any], token_type: str | None,
                                                   access: str | None,
                                                   data: dict[str, str] | None,
                                                   headers: dict[str, str],
                                                   query: dict[str, str]) -> None:
    assert api_request_auth(connector(**fields), token_type, access, data) == (headers, query)


def test_applying_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no credential"):
        api_request_auth(connector(), "Bearer", None, None)

"""Declarative actions: the catalog validates, lists, and runs calls built from its
declarations through the connection (against a real local HTTP server)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from alloy_oauth import actions
from alloy_oauth.providers import load_catalog
from alloy_oauth.testing import EMULATORS
from alloy_oauth.testing.flow import connect_flow
from tests.conftest import Alloy, StartAlloy
from tests.support.servers import run_asgi
from tests.test_refresh import CLIENT_ENV, provider_entry, seed_connection, start_fake_provider

APP_CALLBACK = "http://localhost:3999/oauth/callback"
NAMED = ("notion", "hubspot", "salesforce", "slack", "google-drive", "github")


def upstream() -> FastAPI:
    app = FastAPI()

    @app.api_route("/echo/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def echo(rest: str, request: Request) -> Response:
        body = await request.body()
        return JSONResponse({
            "method": request.method, "raw_path": request.scope["raw_path"].decode(),
            "query": request.scope["query_string"].decode(),
            "headers": dict(request.headers),
            "json": json.loads(body) if body else None})

    @app.api_route("/slack/{method}", methods=["GET", "POST"])
    async def slack(method: str) -> Response:
        if method == "chat.postMessage":
            return JSONResponse({"ok": False, "error": "channel_not_found"})
        return JSONResponse({"ok": True, "user": "U1"})

    @app.get("/status/{code}/{rest:path}")
    async def status(code: int, rest: str) -> Response:
        return JSONResponse({"message": f"answered {code}"}, status_code=code,
                            headers={"Retry-After": "60"} if code == 429 else None)

    return app


@contextlib.contextmanager
def with_actions(start_alloy: StartAlloy, base: dict[str, str]) -> Iterator[Alloy]:
    """Alloy whose named connectors call the local upstream (under the path in `base`)."""
    with start_fake_provider() as provider, run_asgi(upstream()) as api_url:
        entries: dict[str, Any] = dict(provider_entry(provider.url))
        env = dict(CLIENT_ENV)
        for connector_id, path in base.items():
            entries.update(provider_entry(provider.url, connector_id,
                                          api_base_url=f"{api_url}{path}",
                                          api_headers={"Notion-Version": "2025-09-03"}
                                          if connector_id == "notion" else {}))
            key = connector_id.upper().replace("-", "_")
            env[f"ALLOY_CONNECTOR_{key}_CLIENT_ID"] = "c"
            env[f"ALLOY_CONNECTOR_{key}_CLIENT_SECRET"] = "s"
        with start_alloy(providers=entries, connector_env=env) as alloy:
            yield alloy


def test_every_named_connector_has_at_least_three_documented_actions() -> None:
    catalog = actions.catalog()
    built_in = load_catalog()
    assert set(NAMED) <= set(catalog)
    for connector_id, entry in catalog.items():
        assert connector_id in built_in, connector_id
        assert len(entry.actions) >= (3 if connector_id in NAMED else 1)
        for action in entry.actions.values():
            assert action.description and action.name
            assert action.docs_url and action.docs_url.startswith("https://")
            assert all(p.description for p in action.parameters.values())


@pytest.mark.parametrize(("spec", "complaint"), [
    ({"name": "n", "description": "d", "method": "GET", "path": "/a/{x}"},
     "path parameter 'x'"),
    ({"name": "n", "description": "d", "method": "GET", "path": "/a",
      "parameters": {"q": {"in": "body", "description": "d"}}}, "takes no body"),
    ({"name": "n", "description": "d", "method": "GET", "path": "/a", "colour": "red"},
     "colour"),
    ({"name": "n", "description": "d", "method": "FETCH", "path": "/a"}, "method"),
    ({"name": "n", "description": "d", "method": "GET", "path": "/a",
      "parameters": {"n": {"in": "query", "type": "integer", "default": "x",
                           "description": "d"}}}, "default is not a integer"),
])
def test_an_actions_file_is_validated_when_loaded(tmp_path: Path, spec: dict[str, Any],
                                                  complaint: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps({"demo": {"actions": {"broken": spec}}}))
    with pytest.raises(actions.ActionsError) as err:
        actions.parse_file(path)
    assert str(path) in str(err.value) and "demo" in str(err.value)
    assert complaint in str(err.value)


async def test_actions_are_listed_per_connector(start_alloy: StartAlloy) -> None:
    with start_alloy() as alloy:
        async with alloy.api() as api:
            listed = (await api.get("/connectors/github/actions")).json()["actions"]
            one = await api.get("/connectors/github/actions/create-issue")
            unknown_connector = await api.get("/connectors/nope/actions")
            unknown_action = await api.get("/connectors/github/actions/nope")
    assert {"create-issue", "list-issues", "get-repo"} <= {a["id"] for a in listed}
    params = {p["name"]: p for p in one.json()["action"]["parameters"]}
    assert params["title"] == {"name": "title", "in": "body", "type": "string",
                               "required": True, "description": "The issue's title.",
                               "default": None}
    assert one.json()["action"]["method"] == "POST"
    assert unknown_connector.status_code == 404
    assert unknown_action.status_code == 404
    assert unknown_action.json()["error"] == "action_not_found"


async def test_execute_builds_the_call_from_the_declaration(start_alloy: StartAlloy) -> None:
    with with_actions(start_alloy, {"github": "/echo"}) as alloy:
        conn_id = seed_connection(alloy, connector_id="github")
        async with alloy.api() as api:
            made = await api.post("/connectors/github/actions/create-issue/execute", json={
                "connectionId": conn_id, "pathParams": {"owner": "octo cat", "repo": "hello"},
                "requestBody": {"title": "Bug", "labels": ["x"]},
                "additionalHeaders": {"X-Trace": "t1", "Authorization": "Bearer stolen"}})
            listed = await api.post("/connectors/github/actions/list-issues/execute", json={
                "credentialId": conn_id, "pathParams": {"owner": "o", "repo": "r"},
                "queryParameters": {"labels": "bug,ui", "page": 2}})
            contents = await api.post(
                "/connectors/github/actions/get-file-contents/execute",
                json={"connectionId": conn_id,
                      "pathParams": {"owner": "o", "repo": "r", "path": "docs/READ ME.md"}})
        assert made.status_code == 200, made.text
        assert made.json()["success"] is True
        call = made.json()["result"]
        assert call["method"] == "POST"
        assert call["raw_path"] == "/echo/repos/octo%20cat/hello/issues"
        assert call["json"] == {"title": "Bug", "labels": ["x"]}
        assert call["headers"]["authorization"] == "Bearer at-0"
        assert call["headers"]["accept"] == "application/vnd.github+json"
        assert call["headers"]["x-github-api-version"] == "2022-11-28"
        assert call["headers"]["x-trace"] == "t1"
        listed_call = listed.json()["result"]
        assert listed_call["method"] == "GET" and listed_call["json"] is None
        assert listed_call["query"] == "labels=bug%2Cui&page=2&state=open&per_page=30"
        assert contents.json()["result"]["raw_path"] == "/echo/repos/o/r/contents/docs/READ%20ME.md"


async def test_execute_refuses_what_the_declaration_does_not_allow(
        start_alloy: StartAlloy) -> None:
    with with_actions(start_alloy, {"github": "/echo"}) as alloy:
        conn_id = seed_connection(alloy, connector_id="github")
        fake_conn = seed_connection(alloy, connector_id="fake")
        path = {"owner": "o", "repo": "r"}

        async def run(action: str, **body: Any) -> Any:
            async with alloy.api() as api:
                return await api.post(f"/connectors/github/actions/{action}/execute",
                                      json={"connectionId": conn_id, **body})

        missing = await run("create-issue", pathParams=path, requestBody={"body": "no title"})
        wrong_type = await run("update-issue", pathParams={**path, "issue_number": "seven"})
        not_in_enum = await run("list-issues", pathParams=path,
                                queryParameters={"state": "sleeping"})
        climbing = await run("get-file-contents", pathParams={**path, "path": "a/../../x"})
        no_path = await run("get-repo", pathParams={"owner": "o"})
        async with alloy.api() as api:
            other_connector = await api.post("/connectors/github/actions/get-repo/execute",
                                              json={"connectionId": fake_conn,
                                                    "pathParams": path})
            no_connection = await api.post("/connectors/github/actions/get-repo/execute",
                                           json={"pathParams": path})
            foreign_user = await api.post(
                "/connectors/github/actions/get-repo/execute",
                json={"connectionId": conn_id, "pathParams": path},
                headers={"x-alloy-userid": (await api.post(
                    "/users", json={"username": "someone"})).json()["userId"]})
        assert (missing.status_code, missing.json()["error"]) == (400, "missing_parameter")
        assert "title" in missing.json()["message"]
        assert (wrong_type.status_code, wrong_type.json()["error"]) == (400, "invalid_parameter")
        assert not_in_enum.json()["error"] == "invalid_parameter"
        assert climbing.json()["error"] == "invalid_parameter"
        assert no_path.json()["error"] == "missing_parameter"
        assert other_connector.json()["error"] == "connector_mismatch"
        assert no_connection.json()["error"] == "missing_connection"
        assert foreign_user.status_code == 404


async def test_provider_refusals_are_failures_with_the_providers_answer(
        start_alloy: StartAlloy) -> None:
    with with_actions(start_alloy, {"slack": "/slack", "notion": "/status/404",
                                    "hubspot": "/status/429"}) as alloy:
        slack = seed_connection(alloy, connector_id="slack", refresh_token="rt-s")
        notion = seed_connection(alloy, connector_id="notion", refresh_token="rt-n")
        hubspot = seed_connection(alloy, connector_id="hubspot", refresh_token="rt-h")
        async with alloy.api() as api:
            posted = await api.post("/connectors/slack/actions/post-message/execute", json={
                "connectionId": slack, "requestBody": {"channel": "C1", "text": "hi"}})
            checked = await api.post("/connectors/slack/actions/auth-test/execute",
                                     json={"connectionId": slack})
            page = await api.post("/connectors/notion/actions/get-page/execute", json={
                "connectionId": notion, "pathParams": {"page_id": "p1"}})
            limited = await api.post("/connectors/hubspot/actions/list-contacts/execute",
                                     json={"connectionId": hubspot})
        assert posted.status_code == 502
        assert posted.json()["success"] is False and posted.json()["providerStatus"] == 200
        assert posted.json()["result"] == {"ok": False, "error": "channel_not_found"}
        assert "channel_not_found" in posted.json()["message"]
        assert checked.json() == {"success": True, "result": {"ok": True, "user": "U1"}}
        assert page.status_code == 502 and page.json()["providerStatus"] == 404
        assert page.json()["result"] == {"message": "answered 404"}
        assert limited.status_code == 429 and limited.headers["retry-after"] == "60"
        assert limited.json()["error"] == "rate_limited"


async def test_connector_headers_reach_the_provider(start_alloy: StartAlloy) -> None:
    with with_actions(start_alloy, {"notion": "/echo"}) as alloy:
        conn_id = seed_connection(alloy, connector_id="notion")
        async with alloy.api() as api:
            found = await api.post("/connectors/notion/actions/search/execute", json={
                "connectionId": conn_id, "requestBody": {"query": "roadmap", "page_size": 5}})
        call = found.json()["result"]
        assert call["raw_path"] == "/echo/search" and call["method"] == "POST"
        assert call["json"] == {"query": "roadmap", "page_size": 5}
        assert call["headers"]["notion-version"] == "2025-09-03"
        assert call["headers"]["content-type"].startswith("application/json")


# One action per named connector against its provider emulator (alloy_oauth.testing): the
# built-in catalog entry with the emulator's URLs, connected through the real flow. Then the
# provider forgets the access token: where it issued a refresh token the action refreshes once
# and retries; where it did not (Slack without rotation, GitHub OAuth apps) its refusal is
# passed on as a failure.
EMULATED = [
    ("notion", "get-bot-user", True, lambda r: r["type"] == "bot"),
    ("hubspot", "get-account-details", True, lambda r: "portalId" in r),
    ("salesforce", "get-limits", True, lambda r: r["DailyApiRequests"]["Max"] == 15000),
    ("slack", "auth-test", False, lambda r: r["ok"] is True and r["user_id"]),
    ("google-drive", "get-about", True, lambda r: "user" in r),
    ("github", "get-authenticated-user", False, lambda r: r["login"]),
]


@pytest.mark.parametrize(("connector_id", "action_id", "refreshes", "check"), EMULATED,
                         ids=[e[0] for e in EMULATED])
async def test_named_connector_action_runs_against_its_emulator(
        start_alloy: StartAlloy, connector_id: str, action_id: str, refreshes: bool,
        check: Any) -> None:
    emulator = EMULATORS[connector_id]()
    with emulator, start_alloy(providers=emulator.providers_entry(),
                               connector_env=emulator.connector_env()) as alloy:
        async with alloy.api() as api:
            flow = await connect_flow(api, connector_id, redirect_uri=APP_CALLBACK)
            assert flow.connection_id, flow.query
            path = f"/connectors/{connector_id}/actions/{action_id}/execute"
            done = await api.post(path, json={"connectionId": flow.connection_id})
            assert done.status_code == 200, done.text
            assert done.json()["success"] is True and check(done.json()["result"])
            emulator.expire_access_tokens()
            again = await api.post(path, json={"connectionId": flow.connection_id})
        grants = [r.grant_type for r in emulator.token_requests]
        if refreshes:
            assert again.status_code == 200, again.text
            assert check(again.json()["result"])
            assert grants == ["authorization_code", "refresh_token"]
        else:
            assert again.status_code == 502, again.text
            assert again.json()["success"] is False
            assert grants == ["authorization_code"]

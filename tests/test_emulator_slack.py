"""Slack, end to end against its emulator, through the built-in `slack` catalog entry."""

from __future__ import annotations

import httpx2

from alloy_oauth.oauth.apply import api_request_auth
from alloy_oauth.providers import builtin_catalog
from alloy_oauth.testing import SlackEmulator
from alloy_oauth.testing.flow import connect_flow
from alloy_oauth.testing.slack import TEAM, USER_ID
from tests.conftest import StartAlloy
from tests.support.emulators import alloy_with_emulator
from tests.test_refresh import token_of

APP = "http://localhost:3999/oauth/callback"


async def test_slack_user_token_from_authed_user_refreshes_and_calls_the_api(
        start_alloy: StartAlloy) -> None:
    async with alloy_with_emulator(start_alloy, SlackEmulator()) as (slack, _, api):
        flow = await connect_flow(api, "slack", redirect_uri=APP,
                                  scopes=["users:read", "chat:write"])
        assert flow.connection_id, flow.query
        asked = slack.authorize_requests[-1]
        assert asked["user_scope"] == "users:read,chat:write" and "scope" not in asked
        exchange = slack.token_requests[-1]
        assert exchange.basic_auth == (slack.client_id, slack.client_secret)

        conn = (await api.get(f"/connections/{flow.connection_id}")).json()
        assert conn["metadata"]["team_id"] == TEAM["id"]
        assert conn["metadata"]["team_name"] == TEAM["name"]
        assert conn["metadata"]["authed_user_id"] == USER_ID
        assert sorted(conn["scopes"]) == ["chat:write", "users:read"]

        token = (await token_of(api, flow.connection_id)).json()
        # The user token nested in authed_user, not a bot token; "user" is a bearer type.
        assert token["accessToken"].startswith("xoxe.xoxp-")
        assert token["accessToken"] in slack.access_tokens
        assert token["tokenType"] == "Bearer" and token["expiresAt"] is not None

        forced = await token_of(api, flow.connection_id, forceRefresh="true")
        assert forced.status_code == 200, forced.text
        renewed = forced.json()["accessToken"]
        assert renewed != token["accessToken"] and renewed in slack.access_tokens
        assert slack.token_requests[-1].grant_type == "refresh_token"

        headers, query = api_request_auth(builtin_catalog()["slack"], "Bearer", renewed, None)
        async with httpx2.AsyncClient() as http:
            whoami = await http.post(f"{slack.base_url}/api/auth.test", headers=headers,
                                     params=query)
        assert whoami.json() == {"ok": True, "url": "https://emulated.slack.com/",
                                 "team": TEAM["name"], "user": slack.user,
                                 "team_id": TEAM["id"], "user_id": USER_ID}

        assert (await api.delete(f"/connections/{flow.connection_id}")).status_code == 200
        revoke = slack.revoke_requests[-1]
        # auth.revoke authenticates by the token itself: no client secret is sent along.
        assert revoke.basic_auth is None and "client_secret" not in revoke.params
        assert renewed not in slack.access_tokens


async def test_slack_errors_with_http_200_are_errors(start_alloy: StartAlloy) -> None:
    async with alloy_with_emulator(start_alloy, SlackEmulator()) as (slack, alloy, api):
        slack.issue_token_answer(200, {"ok": False, "error": "invalid_code"})
        failed = await connect_flow(api, "slack", redirect_uri=APP)
        assert failed.error == "provider_error"
        assert "invalid_grant" in failed.query["error_description"]
        assert alloy.rows("connections") == 0

        flow = await connect_flow(api, "slack", redirect_uri=APP)
        slack.refresh_tokens.clear()  # answered {"ok": false, "error": "invalid_refresh_token"}
        resp = await token_of(api, flow.connection_id, forceRefresh="true")
        assert resp.status_code == 409, resp.text
        assert resp.json()["error"] == "needs_reauth"

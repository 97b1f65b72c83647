"""Notion, end to end against its emulator, through the built-in `notion` catalog entry."""

from __future__ import annotations

import httpx2

from alloy_oauth.oauth.apply import api_request_auth
from alloy_oauth.providers import builtin_catalog
from alloy_oauth.testing import NotionEmulator
from alloy_oauth.testing.flow import connect_flow
from tests.conftest import StartAlloy
from tests.support.emulators import alloy_with_emulator
from tests.test_refresh import token_of

APP = "http://localhost:3999/oauth/callback"


async def test_notion_connects_refreshes_calls_the_api_and_revokes(
        start_alloy: StartAlloy) -> None:
    async with alloy_with_emulator(start_alloy, NotionEmulator()) as (notion, _, api):
        flow = await connect_flow(api, "notion", redirect_uri=APP)
        assert flow.connection_id, flow.query

        # The authorize URL carries owner=user and no PKCE (Notion refuses it).
        asked = notion.authorize_requests[-1]
        assert asked["owner"] == "user" and "code_challenge" not in asked
        # The code exchange: JSON body, HTTP Basic client credentials, Notion-Version.
        exchange = notion.token_requests[-1]
        assert exchange.content_type == "application/json"
        assert exchange.basic_auth == (notion.client_id, notion.client_secret)
        assert "client_secret" not in exchange.params
        assert exchange.headers["notion-version"] == "2025-09-03"
        assert exchange.grant_type == "authorization_code"

        conn = (await api.get(f"/connections/{flow.connection_id}")).json()
        assert conn["metadata"]["workspace_name"] == notion.workspace_name
        assert conn["metadata"]["bot_id"] == notion.bot_id
        assert conn["expiresAt"] is None  # Notion gives no expires_in

        token = (await token_of(api, flow.connection_id)).json()
        assert token["accessToken"] in notion.access_tokens
        assert token["tokenType"] == "Bearer" and token["expiresAt"] is None
        first_refresh = next(iter(notion.refresh_tokens))

        forced = await token_of(api, flow.connection_id, forceRefresh="true")
        assert forced.status_code == 200, forced.text
        renewed = forced.json()["accessToken"]
        assert renewed != token["accessToken"] and renewed in notion.access_tokens
        assert notion.token_requests[-1].grant_type == "refresh_token"
        assert notion.token_requests[-1].params["refresh_token"] == first_refresh
        assert first_refresh not in notion.refresh_tokens  # Notion rotates it

        # One API call with the credential applied the connector's way.
        connector = builtin_catalog()["notion"]
        headers, query = api_request_auth(connector, "Bearer", renewed, None)
        async with httpx2.AsyncClient() as http:
            me = await http.get(f"{notion.base_url}/v1/users/me", headers=headers, params=query)
        assert me.status_code == 200, me.text
        assert me.json()["type"] == "bot"
        assert notion.api_requests[-1].headers["notion-version"] == "2025-09-03"

        deleted = await api.delete(f"/connections/{flow.connection_id}")
        assert deleted.status_code == 200, deleted.text
        revoke = notion.revoke_requests[-1]
        assert revoke.content_type == "application/json"
        assert revoke.basic_auth == (notion.client_id, notion.client_secret)
        assert renewed not in notion.access_tokens


async def test_notion_refresh_refused_in_notions_error_shape_needs_the_user_again(
        start_alloy: StartAlloy) -> None:
    async with alloy_with_emulator(start_alloy, NotionEmulator()) as (notion, _, api):
        flow = await connect_flow(api, "notion", redirect_uri=APP)
        notion.refresh_tokens.clear()  # the user removed the integration
        resp = await token_of(api, flow.connection_id, forceRefresh="true")
        assert resp.status_code == 409, resp.text
        assert resp.json()["error"] == "needs_reauth"
        refused = notion.token_requests[-1]
        assert refused.grant_type == "refresh_token"
        conn = (await api.get(f"/connections/{flow.connection_id}")).json()
        assert conn["status"] == "needs_reauth"
        assert "invalid_grant" in (conn["lastError"] or "")

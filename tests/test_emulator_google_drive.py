"""Google Drive, end to end against its emulator, through the built-in `google-drive` entry."""

from __future__ import annotations

import httpx2

from alloy_oauth.oauth.apply import api_request_auth
from alloy_oauth.providers import builtin_catalog
from alloy_oauth.testing import GoogleDriveEmulator
from alloy_oauth.testing.flow import connect_flow
from tests.conftest import StartAlloy
from tests.support.emulators import alloy_with_emulator
from tests.test_refresh import token_of

APP = "http://localhost:3999/oauth/callback"


async def test_google_drive_offline_access_refreshes_and_calls_drive(
        start_alloy: StartAlloy) -> None:
    async with alloy_with_emulator(start_alloy, GoogleDriveEmulator()) as (google, _, api):
        flow = await connect_flow(api, "google-drive", redirect_uri=APP)
        assert flow.connection_id, flow.query
        asked = google.authorize_requests[-1]
        assert asked["access_type"] == "offline" and asked["prompt"] == "consent"
        assert asked["scope"] == "https://www.googleapis.com/auth/drive.file"
        assert asked["code_challenge_method"] == "S256"
        exchange = google.token_requests[-1]
        assert exchange.params["client_secret"] == google.client_secret

        token = (await token_of(api, flow.connection_id)).json()
        assert token["accessToken"].startswith("ya29.")
        for _ in range(2):  # refresh answers carry no refresh token; the stored one stays
            forced = await token_of(api, flow.connection_id, forceRefresh="true")
            assert forced.status_code == 200, forced.text
        renewed = forced.json()["accessToken"]
        assert renewed != token["accessToken"] and renewed in google.access_tokens

        headers, query = api_request_auth(builtin_catalog()["google-drive"], "Bearer",
                                          renewed, None)
        async with httpx2.AsyncClient() as http:
            about = await http.get(f"{google.base_url}/drive/v3/about",
                                   params={**query, "fields": "user"}, headers=headers)
        assert about.status_code == 200, about.text
        assert about.json()["user"]["displayName"] == google.user

        assert (await api.delete(f"/connections/{flow.connection_id}")).status_code == 200
        assert google.revoke_requests and not google.refresh_tokens


async def test_google_reconnect_gets_a_refresh_token_again_thanks_to_prompt_consent(
        start_alloy: StartAlloy) -> None:
    async with alloy_with_emulator(start_alloy, GoogleDriveEmulator()) as (google, _, api):
        first = await connect_flow(api, "google-drive", redirect_uri=APP)
        second = await connect_flow(api, "google-drive", redirect_uri=APP)
        for flow in (first, second):
            forced = await token_of(api, flow.connection_id, forceRefresh="true")
            assert forced.status_code == 200, forced.text
        assert len(google.refresh_tokens) == 2


async def test_google_expired_refresh_token_needs_the_user_again(
        start_alloy: StartAlloy) -> None:
    async with alloy_with_emulator(start_alloy, GoogleDriveEmulator()) as (google, _, api):
        flow = await connect_flow(api, "google-drive", redirect_uri=APP)
        google.refresh_tokens.clear()  # "Token has been expired or revoked."
        resp = await token_of(api, flow.connection_id, forceRefresh="true")
        assert resp.status_code == 409, resp.text
        conn = (await api.get(f"/connections/{flow.connection_id}")).json()
        assert "expired or revoked" in conn["lastError"]

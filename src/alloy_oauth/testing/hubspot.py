"""HubSpot's OAuth v3, as documented at developers.hubspot.com (2026-11-27).

- authorize `GET /oauth/authorize` (app.hubspot.com) with `client_id`, `scope`, `redirect_uri`;
- token `POST /oauth/v3/token`, form-encoded, `client_id` and `client_secret` in the body;
  access tokens live 30 minutes; a refresh answer repeats the (long-lived) refresh token;
- errors: `{"status": "BAD_AUTH_CODE", "message": ..., "correlationId": ...}` with HTTP 400;
- API: `GET /account-info/v3/details` with `Authorization: Bearer`;
- revoke: `DELETE /oauth/v1/refresh-tokens/{token}` -> 204 (no client authentication); it
  deletes the refresh token only: access tokens already issued work until they expire. An
  unknown token: 404.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from alloy_oauth.testing._base import EmulatorError, Grant, ProviderEmulator
from alloy_oauth.testing._revocation import revocation_override

_CODES = {"invalid_client": "BAD_CLIENT_ID", "unsupported_grant_type": "BAD_GRANT_TYPE",
          "invalid_request": "BAD_REQUEST"}


class HubSpotEmulator(ProviderEmulator):
    connector_id = "hubspot"
    authorize_path = "/oauth/authorize"
    token_path = "/oauth/v3/token"
    client_auth = "body"
    access_token_ttl = 1800
    repeats_refresh_token = True
    access_token_prefix = "CNb"
    refresh_token_prefix = "na1-"
    portal_id = 62515

    def url_overrides(self) -> dict[str, str]:
        return {**super().url_overrides(), "api_base_url": self.base_url}

    def providers_entry(self, connector_id: str | None = None) -> dict[str, Any]:
        entry = super().providers_entry(connector_id)
        entry[connector_id or self.connector_id]["revocation"] = revocation_override(
            self.connector_id, "https://api.hubapi.com", self.base_url)
        return entry

    def check_authorize(self, params: dict[str, str]) -> str | None:
        if not params.get("scope"):
            return "scope is required"
        return None

    def token_answer(self, grant: Grant, access_token: str, refresh_token: str | None, *,
                     refreshing: bool) -> Response:
        return JSONResponse({"token_type": "bearer", "refresh_token": refresh_token,
                             "access_token": access_token, "expires_in": self.access_token_ttl})

    def error_answer(self, error: EmulatorError, *, refreshing: bool) -> Response:
        if error.error == "invalid_grant":
            status = "BAD_REFRESH_TOKEN" if refreshing else "BAD_AUTH_CODE"
        else:
            status = _CODES.get(error.error, error.error.upper())
        return JSONResponse({"status": status, "message": error.description,
                             "correlationId": str(uuid.uuid4())}, status_code=400)

    def register_api(self, app: FastAPI) -> None:
        @app.get("/account-info/v3/details")
        async def details(request: Request) -> Response:
            self.record_api(request)
            if self.bearer_grant(request) is None:
                return JSONResponse({"status": "error", "message": "Authentication credentials "
                                     "not found.", "category": "INVALID_AUTHENTICATION",
                                     "correlationId": str(uuid.uuid4())}, status_code=401)
            return JSONResponse({"portalId": self.portal_id, "accountType": "STANDARD",
                                 "timeZone": "US/Eastern", "companyCurrency": "USD",
                                 "uiDomain": "app.hubspot.com", "dataHostingLocation": "na1"})

        @app.delete("/oauth/v1/refresh-tokens/{token}")
        async def delete_refresh_token(token: str, request: Request) -> Response:
            self.revoke_requests.append(self._record(request, {"token": token}))
            if self.refresh_tokens.pop(token, None) is None:
                return JSONResponse({"status": "error", "message": "refresh token not found",
                                     "correlationId": str(uuid.uuid4()),
                                     "category": "OBJECT_NOT_FOUND"}, status_code=404)
            return Response(status_code=204)

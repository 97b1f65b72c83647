"""Salesforce's OAuth 2.0 web server flow, as documented at help.salesforce.com (2026-11-27).

- authorize `GET /services/oauth2/authorize`, PKCE S256;
- token `POST /services/oauth2/token`, form-encoded, client credentials in the body; a refresh
  token only for the `refresh_token` scope; the answer has `instance_url`, `id`, `issued_at`,
  `signature` and no `expires_in`; a refresh answer has no refresh token;
- errors: `{"error": "invalid_grant", "error_description": ...}` with HTTP 400;
- revoke `POST /services/oauth2/revoke` `token=...`;
- API: `GET {instance_url}/services/data/v64.0/limits` with `Authorization: Bearer`.
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from alloy_oauth.testing._base import EmulatorError, Grant, ProviderEmulator

API_VERSION = "v64.0"
ORG_ID = "00D5e000000EmUlAT"
USER_ID = "0055e000001EmUlAT"


class SalesforceEmulator(ProviderEmulator):
    connector_id = "salesforce"
    authorize_path = "/services/oauth2/authorize"
    token_path = "/services/oauth2/token"
    revoke_path = "/services/oauth2/revoke"
    client_auth = "body"
    access_token_ttl = 7200  # the session timeout; never told to the client
    access_token_prefix = f"{ORG_ID}!AQ"

    def issues_refresh_token(self, grant: Grant) -> bool:
        return "refresh_token" in grant.scopes or "offline_access" in grant.scopes

    def token_answer(self, grant: Grant, access_token: str, refresh_token: str | None, *,
                     refreshing: bool) -> Response:
        issued_at = str(int(time.time() * 1000))
        signature = base64.b64encode(hashlib.sha256(
            (self.base_url + issued_at).encode()).digest()).decode()
        body: dict[str, Any] = {
            "access_token": access_token, "signature": signature,
            "scope": " ".join(grant.scopes), "instance_url": self.base_url,
            "id": f"{self.base_url}/id/{ORG_ID}/{USER_ID}", "token_type": "Bearer",
            "issued_at": issued_at,
        }
        if refresh_token:
            body["refresh_token"] = refresh_token
        return JSONResponse(body)

    def error_answer(self, error: EmulatorError, *, refreshing: bool) -> Response:
        description = ("expired access/refresh token" if refreshing and
                       error.error == "invalid_grant" else error.description)
        return JSONResponse({"error": error.error, "error_description": description},
                            status_code=400)

    async def revoke(self, request: Request) -> Response:
        params = await self.read_token_params(request)
        self.revoke_requests.append(self._record(request, params))
        if not self.forget(params.get("token", "")):
            return JSONResponse({"error": "unsupported_token_type",
                                 "error_description": "this token type is not supported"},
                                status_code=400)
        return Response(status_code=200)

    def register_api(self, app: FastAPI) -> None:
        @app.get(f"/services/data/{API_VERSION}/limits")
        async def limits(request: Request) -> Response:
            self.record_api(request)
            if self.bearer_grant(request) is None:
                return JSONResponse([{"message": "Session expired or invalid",
                                      "errorCode": "INVALID_SESSION_ID"}], status_code=401)
            return JSONResponse({"DailyApiRequests": {"Max": 15000, "Remaining": 14998}})

"""Google's OAuth 2.0 for web server apps and the Drive API, as documented at
developers.google.com (2026-11-27).

- authorize `GET /o/oauth2/v2/auth`; a refresh token only with `access_type=offline`, and on a
  repeated consent only with `prompt=consent`; PKCE S256;
- token `POST /token`, form-encoded, client credentials in the body (or Basic); access tokens
  live 3599 s; a refresh answer has no refresh token;
- errors: `{"error": "invalid_grant", "error_description": "Bad Request"}` (400),
  `invalid_client` (401);
- revoke `POST /revoke` `token=...` (200 `{}`; unknown token: 400 `invalid_token`);
- API: `GET /drive/v3/about?fields=user`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from alloy_oauth.testing._base import EmulatorError, Grant, ProviderEmulator


class GoogleDriveEmulator(ProviderEmulator):
    connector_id = "google-drive"
    authorize_path = "/o/oauth2/v2/auth"
    token_path = "/token"
    revoke_path = "/revoke"
    access_token_ttl = 3599
    access_token_prefix = "ya29.a0"
    refresh_token_prefix = "1//0g"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._had_refresh_token: set[tuple[str, str]] = set()

    def url_overrides(self) -> dict[str, str]:
        return {**super().url_overrides(), "api_base_url": self.base_url + "/drive/v3"}

    def check_authorize(self, params: dict[str, str]) -> str | None:
        if not params.get("scope"):
            return "Error 400: invalid_request. Missing required parameter: scope"
        return None

    def issues_refresh_token(self, grant: Grant) -> bool:
        if grant.params.get("access_type") != "offline":
            return False
        key = (grant.client_id, grant.user)
        if key in self._had_refresh_token and grant.params.get("prompt") != "consent":
            return False  # a refresh token comes again only with prompt=consent
        self._had_refresh_token.add(key)
        return True

    def error_answer(self, error: EmulatorError, *, refreshing: bool) -> Response:
        description = {"invalid_grant": "Bad Request",
                       "invalid_client": "Unauthorized"}.get(error.error, error.description)
        if refreshing and error.error == "invalid_grant":
            description = "Token has been expired or revoked."
        return JSONResponse({"error": error.error, "error_description": description},
                            status_code=error.status)

    async def revoke(self, request: Request) -> Response:
        params = await self.read_token_params(request)
        self.revoke_requests.append(self._record(request, params))
        if not self.forget(params.get("token", "")):
            return JSONResponse({"error": "invalid_token",
                                 "error_description": "Token expired or revoked"},
                                status_code=400)
        return JSONResponse({})

    def register_api(self, app: FastAPI) -> None:
        @app.get("/drive/v3/about")
        async def about(request: Request) -> Response:
            self.record_api(request)
            grant = self.bearer_grant(request)
            if grant is None:
                return JSONResponse({"error": {
                    "code": 401, "status": "UNAUTHENTICATED",
                    "message": "Request had invalid authentication credentials."}},
                    status_code=401)
            return JSONResponse({"user": {"kind": "drive#user", "displayName": grant.user,
                                          "emailAddress": f"{grant.user}@example.com",
                                          "me": True, "permissionId": "0123456789"}})

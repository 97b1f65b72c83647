"""GitHub's OAuth web application flow, as documented at docs.github.com (2026-11-27).

- authorize `GET /login/oauth/authorize`, scopes space-separated, PKCE S256;
- token `POST /login/oauth/access_token` with `client_id` and `client_secret` as parameters;
  the answer is form-encoded unless `Accept: application/json`; errors come with HTTP 200
  (`error=bad_verification_code&error_description=...`);
- OAuth app tokens never expire; with `expiring_tokens=True` (a GitHub App with expiring user
  tokens) they last 8 hours and refresh with `grant_type=refresh_token`, rotating;
- API: `GET /user` (api.github.com) with `Authorization: Bearer` (or `token`);
- revoke: `DELETE /applications/{client_id}/grant` (api.github.com) with HTTP Basic
  client_id:client_secret and `{"access_token": ...}` -> 204; the grant and every token issued
  under it stop working. A wrong client or an unknown or expired token: 404.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from alloy_oauth.testing._base import EmulatorError, Grant, ProviderEmulator, json_params
from alloy_oauth.testing._revocation import revocation_override

_NOT_FOUND = {"message": "Not Found",
              "documentation_url": "https://docs.github.com/rest/apps/oauth-applications"
                                   "#delete-an-app-authorization", "status": "404"}

_ERRORS = {"invalid_grant": "bad_verification_code",
           "invalid_client": "incorrect_client_credentials"}


class GitHubEmulator(ProviderEmulator):
    connector_id = "github"
    authorize_path = "/login/oauth/authorize"
    token_path = "/login/oauth/access_token"
    client_auth = "body"
    rotates_refresh_tokens = True
    access_token_prefix = "gho_"
    refresh_token_prefix = "ghr_"

    def __init__(self, *, expiring_tokens: bool = False, **kwargs: Any) -> None:
        self.expiring_tokens = expiring_tokens
        self._accept = ""
        super().__init__(**kwargs)

    def url_overrides(self) -> dict[str, str]:
        return {**super().url_overrides(), "api_base_url": self.base_url + "/api"}

    def providers_entry(self, connector_id: str | None = None) -> dict[str, Any]:
        entry = super().providers_entry(connector_id)
        entry[connector_id or self.connector_id]["revocation"] = revocation_override(
            self.connector_id, "https://api.github.com", self.base_url + "/api")
        return entry

    def issues_refresh_token(self, grant: Grant) -> bool:
        return self.expiring_tokens

    def _new_tokens(self, grant: Grant) -> tuple[str, str | None]:
        access, refresh = super()._new_tokens(grant)
        if not self.expiring_tokens:
            self.access_tokens[access].expires_at = None
        return access, refresh

    async def read_token_params(self, request: Request) -> dict[str, str]:
        params = dict(request.query_params)
        params.update(await super().read_token_params(request))
        return params

    def _answer(self, request_accept: str, body: dict[str, Any]) -> Response:
        if "application/json" in request_accept:
            return JSONResponse(body)
        return Response(urlencode({k: v for k, v in body.items() if v is not None}),
                        media_type="application/x-www-form-urlencoded")

    async def token_endpoint(self, request: Request) -> Response:
        self._accept = request.headers.get("accept", "")
        return await super().token_endpoint(request)

    def token_answer(self, grant: Grant, access_token: str, refresh_token: str | None, *,
                     refreshing: bool) -> Response:
        body: dict[str, Any] = {"access_token": access_token, "scope": ",".join(grant.scopes),
                                "token_type": "bearer"}
        if self.expiring_tokens:
            body.update(expires_in=28800, refresh_token=refresh_token,
                        refresh_token_expires_in=15897600)
        return self._answer(self._accept, body)

    def error_answer(self, error: EmulatorError, *, refreshing: bool) -> Response:
        code = _ERRORS.get(error.error, error.error)
        if refreshing and error.error == "invalid_grant":
            code = "bad_refresh_token"
        return self._answer(self._accept, {
            "error": code, "error_description": error.description,
            "error_uri": "https://docs.github.com/apps/managing-oauth-apps/"
                         "troubleshooting-oauth-app-access-token-request-errors"})

    def register_api(self, app: FastAPI) -> None:
        @app.get("/api/user")
        async def user(request: Request) -> Response:
            self.record_api(request)
            grant = self.bearer_grant(request, "Bearer", "token")
            if grant is None:
                return JSONResponse({"message": "Bad credentials", "status": "401",
                                     "documentation_url": "https://docs.github.com/rest"},
                                    status_code=401)
            return JSONResponse({"login": grant.user, "id": 1, "type": "User",
                                 "name": grant.user.capitalize()})

        @app.delete("/api/applications/{client_id}/grant")
        async def delete_grant(client_id: str, request: Request) -> Response:
            params = await json_params(request)
            recorded = self._record(request, params)
            self.revoke_requests.append(recorded)
            if client_id != self.client_id or recorded.basic_auth != (self.client_id,
                                                                      self.client_secret):
                return JSONResponse(_NOT_FOUND, status_code=404)
            token = params.get("access_token")
            if not token:
                return JSONResponse({"message": "Invalid request.\n\n\"access_token\" wasn't "
                                     "supplied.", "status": "422"}, status_code=422)
            if self.live_grant(token) is None:
                return JSONResponse(_NOT_FOUND, status_code=404)
            self.forget(token)
            return Response(status_code=204)

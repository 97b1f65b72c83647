"""Slack's OAuth v2, as documented at docs.slack.dev (2026-11-27).

- authorize `GET /oauth/v2/authorize` with `scope` (bot) and/or `user_scope` (user),
  comma-separated;
- token `POST /api/oauth.v2.access`, client credentials as HTTP Basic or in the body; every
  answer is HTTP 200: `{"ok": true, "authed_user": {"access_token": "xoxp-...",
  "token_type": "user", ...}, "team": {...}}`, or `{"ok": false, "error": "invalid_code"}`;
  with token rotation, tokens expire in 12 hours and `grant_type=refresh_token` answers at the
  top level;
- revoke `POST /api/auth.revoke` authenticated by the token itself (`token` or Bearer);
- API: `POST /api/auth.test` with `Authorization: Bearer`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from alloy_oauth.testing._base import EmulatorError, Grant, ProviderEmulator

_ERRORS = {"invalid_grant": "invalid_code", "invalid_client": "invalid_client_id",
           "unsupported_grant_type": "invalid_grant_type"}
TEAM = {"id": "T0EMULATED", "name": "Emulated Team"}
USER_ID = "U0EMULATED"


class SlackEmulator(ProviderEmulator):
    connector_id = "slack"
    authorize_path = "/oauth/v2/authorize"
    token_path = "/api/oauth.v2.access"
    revoke_path = "/api/auth.revoke"
    access_token_ttl = 43200
    rotates_refresh_tokens = True
    access_token_prefix = "xoxe.xoxp-1-"
    refresh_token_prefix = "xoxe-1-"

    def __init__(self, *, token_rotation: bool = True, **kwargs: Any) -> None:
        self.token_rotation = token_rotation
        super().__init__(**kwargs)

    def url_overrides(self) -> dict[str, str]:
        return {**super().url_overrides(), "api_base_url": self.base_url + "/api"}

    def check_authorize(self, params: dict[str, str]) -> str | None:
        if not params.get("scope") and not params.get("user_scope"):
            return "no_scopes: scope or user_scope is required"
        return None

    def requested_scopes(self, params: dict[str, str]) -> list[str]:
        return [s for s in params.get("user_scope", "").split(",") if s]

    def issues_refresh_token(self, grant: Grant) -> bool:
        return self.token_rotation

    def _new_tokens(self, grant: Grant) -> tuple[str, str | None]:
        access, refresh = super()._new_tokens(grant)
        if not self.token_rotation:
            self.access_tokens[access].expires_at = None
        return access, refresh

    def token_answer(self, grant: Grant, access_token: str, refresh_token: str | None, *,
                     refreshing: bool) -> Response:
        token: dict[str, Any] = {"access_token": access_token, "token_type": "user",
                                 "scope": ",".join(grant.scopes)}
        if self.token_rotation:
            token.update(refresh_token=refresh_token, expires_in=self.access_token_ttl)
        if refreshing:  # a refresh answers at the top level
            return JSONResponse({"ok": True, **token, "team": TEAM, "enterprise": None,
                                 "is_enterprise_install": False})
        return JSONResponse({"ok": True, "app_id": "A0EMULATED",
                             "authed_user": {"id": USER_ID, **token}, "team": TEAM,
                             "enterprise": None, "is_enterprise_install": False})

    def error_answer(self, error: EmulatorError, *, refreshing: bool) -> Response:
        code = _ERRORS.get(error.error, error.error)
        if refreshing and error.error == "invalid_grant":
            code = "invalid_refresh_token"
        return JSONResponse({"ok": False, "error": code})

    def _token_of(self, request: Request, params: dict[str, str]) -> str:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return params.get("token") or (value.strip() if scheme.lower() == "bearer" else "")

    async def revoke(self, request: Request) -> Response:
        params = await self.read_token_params(request)
        self.revoke_requests.append(self._record(request, params))
        token = self._token_of(request, params)
        if token not in self.access_tokens:
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        self.forget(token)
        return JSONResponse({"ok": True, "revoked": True})

    def register_api(self, app: FastAPI) -> None:
        @app.api_route("/api/auth.test", methods=["GET", "POST"])
        async def auth_test(request: Request) -> Response:
            self.record_api(request)
            grant = self.bearer_grant(request)
            if grant is None:
                return JSONResponse({"ok": False, "error": "invalid_auth"})
            return JSONResponse({"ok": True, "url": "https://emulated.slack.com/",
                                 "team": TEAM["name"], "user": grant.user,
                                 "team_id": TEAM["id"], "user_id": USER_ID})

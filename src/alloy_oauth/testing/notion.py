"""Notion's public-integration OAuth, as documented at developers.notion.com (2026-11-27).

- authorize `GET /v1/oauth/authorize` needs `owner=user`; no PKCE;
- token `POST /v1/oauth/token`: HTTP Basic client credentials, a JSON body and a
  `Notion-Version` header; the answer has `bot_id`, `workspace_*`, `owner` and a refresh
  token, and no `expires_in`; a refresh rotates the refresh token;
- errors: `{"object": "error", "status": 400, "code": "invalid_grant", "message": ...}`;
- revoke `POST /v1/oauth/revoke` `{"token": ...}` with Basic credentials;
- API: `GET /v1/users/me` needs `Authorization: Bearer` and `Notion-Version`.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from alloy_oauth.testing._base import EmulatorError, Grant, ProviderEmulator, json_params


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"object": "error", "status": status, "code": code, "message": message,
                         "request_id": str(uuid.uuid4())}, status_code=status)


class NotionEmulator(ProviderEmulator):
    connector_id = "notion"
    authorize_path = "/v1/oauth/authorize"
    token_path = "/v1/oauth/token"
    revoke_path = "/v1/oauth/revoke"
    client_auth = "basic"
    access_token_ttl = None
    rotates_refresh_tokens = True
    supports_pkce = False
    access_token_prefix = "ntn_"
    refresh_token_prefix = "nrt_"

    workspace_id = str(uuid.UUID(int=0x1234))
    workspace_name = "Ada's Notion Workspace"
    bot_id = str(uuid.UUID(int=0xB07))

    def url_overrides(self) -> dict[str, str]:
        return {**super().url_overrides(), "api_base_url": self.base_url + "/v1"}

    def check_authorize(self, params: dict[str, str]) -> str | None:
        if params.get("owner") != "user":
            return "owner=user is required"
        return None

    async def read_token_params(self, request: Request) -> dict[str, str]:
        return await json_params(request)

    def check_token_request(self, request: Request, params: dict[str, str]) -> None:
        if request.headers.get("content-type", "").split(";")[0] != "application/json":
            raise EmulatorError("invalid_request", "the body must be JSON")
        if not request.headers.get("notion-version"):
            raise EmulatorError("missing_version", "Notion-Version header failed validation")

    def token_answer(self, grant: Grant, access_token: str, refresh_token: str | None, *,
                     refreshing: bool) -> Response:
        body: dict[str, Any] = {
            "access_token": access_token, "token_type": "bearer",
            "refresh_token": refresh_token, "bot_id": self.bot_id,
            "workspace_icon": None, "workspace_name": self.workspace_name,
            "workspace_id": self.workspace_id,
            "owner": {"type": "user", "user": {"object": "user", "id": str(uuid.uuid4()),
                                               "type": "person", "name": grant.user,
                                               "person": {"email": f"{grant.user}@example.com"}}},
            "duplicated_template_id": None, "request_id": str(uuid.uuid4()),
        }
        return JSONResponse(body)

    def error_answer(self, error: EmulatorError, *, refreshing: bool) -> Response:
        return _error(error.status, error.error, error.description)

    async def revoke(self, request: Request) -> Response:
        params = await json_params(request)
        self.revoke_requests.append(self._record(request, params))
        try:
            self._authenticate(request, {})
        except EmulatorError as exc:
            return _error(exc.status, exc.error, exc.description)
        if not self.forget(params.get("token", "")):
            return _error(400, "invalid_grant", "The token is invalid or already revoked.")
        return JSONResponse({"request_id": str(uuid.uuid4())})

    def register_api(self, app: FastAPI) -> None:
        @app.get("/v1/users/me")
        async def me(request: Request) -> Response:
            self.record_api(request)
            grant = self.bearer_grant(request)
            if grant is None:
                return _error(401, "unauthorized", "API token is invalid.")
            if not request.headers.get("notion-version"):
                return _error(400, "missing_version", "Notion-Version header failed validation")
            return JSONResponse({"object": "user", "id": self.bot_id, "type": "bot",
                                 "name": "Emulated integration",
                                 "bot": {"owner": {"type": "user"},
                                         "workspace_name": self.workspace_name},
                                 "request_id": secrets.token_hex(8)})

"""`x-api-version` handling as a plain ASGI middleware (cheap on the hot path)."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alloy_oauth.settings import API_VERSIONS, CURRENT_API_VERSION


class ApiVersionMiddleware:
    """Refuses unknown versions; echoes the version used in every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        asked = next((v.decode("latin-1").strip() for k, v in scope["headers"]
                      if k == b"x-api-version"), None)
        version = asked or CURRENT_API_VERSION
        echo = (b"x-api-version", version.encode("latin-1"))
        if version not in API_VERSIONS:
            body = json.dumps({
                "error": "unsupported_api_version",
                "message": f"Unsupported x-api-version '{version}': use one of "
                           f"{', '.join(API_VERSIONS)} (or omit it for {CURRENT_API_VERSION}).",
            }).encode()
            await send({"type": "http.response.start", "status": 400, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-api-version", CURRENT_API_VERSION.encode()),
            ]})
            await send({"type": "http.response.body", "body": body})
            return

        async def send_with_version(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), echo]
            await send(message)

        await self.app(scope, receive, send_with_version)

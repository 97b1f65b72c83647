"""The browser steps: the single-use oauthUrl link and the provider's callback."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from alloy_oauth import flows
from alloy_oauth.errors import ServiceError
from alloy_oauth.server.deps import RuntimeDep
from alloy_oauth.server.pages import page

router = APIRouter(tags=["browser"], include_in_schema=True)


def _fail(status: int, title: str, message: str) -> HTMLResponse:
    return page("message.html", status=status, title=title, message=message)


@router.get("/api/strategy/connector/{connector_id}/authorize", response_class=RedirectResponse,
            status_code=302)
async def authorize(connector_id: str, rt: RuntimeDep, userId: str = "",
                    token: str = "") -> Response:
    try:
        url = await flows.authorize(rt, connector_id, userId, token)
    except flows.FlowLinkError as exc:
        return _fail(400, exc.title, exc.message)
    except ServiceError as exc:
        return _fail(exc.status, "This connection cannot start", exc.message)
    return RedirectResponse(url, status_code=302)


@router.get("/api/strategy/callback", response_class=RedirectResponse, status_code=302)
async def provider_callback(request: Request, rt: RuntimeDep) -> Response:
    try:
        url = await flows.provider_callback(rt, dict(request.query_params))
    except flows.FlowLinkError as exc:
        return _fail(400, exc.title, exc.message)
    return RedirectResponse(url, status_code=302)

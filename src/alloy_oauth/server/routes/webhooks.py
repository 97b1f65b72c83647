"""The account's webhook URL, its events (the outbox) and the delivery log."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from alloy_oauth import webhooks
from alloy_oauth.server.deps import PrincipalDep, RuntimeDep

router = APIRouter(tags=["webhooks"])


class WebhookBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000)
    events: list[str] = Field(default_factory=list, max_length=20)
    enabled: bool = True


@router.get("/webhooks")
async def get_webhook(rt: RuntimeDep, who: PrincipalDep) -> dict[str, Any]:
    """The account's webhook URL and the events it receives (the secret is shown only when
    the URL is first set and on rotation)."""
    endpoint = await webhooks.get_endpoint(rt, who.account_id)
    if endpoint is None:
        raise webhooks.no_endpoint()
    return {"webhook": webhooks.endpoint_shape(endpoint)}


@router.put("/webhooks")
async def put_webhook(body: WebhookBody, rt: RuntimeDep, who: PrincipalDep) -> dict[str, Any]:
    """Set the account-level URL that receives `connection.created`, `connection.needs_reauth`,
    `connection.recovered` and `connection.deleted` (or the `events` listed)."""
    endpoint, secret = await webhooks.put_endpoint(rt, who.account_id, url=body.url,
                                                   events=body.events, enabled=body.enabled)
    return {"webhook": webhooks.endpoint_shape(endpoint, secret)}


@router.delete("/webhooks")
async def delete_webhook(rt: RuntimeDep, who: PrincipalDep) -> dict[str, Any]:
    await webhooks.delete_endpoint(rt, who.account_id)
    return {"success": True}


@router.post("/webhooks/rotate-secret")
async def rotate_webhook_secret(rt: RuntimeDep, who: PrincipalDep) -> dict[str, Any]:
    endpoint, secret = await webhooks.rotate_secret(rt, who.account_id)
    return {"webhook": webhooks.endpoint_shape(endpoint, secret)}


@router.post("/webhooks/test")
async def send_test_webhook(rt: RuntimeDep, who: PrincipalDep) -> dict[str, Any]:
    evt = await webhooks.send_test_event(rt, who.account_id)
    return {"event": webhooks.event_shape(evt)}


@router.get("/webhooks/events")
async def list_webhook_events(rt: RuntimeDep, who: PrincipalDep,
                              limit: int = Query(50, ge=1, le=500),
                              type: str | None = None,
                              connectionId: str | None = None) -> dict[str, Any]:
    """The account's events, newest first, with their delivery state."""
    found = await webhooks.list_events(rt, who.account_id, limit=limit, type_=type,
                                       connection_id=connectionId)
    return {"events": [webhooks.event_shape(e) for e in found]}


@router.get("/webhooks/deliveries")
async def list_webhook_deliveries(rt: RuntimeDep, who: PrincipalDep,
                                  limit: int = Query(50, ge=1, le=500),
                                  eventId: str | None = None) -> dict[str, Any]:
    """The delivery log: every attempt, newest first."""
    found = await webhooks.list_deliveries(rt, who.account_id, limit=limit, event_id=eventId)
    return {"deliveries": [webhooks.delivery_shape(d) for d in found]}

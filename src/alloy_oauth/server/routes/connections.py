"""Stored connections: read, list, fresh tokens, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from alloy_oauth import connections
from alloy_oauth.accounts import authenticate, find_user
from alloy_oauth.server.deps import (
    PrincipalDep,
    RuntimeDep,
    bearer_key,
    flag_parameter,
    get_runtime,
    hot_route,
    path_parameter,
    query_flag,
)
from alloy_oauth.server.routes import shapes

router = APIRouter(tags=["connections"])


@router.get("/connections")
async def list_connections(rt: RuntimeDep, who: PrincipalDep, userId: str | None = None,
                           connectorId: str | None = None) -> dict[str, Any]:
    user_id = None
    if userId:
        async with rt.sessions() as db:
            user_id = (await find_user(db, who.account_id, userId)).id
    found = await connections.list_for(rt, who.account_id, user_id=user_id,
                                       connector_id=connectorId)
    return {"connections": [shapes.connection(c) for c in found]}


@router.get("/connections/{connection_id}")
async def get_connection(connection_id: str, rt: RuntimeDep,
                         who: PrincipalDep) -> dict[str, Any]:
    return shapes.connection(await connections.get(rt, who.account_id, connection_id))


async def get_token(request: Request) -> Response:
    rt = await get_runtime(request)
    connection_id: str = request.path_params["connection_id"]
    key = bearer_key(request)
    force = query_flag(request, "forceRefresh")
    # Most calls find a valid token: one read. The rest take the full path (key check,
    # connection, refresh), which also gives every error its exact answer.
    token = None if force else await connections.valid_token(rt, key, connection_id)
    if token is None:
        who = await authenticate(rt.reads, key)
        token = await connections.access_token(rt, who.account_id, connection_id,
                                               force_refresh=force)
    return JSONResponse({"accessToken": token.access_token, "tokenType": token.token_type,
                         "expiresAt": shapes.iso(token.expires_at)},
                        headers={"Cache-Control": "no-store"})


# Served ahead of FastAPI's routing (create_app); the declaration documents it.
hot_routes = [hot_route(
    router, "/connections/{connection_id}/token", get_token, ["GET"],
    summary="Get Token", description="A valid access token, refreshed first when it expires "
    "within the connector's margin (or when `forceRefresh` is true).",
    openapi_extra={"parameters": [
        path_parameter("connection_id", "The connection id (or its credential id)."),
        flag_parameter("forceRefresh", "Refresh first even when the token is still valid.")]},
    responses={200: {"description": '{"accessToken", "tokenType", "expiresAt"}'}})]


@router.delete("/connections/{connection_id}")
async def delete_connection(connection_id: str, rt: RuntimeDep,
                            who: PrincipalDep) -> dict[str, Any]:
    """Revoke at the provider where it can, delete; say what the provider did.

    `revoked`: true, false (then `revocationError` says why), or null when the provider
    offers no revocation."""
    result = await connections.delete(rt, who.account_id, connection_id)
    return {"success": True, "revoked": result.revoked,
            "revocationError": result.revocation_error}

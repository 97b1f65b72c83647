"""Users of an account (the app's own end users) and their credentials."""

from __future__ import annotations

import functools
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from alloy_oauth import accounts, connections
from alloy_oauth.errors import BadRequest, connection_not_found
from alloy_oauth.frontend.tokens import issue_token
from alloy_oauth.server.deps import PrincipalDep, RuntimeDep
from alloy_oauth.server.routes import shapes

router = APIRouter(tags=["users"])


class NewUser(BaseModel):
    username: str = Field(min_length=1, max_length=200)
    full_name: str | None = Field(None, alias="fullName", max_length=200)


@router.post("/users")
async def create_user(body: NewUser, rt: RuntimeDep, who: PrincipalDep) -> dict[str, Any]:
    if body.username.strip() != body.username:
        raise BadRequest("username must not start or end with spaces.", code="invalid_username")
    user = await accounts.create_user(rt.sessions, who.account_id, body.username, body.full_name)
    return {"userId": user.id}


@router.get("/users")
async def list_users(rt: RuntimeDep, who: PrincipalDep) -> dict[str, Any]:
    return {"data": [shapes.user(u) for u in await accounts.list_users(rt.sessions,
                                                                     who.account_id)]}


@router.get("/users/{user_id}")
async def get_user(user_id: str, rt: RuntimeDep, who: PrincipalDep) -> dict[str, Any]:
    async with rt.sessions() as db:
        return shapes.user(await accounts.find_user(db, who.account_id, user_id))


@router.delete("/users/{user_id}")
async def delete_user(user_id: str, rt: RuntimeDep, who: PrincipalDep) -> dict[str, Any]:
    """Revoke each of the user's connections at its provider (a failure is recorded in the
    connection's `connection.deleted` event, never blocking), then delete them and the user."""
    deleted = await accounts.delete_user(
        rt.sessions, who.account_id, user_id,
        before=functools.partial(connections.revoke_for_user, rt, who.account_id))
    return {"success": True, "connectionsDeleted": deleted}


@router.get("/users/{user_id}/token")
async def user_token(user_id: str, rt: RuntimeDep, who: PrincipalDep) -> dict[str, Any]:
    """A JWT for the browser SDK, valid one hour, for this user of this account only."""
    async with rt.sessions() as db:
        user = await accounts.find_user(db, who.account_id, user_id)
    return {"token": issue_token(rt, who.account_id, user.id)}


@router.get("/users/{user_id}/credentials")
async def user_credentials(user_id: str, rt: RuntimeDep, who: PrincipalDep) -> dict[str, Any]:
    async with rt.sessions() as db:
        user = await accounts.find_user(db, who.account_id, user_id)
    found = await connections.list_for(rt, who.account_id, user_id=user.id)
    return {"data": [shapes.credential(c) for c in found]}


@router.delete("/users/{user_id}/credentials/{credential_id}")
async def delete_user_credential(user_id: str, credential_id: str, rt: RuntimeDep,
                                 who: PrincipalDep) -> dict[str, Any]:
    async with rt.sessions() as db:
        user = await accounts.find_user(db, who.account_id, user_id)
    conn = await connections.get(rt, who.account_id, credential_id)
    if conn.user_id != user.id:
        raise connection_not_found()
    result = await connections.delete(rt, who.account_id, conn.id)
    return {"success": True, "revoked": result.revoked,
            "revocationError": result.revocation_error}

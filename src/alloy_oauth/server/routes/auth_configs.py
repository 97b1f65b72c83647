"""Bring-your-own OAuth app per account: `/auth-configs`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from alloy_oauth import auth_configs
from alloy_oauth.auth_configs.models import AuthConfig
from alloy_oauth.server.deps import PrincipalDep, RuntimeDep
from alloy_oauth.server.routes.shapes import iso

router = APIRouter(tags=["auth-configs"])


class NewAuthConfig(BaseModel):
    # Loose types on purpose: the service names the bad field in a 400 of its own.
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    connector_id: Any = Field(None, alias="connectorId")
    client_id: Any = Field(None, alias="clientId")
    client_secret: Any = Field(None, alias="clientSecret")
    scopes: Any = None


def shape(row: AuthConfig) -> dict[str, Any]:
    """An auth config as answered: never its secret."""
    return {"authConfigId": row.id, "connectorId": row.connector_id, "clientId": row.client_id,
            "scopes": list(row.scopes), "createdAt": iso(row.created_at),
            "updatedAt": iso(row.updated_at)}


@router.post("/auth-configs")
async def create_auth_config(body: NewAuthConfig, rt: RuntimeDep,
                             who: PrincipalDep) -> dict[str, Any]:
    row = await auth_configs.create(rt, who.account_id, connector_id=body.connector_id,
                                    client_id=body.client_id, client_secret=body.client_secret,
                                    scopes=body.scopes)
    return shape(row)


@router.get("/auth-configs")
async def list_auth_configs(rt: RuntimeDep, who: PrincipalDep,
                            connectorId: str | None = None) -> dict[str, Any]:
    return {"authConfigs": [shape(r) for r in await auth_configs.list_for(
        rt, who.account_id, connectorId)]}


@router.get("/auth-configs/{auth_config_id}")
async def get_auth_config(auth_config_id: str, rt: RuntimeDep,
                          who: PrincipalDep) -> dict[str, Any]:
    return shape(await auth_configs.get(rt, who.account_id, auth_config_id))


@router.delete("/auth-configs/{auth_config_id}")
async def delete_auth_config(auth_config_id: str, rt: RuntimeDep,
                             who: PrincipalDep) -> dict[str, Any]:
    await auth_configs.delete(rt, who.account_id, auth_config_id)
    return {"success": True}

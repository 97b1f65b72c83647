"""Connectors and the app-facing steps of the flow (initiate, exchange)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from pydantic import BaseModel, ConfigDict, Field

from alloy_oauth import auth_configs, connections, flows
from alloy_oauth.accounts import find_user
from alloy_oauth.credentials import create_static_credential, input_schema
from alloy_oauth.providers import Connector
from alloy_oauth.runtime import Runtime
from alloy_oauth.server.deps import PrincipalDep, RuntimeDep
from alloy_oauth.server.routes import shapes

router = APIRouter(tags=["connectors"])


class InitiateBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    credential_type: str | None = Field(None, alias="credentialType")
    authentication_type: str | None = Field(None, alias="authenticationType")
    redirect_uri: str | None = Field(None, alias="redirectUri")
    connector_id: str | None = Field(None, alias="connectorId")
    user_id: str | None = Field(None, alias="userId")
    state: str | None = None
    scopes: list[str] | None = None
    auth_config_id: str | None = Field(None, alias="authConfigId")
    data: dict[str, Any] = Field(default_factory=dict)


class CallbackBody(BaseModel):
    code: str | None = None
    state: str | None = None


async def _own_apps(rt: Runtime, account_id: str) -> set[str]:
    """Connectors the account brought its own OAuth app for (POST /auth-configs)."""
    return {row.connector_id for row in await auth_configs.list_for(rt, account_id)}


def _configured(rt: Runtime, c: Connector, own_apps: set[str]) -> bool:
    return not c.is_oauth or rt.client_credentials(c) is not None or c.id in own_apps


@router.get("/connectors")
async def list_connectors(rt: RuntimeDep, who: PrincipalDep) -> dict[str, Any]:
    own = await _own_apps(rt, who.account_id)
    return {"connectors": [
        shapes.connector_summary(c, _configured(rt, c, own))
        for c in sorted(rt.catalog.values(), key=lambda c: c.id)
    ]}


@router.get("/connectors/{connector_id}")
async def get_connector(connector_id: str, rt: RuntimeDep, who: PrincipalDep) -> dict[str, Any]:
    c = flows.get_connector(rt, connector_id)
    own = await _own_apps(rt, who.account_id)
    return {"connector": shapes.connector_detail(c, _configured(rt, c, own))}


@router.get("/connectors/{connector_id}/credentials/metadata")
async def credential_metadata(connector_id: str, rt: RuntimeDep,
                              _: PrincipalDep) -> dict[str, Any]:
    c = flows.get_connector(rt, connector_id)
    # Without the deployment's own app, an OAuth flow needs the account's (authConfigId).
    needs_app = c.is_oauth and rt.client_credentials(c) is None
    return {"metadata": [input_schema(c, t, auth_config_required=needs_app and t == "oauth2")
                         for t in c.auth_types]}


@router.post("/connectors/{connector_id}/credentials")
async def create_credential(
    connector_id: str, body: InitiateBody, rt: RuntimeDep, who: PrincipalDep,
    x_alloy_userid: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    req = flows.InitiateRequest(
        credential_type=body.credential_type or body.authentication_type,
        redirect_uri=body.redirect_uri, connector_id=body.connector_id,
        user_id=body.user_id or x_alloy_userid,
        state=body.state, scopes=body.scopes, auth_config_id=body.auth_config_id,
        data=body.data,
    )
    connector = flows.get_connector(rt, connector_id)
    kind = flows.check_credential_type(connector, req.credential_type)
    if kind != "oauth2":
        conn = await create_static_credential(rt, who, connector, kind, req)
        return {"credentialId": conn.credential_id, "connectionId": conn.id,
                "status": conn.status}
    started = await flows.initiate(rt, who, connector_id, req)
    return {"oauthUrl": started.oauth_url, "credentialId": started.credential_id,
            "state": started.state}


@router.post("/connectors/{connector_id}/credentials/callback")
async def exchange_code(connector_id: str, body: CallbackBody, rt: RuntimeDep,
                        who: PrincipalDep) -> dict[str, Any]:
    done = await flows.exchange(rt, who, connector_id, body.code, body.state)
    return {"connectionId": done.connection_id, "credentialId": done.credential_id,
            "status": done.status}


@router.get("/connectors/{connector_id}/credentials")
async def list_credentials(
    connector_id: str, rt: RuntimeDep, who: PrincipalDep,
    x_alloy_userid: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    flows.get_connector(rt, connector_id)
    async with rt.sessions() as db:
        user = await find_user(db, who.account_id, x_alloy_userid or who.default_user_id)
    found = await connections.list_for(rt, who.account_id, user_id=user.id,
                                       connector_id=connector_id)
    return {"credentials": [shapes.credential(c) for c in found]}

"""Declarative actions of a connector: list them, run one through a connection."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from alloy_oauth import actions, connections, flows
from alloy_oauth.accounts import find_user
from alloy_oauth.errors import BadRequest, connection_not_found
from alloy_oauth.server.deps import PrincipalDep, RuntimeDep

router = APIRouter(tags=["actions"])


class ExecuteBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    credential_id: str | None = Field(None, alias="credentialId")
    connection_id: str | None = Field(None, alias="connectionId")
    request_body: Any = Field(None, alias="requestBody")
    query_parameters: dict[str, Any] = Field(default_factory=dict, alias="queryParameters")
    path_params: dict[str, Any] = Field(default_factory=dict, alias="pathParams")
    additional_headers: dict[str, str] = Field(default_factory=dict, alias="additionalHeaders")


@router.get("/connectors/{connector_id}/actions")
async def list_actions(connector_id: str, rt: RuntimeDep, _: PrincipalDep) -> dict[str, Any]:
    flows.get_connector(rt, connector_id)  # 404 for an unknown connector
    entry = actions.for_connector(connector_id)
    return {"actions": [actions.describe(a) for a in entry.actions.values()] if entry else []}


@router.get("/connectors/{connector_id}/actions/{action_id}")
async def get_action(connector_id: str, action_id: str, rt: RuntimeDep,
                     _: PrincipalDep) -> dict[str, Any]:
    flows.get_connector(rt, connector_id)
    return {"action": actions.describe(actions.find(connector_id, action_id)[1])}


@router.post("/connectors/{connector_id}/actions/{action_id}/execute", response_model=None)
async def execute_action(
    connector_id: str, action_id: str, body: ExecuteBody, rt: RuntimeDep, who: PrincipalDep,
    x_alloy_userid: Annotated[str | None, Header()] = None,
) -> dict[str, Any] | JSONResponse:
    """Run an action with a stored connection → `{"success": true, "result": ...}`; a provider
    refusal is `502 provider_error` (`429 rate_limited` for its rate limit) with `success:
    false`, the provider's `providerStatus` and its answer in `result`."""
    flows.get_connector(rt, connector_id)
    actions.find(connector_id, action_id)
    ref = body.connection_id or body.credential_id
    if not ref:
        raise BadRequest("Give the connection to act with: 'connectionId' or 'credentialId'.",
                         code="missing_connection")
    conn = await connections.get(rt, who.account_id, ref)
    if x_alloy_userid:
        async with rt.sessions() as db:
            user = await find_user(db, who.account_id, x_alloy_userid)
        if conn.user_id != user.id:
            raise connection_not_found()
    outcome = await actions.execute(rt, conn, connector_id, action_id, actions.Call(
        path_params=body.path_params, query=body.query_parameters, body=body.request_body,
        headers=body.additional_headers))
    if outcome.ok:
        return {"success": True, "result": outcome.result}
    limited = outcome.status == 429
    headers = {"Retry-After": outcome.retry_after} if limited and outcome.retry_after else None
    return JSONResponse(status_code=429 if limited else 502, headers=headers, content={
        "error": "rate_limited" if limited else "provider_error",
        "message": actions.failure_message(connector_id, action_id, outcome),
        "success": False, "providerStatus": outcome.status, "result": outcome.result,
    })

"""Bring-your-own OAuth app: an account's client credentials for a connector.

`POST /auth-configs` stores them (the secret encrypted at rest); a flow started with
`authConfigId` uses them instead of the deployment's `ALLOY_CONNECTOR_<ID>_CLIENT_ID`, and the
connection keeps using them for refreshes and revocation.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlalchemy import select

from alloy_oauth.auth_configs.models import AuthConfig, secret_context
from alloy_oauth.errors import BadRequest, NotFound
from alloy_oauth.ids import new_id

if TYPE_CHECKING:
    from alloy_oauth.runtime import Runtime

MAX_CLIENT_ID = 500
MAX_SECRET = 4000
_PRINTABLE = re.compile(r"[\x21-\x7e]+")


def not_found() -> NotFound:
    return NotFound("Auth config not found: check the authConfigId (list yours with "
                    "GET /auth-configs).", code="auth_config_not_found")


def _check(connector_id: object, client_id: object, client_secret: object,
           scopes: object) -> tuple[str, str, str, list[str]]:
    for name, value, limit in (("connectorId", connector_id, 100),
                               ("clientId", client_id, MAX_CLIENT_ID),
                               ("clientSecret", client_secret, MAX_SECRET)):
        if not isinstance(value, str) or not value:
            raise BadRequest(f"{name} is required (a non-empty string).",
                             code="invalid_auth_config")
        if len(value) > limit or not _PRINTABLE.fullmatch(value):
            raise BadRequest(f"{name} must be at most {limit} printable characters without "
                             "spaces.", code="invalid_auth_config")
    if scopes is None:
        scopes = []
    if not isinstance(scopes, list) or not all(
            isinstance(s, str) and s and _PRINTABLE.fullmatch(s) for s in scopes):
        raise BadRequest("scopes must be a list of non-empty strings without spaces.",
                         code="invalid_auth_config")
    assert isinstance(connector_id, str) and isinstance(client_id, str)
    assert isinstance(client_secret, str)
    return connector_id, client_id, client_secret, list(scopes)


async def create(rt: Runtime, account_id: str, *, connector_id: object, client_id: object,
                 client_secret: object, scopes: object) -> AuthConfig:
    """Validate and store an auth config; the connector must be an OAuth connector."""
    cid, client, secret, scope_list = _check(connector_id, client_id, client_secret, scopes)
    connector = rt.catalog.get(cid)
    if connector is None:
        raise NotFound(f"Connector not found: '{cid}' is not in the catalog (GET /connectors "
                       "lists them).", code="connector_not_found")
    if not connector.is_oauth:
        raise BadRequest(f"Connector '{cid}' does not use OAuth; its credentials are created "
                         "directly with POST /connectors/{id}/credentials.",
                         code="invalid_auth_config")
    row_id = new_id("acfg")
    row = AuthConfig(id=row_id, account_id=account_id, connector_id=cid, client_id=client,
                     client_secret_enc=rt.box.encrypt(secret, secret_context(row_id)),
                     scopes=scope_list)
    async with rt.sessions.begin() as db:
        db.add(row)
    return row


async def get(rt: Runtime, account_id: str, auth_config_id: str) -> AuthConfig:
    async with rt.sessions() as db:
        row = await db.get(AuthConfig, auth_config_id)
    if row is None or row.account_id != account_id:
        raise not_found()
    return row


async def list_for(rt: Runtime, account_id: str,
                   connector_id: str | None = None) -> list[AuthConfig]:
    query = select(AuthConfig).where(AuthConfig.account_id == account_id)
    if connector_id:
        query = query.where(AuthConfig.connector_id == connector_id)
    async with rt.sessions() as db:
        return list((await db.execute(query.order_by(AuthConfig.created_at))).scalars())


async def delete(rt: Runtime, account_id: str, auth_config_id: str) -> None:
    """Delete an auth config. Its connections can no longer refresh: they need reconnecting."""
    async with rt.sessions.begin() as db:
        row = await db.get(AuthConfig, auth_config_id)
        if row is None or row.account_id != account_id:
            raise not_found()
        await db.delete(row)

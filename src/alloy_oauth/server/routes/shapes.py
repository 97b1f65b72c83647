"""How stored objects look in answers: no secrets, ISO 8601 UTC times."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from alloy_oauth.providers import Connector
from alloy_oauth.store.models import Connection, User


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def connection(conn: Connection) -> dict[str, Any]:
    return {
        "connectionId": conn.id,
        "credentialId": conn.credential_id,
        "connectorId": conn.connector_id,
        "userId": conn.user_id,
        "name": conn.name,
        "type": conn.credential_type,
        "status": conn.status,
        "scopes": list(conn.scopes),
        "metadata": dict(conn.metadata_),
        "createdAt": iso(conn.created_at),
        "updatedAt": iso(conn.updated_at),
        "expiresAt": iso(conn.expires_at),
        "lastRefreshAt": iso(conn.last_refresh_at),
        "lastError": conn.last_error,
    }


def credential(conn: Connection) -> dict[str, Any]:
    return {
        "credentialId": conn.credential_id,
        "connectionId": conn.id,
        "connectorId": conn.connector_id,
        "name": conn.name,
        "type": conn.credential_type,
        "status": conn.status,
        "createdAt": iso(conn.created_at),
        "updatedAt": iso(conn.updated_at),
    }


def user(u: User) -> dict[str, Any]:
    return {"userId": u.id, "username": u.username, "fullName": u.full_name,
            "isDefault": u.is_default, "createdAt": iso(u.created_at)}


def connector_summary(c: Connector, configured: bool) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "authenticationTypes": list(c.auth_types),
            "configured": configured, "docsUrl": c.docs_url}


def connector_detail(c: Connector, configured: bool) -> dict[str, Any]:
    return {
        **connector_summary(c, configured),
        "oauth": {
            "authorizationUrl": c.authorization_url, "tokenUrl": c.token_url,
            "revocationUrl": c.revocation_url, "scopes": list(c.scopes), "pkce": c.pkce,
        } if c.is_oauth else None,
        "apiBaseUrl": c.api_base_url,
        "inputs": {k: v.model_dump(exclude_none=True) for k, v in c.inputs.items()},
    }

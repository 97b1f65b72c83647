"""Non-OAuth credentials (apiKey, basic, bearer) and the input schema a UI asks for."""

from __future__ import annotations

import json
import re
from typing import Any

from alloy_oauth.accounts import Principal, find_user
from alloy_oauth.errors import BadRequest
from alloy_oauth.flows import InitiateRequest, check_inputs
from alloy_oauth.ids import new_id
from alloy_oauth.providers import Connector
from alloy_oauth.runtime import Runtime
from alloy_oauth.store.models import Connection

# What each non-OAuth credential type needs in `data`, beside the connector's own inputs.
SECRET_FIELDS: dict[str, dict[str, dict[str, str]]] = {
    "apiKey": {"apiKey": {"title": "API key", "example": "sk_live_..."}},
    "basic": {"username": {"title": "Username", "example": "api-user"},
              "password": {"title": "Password", "example": "..."}},
    "bearer": {"token": {"title": "Bearer token", "example": "..."}},
    "oauth2": {},
}


MAX_SECRET = 4096
# Printable, no whitespace at the ends, no control characters (they would break headers).
_SECRET_VALUE = re.compile(r"[^\x00-\x1f\x7f\s](?:[^\x00-\x1f\x7f]*[^\x00-\x1f\x7f\s])?")


def input_schema(connector: Connector, kind: str, *,
                 auth_config_required: bool = False) -> dict[str, Any]:
    """JSON Schema of `data` for one credential type of a connector."""
    # An input the OAuth flow looks up itself after connecting (Mailchimp's dc) is asked for
    # only by the other credential types.
    inputs = connector.oauth_inputs if kind == "oauth2" else connector.inputs
    properties: dict[str, Any] = {
        name: {"type": "string", "title": spec.title, "pattern": spec.pattern,
               "examples": [spec.example]}
        for name, spec in inputs.items()
    }
    required = [n for n, s in inputs.items() if s.required]
    for name, spec in SECRET_FIELDS[kind].items():
        properties[name] = {"type": "string", "title": spec["title"], "minLength": 1,
                            "maxLength": MAX_SECRET, "writeOnly": True}
        required.append(name)
    sample = {n: s.example for n, s in inputs.items()}
    sample.update({n: s["example"] for n, s in SECRET_FIELDS[kind].items()})
    return {
        "authenticationType": kind,
        "authConfigRequired": auth_config_required,
        "inputSchema": {"type": "object", "properties": properties, "required": required,
                        "additionalProperties": False},
        "sampleInput": sample,
    }


async def create_static_credential(rt: Runtime, who: Principal, connector: Connector,
                                   kind: str, req: InitiateRequest) -> Connection:
    """Store an apiKey/basic/bearer credential from `data`, validated, encrypted at rest."""
    data = req.data if isinstance(req.data, dict) else {}
    unknown = sorted(set(data) - set(SECRET_FIELDS[kind]) - set(connector.inputs))
    if unknown:
        allowed = ", ".join([*SECRET_FIELDS[kind], *connector.inputs])
        raise BadRequest(f"Unknown input '{unknown[0]}' for a {kind} credential of "
                         f"'{connector.id}': it takes {allowed}.", code="invalid_input")
    secrets: dict[str, str] = {}
    for name, spec in SECRET_FIELDS[kind].items():
        value = data.get(name)
        if not isinstance(value, str) or not value:
            raise BadRequest(f"Missing input '{name}' ({spec['title']}) for a {kind} "
                             "credential.", code="invalid_input")
        if len(value) > MAX_SECRET or not _SECRET_VALUE.fullmatch(value):
            raise BadRequest(f"Input '{name}' ({spec['title']}) is malformed: at most "
                             f"{MAX_SECRET} characters, no control characters or surrounding "
                             "spaces.", code="invalid_input")
        secrets[name] = value
    public = check_inputs(connector, {k: v for k, v in data.items() if k not in secrets})
    conn_id = new_id("conn")
    async with rt.sessions.begin() as db:
        user = await find_user(db, who.account_id, req.user_id or who.default_user_id)
        conn = Connection(
            id=conn_id, credential_id=new_id("cred"), account_id=who.account_id,
            user_id=user.id, connector_id=connector.id, credential_type=kind,
            name=f"{connector.name} ({user.username})", status="connected", scopes=[],
            metadata_=public,
            secret_data_enc=rt.box.encrypt(json.dumps(secrets), f"conn:{conn_id}:data"),
        )
        db.add(conn)
    return conn

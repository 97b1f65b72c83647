"""Declarative actions: named provider API calls, as data (`*.yaml` beside this module).

Each file maps connector ids to their actions. An action is a method, a path template relative
to the connector's API base URL (`{name}` marks a path parameter), and its parameters (in the
path, the query or the JSON body), validated when the catalog loads and again for every call.
Calls go through the proxy's machinery: fresh credential, 401 refresh-and-retry, retries of
idempotent calls on 429/5xx.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlencode

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alloy_oauth import proxy
from alloy_oauth.errors import BadRequest, NotFound
from alloy_oauth.runtime import Runtime
from alloy_oauth.store.models import Connection

ACTIONS_DIR = Path(__file__).parent
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ID = re.compile(r"[a-z0-9][a-z0-9-]*")
RESULT_LIMIT = 10 << 20

ParamType = Literal["string", "integer", "number", "boolean", "object", "array"]


class ActionsError(ValueError):
    """An actions file that does not validate; names the file, connector, action and field."""


class Param(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    in_: Literal["path", "query", "body"] = Field(alias="in")
    type: ParamType = "string"
    required: bool = False
    description: str
    default: Any = None
    enum: tuple[Any, ...] | None = None
    # A path parameter that may hold '/' (a file path in a repository); never '.' or '..'.
    allow_slash: bool = False


class Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    description: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    path: str
    parameters: dict[str, Param] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    docs_url: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Action:
        if not _ID.fullmatch(self.id):
            raise ValueError("action ids are lower-case letters, digits and '-'")
        if not self.path.startswith("/"):
            raise ValueError("path starts with '/' (it is relative to the API base URL)")
        in_path = set(_PLACEHOLDER.findall(self.path))
        declared = {n for n, p in self.parameters.items() if p.in_ == "path"}
        if in_path != declared:
            odd = sorted(in_path ^ declared)[0]
            raise ValueError(f"path parameter '{odd}' must be both in the path template and "
                             "declared with in: path")
        for name, param in self.parameters.items():
            if param.allow_slash and param.in_ != "path":
                raise ValueError(f"parameter '{name}': allow_slash is for path parameters")
            if param.default is not None and _type_error(param.type, param.default):
                raise ValueError(f"parameter '{name}': default is not a {param.type}")
            if param.enum is not None and param.default is not None \
                    and param.default not in param.enum:
                raise ValueError(f"parameter '{name}': default is not one of enum")
        if self.method in ("GET", "DELETE") and any(
                p.in_ == "body" for p in self.parameters.values()):
            raise ValueError(f"a {self.method} action takes no body parameters")
        return self


class ConnectorActions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Headers every action of the connector sends (GitHub's API version).
    headers: dict[str, str] = Field(default_factory=dict)
    # A boolean field of the answer that is false on failures answered with HTTP 200 (Slack).
    success_flag: str | None = None
    actions: dict[str, Action]


def _type_error(kind: ParamType, value: Any) -> bool:
    checks: dict[str, Any] = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
    }
    return not checks[kind](value)


def parse_file(path: Path) -> dict[str, ConnectorActions]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ActionsError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ActionsError(f"{path}: the top level must map connector ids to their actions")
    found: dict[str, ConnectorActions] = {}
    for connector_id, entry in loaded.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("actions"), dict):
            raise ActionsError(f"{path}: connector '{connector_id}': needs an 'actions' mapping")
        try:
            actions = {
                str(action_id): Action(id=str(action_id), **spec)
                for action_id, spec in entry["actions"].items()
            }
            found[str(connector_id)] = ConnectorActions(
                **{**entry, "actions": actions})
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "entry"
            raise ActionsError(f"{path}: connector '{connector_id}': {where}: {err['msg']}"
                               ) from exc
        except TypeError as exc:
            raise ActionsError(f"{path}: connector '{connector_id}': {exc}") from exc
    return found


@functools.cache
def catalog() -> dict[str, ConnectorActions]:
    """Every built-in action, by connector id (loaded and validated once)."""
    merged: dict[str, ConnectorActions] = {}
    for path in sorted(ACTIONS_DIR.glob("*.yaml")):
        for connector_id, entry in parse_file(path).items():
            if connector_id in merged:
                raise ActionsError(f"{path}: connector '{connector_id}' is defined twice")
            merged[connector_id] = entry
    return merged


def for_connector(connector_id: str) -> ConnectorActions | None:
    return catalog().get(connector_id)


def find(connector_id: str, action_id: str) -> tuple[ConnectorActions, Action]:
    entry = for_connector(connector_id)
    action = entry.actions.get(action_id) if entry else None
    if entry is None or action is None:
        raise NotFound(f"Action not found: connector '{connector_id}' has no action "
                       f"'{action_id}' (list them with GET /connectors/{connector_id}/actions).",
                       code="action_not_found")
    return entry, action


def describe(action: Action) -> dict[str, Any]:
    return {
        "id": action.id, "name": action.name, "description": action.description,
        "method": action.method, "path": action.path, "docsUrl": action.docs_url,
        "parameters": [
            {"name": name, "in": p.in_, "type": p.type, "required": p.required,
             "description": p.description, "default": p.default,
             **({"enum": list(p.enum)} if p.enum is not None else {})}
            for name, p in action.parameters.items()
        ],
    }


# --- executing -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Call:
    """An action call as the app sends it (CONTRACT section 2)."""

    path_params: dict[str, Any]
    query: dict[str, Any]
    body: Any
    headers: dict[str, str]


def _invalid(message: str) -> BadRequest:
    return BadRequest(message, code="invalid_parameter")


def _check(action: Action, name: str, param: Param, value: Any) -> None:
    if _type_error(param.type, value):
        raise _invalid(f"Parameter '{name}' of action '{action.id}' must be a {param.type}.")
    if param.enum is not None and value not in param.enum:
        raise _invalid(f"Parameter '{name}' of action '{action.id}' must be one of "
                       f"{', '.join(map(str, param.enum))}.")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _values(action: Action, where: str, given: dict[str, Any]) -> dict[str, Any]:
    out = dict(given)
    for name, param in action.parameters.items():
        if param.in_ != where:
            continue
        if name not in out or out[name] is None:
            if param.default is not None:
                out[name] = param.default
            elif param.required:
                raise BadRequest(f"Missing parameter '{name}' ({where}) of action "
                                 f"'{action.id}': {param.description}", code="missing_parameter")
            else:
                out.pop(name, None)
                continue
        _check(action, name, param, out[name])
    return out


def render_path(action: Action, path_params: dict[str, Any]) -> str:
    values = _values(action, "path", path_params)

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        text = _text(values[name])
        param = action.parameters[name]
        if not text or any(s in (".", "..") for s in text.split("/")):
            raise _invalid(f"Path parameter '{name}' of action '{action.id}' may not be empty, "
                           "'.' or '..'.")
        return quote(text, safe="/" if param.allow_slash else "")

    return _PLACEHOLDER.sub(one, action.path).lstrip("/")


def render_query(action: Action, query: dict[str, Any]) -> str:
    pairs: list[tuple[str, str]] = []
    for name, value in _values(action, "query", query).items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((name, _text(item)))
    return urlencode(pairs)


def render_body(action: Action, body: Any) -> bytes | None:
    declared = any(p.in_ == "body" for p in action.parameters.values())
    if action.method in ("GET", "DELETE"):
        if body not in (None, {}):
            raise _invalid(f"Action '{action.id}' ({action.method}) takes no requestBody.")
        return None
    if body is None:
        body = {}
    if declared:
        if not isinstance(body, dict):
            raise _invalid(f"The requestBody of action '{action.id}' must be a JSON object.")
        body = _values(action, "body", body)
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int
    result: Any
    retry_after: str | None


def _parse(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if "json" in content_type:
        try:
            return json.loads(raw)
        except ValueError:
            pass
    return raw.decode("utf-8", "replace")


async def execute(rt: Runtime, conn: Connection, connector_id: str, action_id: str,
                  call: Call) -> Outcome:
    """Run one action through the connection; the provider's answer, parsed."""
    if conn.connector_id != connector_id:
        raise BadRequest(f"The connection is for connector '{conn.connector_id}', not "
                         f"'{connector_id}'.", code="connector_mismatch")
    entry, action = find(connector_id, action_id)
    raw_path = render_path(action, call.path_params)
    raw_query = render_query(action, call.query)
    body = render_body(action, call.body)
    headers = {**call.headers, **entry.headers, **action.headers}
    if body is not None:
        headers["Content-Type"] = "application/json; charset=utf-8"
    headers.setdefault("Accept", "application/json")
    upstream = await proxy.send(rt, conn, method=action.method, raw_path=raw_path,
                                raw_query=raw_query, headers=list(headers.items()),
                                body=body or b"", had_length=body is not None)
    try:
        raw = await upstream.read(RESULT_LIMIT)
    finally:
        await upstream.aclose()
    result = _parse(raw, upstream.response.headers.get("content-type", ""))
    ok = 200 <= upstream.status_code < 300
    if ok and entry.success_flag and isinstance(result, dict) \
            and result.get(entry.success_flag) is False:
        ok = False
    return Outcome(ok=ok, status=upstream.status_code, result=result,
                   retry_after=upstream.response.headers.get("retry-after"))


def failure_message(connector_id: str, action_id: str, outcome: Outcome) -> str:
    detail = ""
    if isinstance(outcome.result, dict):
        for key in ("message", "error_description", "error", "detail"):
            value = outcome.result.get(key)
            if isinstance(value, str) and value:
                detail = f": {value[:300]}"
                break
    return (f"The provider answered HTTP {outcome.status} to action "
            f"{connector_id}/{action_id}{detail}")


__all__ = ["Action", "ActionsError", "Call", "ConnectorActions", "Outcome", "Param", "catalog",
           "describe", "execute", "failure_message", "find", "for_connector", "parse_file"]

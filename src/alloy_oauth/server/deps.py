"""Dependencies injected into routes: the runtime and the calling account.

The hot routes (`GET /connections/{id}/token`, the proxy) are plain Starlette routes (see
`hot_route`) and call `get_runtime()`, `bearer_key()` and `query_flag()` themselves: FastAPI's
routing through included routers and its solving of declared parameters cost more than the
API-key check and the database read together (`bench/run.py` shows the difference in server
CPU per request).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response
from starlette.routing import Route

from alloy_oauth.accounts import Principal, authenticate
from alloy_oauth.errors import ServiceError, Unauthorized
from alloy_oauth.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    # async: a plain def would cost a thread-pool hop on every request.
    runtime: Runtime = request.app.state.runtime
    return runtime


def bearer_key(request: Request) -> str:
    """The API key of `Authorization: Bearer <key>`, not yet checked."""
    # The header read directly: a declared Header() parameter costs a validation per request.
    authorization = request.headers.get("authorization")
    if not authorization:
        raise Unauthorized("Missing API key: send it as 'Authorization: Bearer <API key>'.",
                           code="missing_api_key")
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("Malformed Authorization header: use 'Bearer <API key>'.",
                           code="invalid_api_key")
    return key.strip()


async def get_principal(request: Request) -> Principal:
    return await authenticate(request.app.state.runtime.reads, bearer_key(request))


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def query_flag(request: Request, name: str) -> bool:
    """A boolean query parameter (absent: false), spelled as FastAPI would accept it."""
    value = request.query_params.get(name)
    if value is None or value.lower() in _FALSE:
        return False
    if value.lower() in _TRUE:
        return True
    raise ServiceError(f"query.{name}: Input should be a valid boolean (true or false), "
                       f"not '{value[:40]}'.", code="validation_error", status=422)


def flag_parameter(name: str, description: str) -> dict[str, object]:
    """The OpenAPI description of a `query_flag` parameter."""
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "boolean", "default": False}}


def path_parameter(name: str, description: str) -> dict[str, object]:
    """The OpenAPI description of a path parameter a hot route reads itself."""
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string"}}


def hot_route(router: APIRouter, path: str, endpoint: Callable[[Request], Awaitable[Response]],
              methods: Sequence[str], **documentation: Any) -> Route:
    """Serve `endpoint(request)` at `path` from a plain Starlette route, which the app puts ahead
    of FastAPI's routing (`create_app`), and declare it on `router` for the OpenAPI document
    only: the declaration is never reached for `methods`, the route answers first."""
    for method in methods:  # one operation each, so each has its own OpenAPI operation id
        name = endpoint.__name__ + (f"_{method.lower()}" if len(methods) > 1 else "")
        router.add_api_route(path, endpoint, methods=[method], response_class=Response,
                             name=name, **documentation)
    return Route(path, endpoint, methods=list(methods))


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]

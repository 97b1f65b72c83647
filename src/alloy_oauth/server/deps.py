"""Dependencies injected into routes: the runtime and the calling account."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from alloy_oauth.accounts import Principal, authenticate
from alloy_oauth.errors import Unauthorized
from alloy_oauth.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    # async: a plain def would cost a thread-pool hop on every request.
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_principal(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    if not authorization:
        raise Unauthorized("Missing API key: send it as 'Authorization: Bearer <API key>'.",
                           code="missing_api_key")
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("Malformed Authorization header: use 'Bearer <API key>'.",
                           code="invalid_api_key")
    return await authenticate(request.app.state.runtime.sessions, key.strip())


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]

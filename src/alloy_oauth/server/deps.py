"""Dependencies injected into routes: the runtime and the calling account."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from alloy_oauth.accounts import Principal, authenticate
from alloy_oauth.errors import Unauthorized
from alloy_oauth.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    # async: a plain def would cost a thread-pool hop on every request.
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_principal(request: Request) -> Principal:
    # The header read directly: a declared Header() parameter costs a validation per request.
    authorization = request.headers.get("authorization")
    if not authorization:
        raise Unauthorized("Missing API key: send it as 'Authorization: Bearer <API key>'.",
                           code="missing_api_key")
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("Malformed Authorization header: use 'Bearer <API key>'.",
                           code="invalid_api_key")
    return await authenticate(request.app.state.runtime.reads, key.strip())


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]

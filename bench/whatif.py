"""What-if variants of the server for `bench.run --what-if`: what the hot path would cost
without one or more of its per-request costs. For measuring only: these caches ignore
changes made by other processes, so they are not how the server should run.

ALLOY_BENCH_WHATIF (comma-separated):
  async-deps    the runtime dependency as `async def` (no thread-pool hop per request)
  auth-cache    API keys looked up once per process
  conn-cache    connections read once per process
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request

from alloy_oauth.runtime import Runtime
from alloy_oauth.server import deps

WHAT = set(filter(None, os.environ.get("ALLOY_BENCH_WHATIF", "").split(",")))

if "async-deps" in WHAT:  # before the routes import RuntimeDep
    async def _runtime(request: Request) -> Runtime:
        runtime: Runtime = request.app.state.runtime
        return runtime

    setattr(deps, "RuntimeDep", Annotated[Runtime, Depends(_runtime)])  # noqa: B010

from alloy_oauth import connections  # noqa: E402
from alloy_oauth.server.app import app_from_env as _real_factory  # noqa: E402

if "auth-cache" in WHAT:
    _keys: dict[str, Any] = {}
    _authenticate = getattr(deps, "authenticate")  # noqa: B009

    async def _cached_authenticate(sessions: Any, key: str) -> Any:
        if key not in _keys:
            _keys[key] = await _authenticate(sessions, key)
        return _keys[key]

    setattr(deps, "authenticate", _cached_authenticate)  # noqa: B010

if "conn-cache" in WHAT:
    _rows: dict[str, Any] = {}
    _get = connections.get

    async def _cached_get(rt: Runtime, account_id: str, connection_id: str) -> Any:
        if connection_id not in _rows:
            _rows[connection_id] = await _get(rt, account_id, connection_id)
        return _rows[connection_id]

    setattr(connections, "get", _cached_get)  # noqa: B010


def app_from_env() -> FastAPI:
    return _real_factory()

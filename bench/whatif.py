"""What-if variants of the server for `bench.run --what-if`: what the hot path would cost
without one or more of its per-request costs. For measuring only: these caches ignore
changes made by other processes, so they are not how the server should run.

ALLOY_BENCH_WHATIF (comma-separated):
  auth-cache    API keys looked up once per process
  conn-cache    connections read once per process
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI

from alloy_oauth import connections
from alloy_oauth.runtime import Runtime
from alloy_oauth.server import deps
from alloy_oauth.server.app import app_from_env as _real_factory

WHAT = set(filter(None, os.environ.get("ALLOY_BENCH_WHATIF", "").split(",")))

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

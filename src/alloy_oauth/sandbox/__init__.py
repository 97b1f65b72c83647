"""The built-in sandbox OAuth 2.0 provider: the whole connection flow, offline.

Mount `create_sandbox_router(sessions, config)` under `/sandbox`; its endpoints are
`/oauth/authorize`, `/oauth/token`, `/oauth/revoke` and the API `/api/me` (and `/api/echo`).
Its tables (`sandbox_*`) are in `alloy_oauth.sandbox.models`.
"""

from alloy_oauth.sandbox.config import SandboxConfig, utc_now
from alloy_oauth.sandbox.router import create_sandbox_router

__all__ = ["SandboxConfig", "create_sandbox_router", "utc_now"]

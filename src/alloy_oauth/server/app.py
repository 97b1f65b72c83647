"""The FastAPI application: routes, error format, version header, sandbox."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from alloy_oauth.connections.background import BackgroundWork
from alloy_oauth.frontend.router import router as frontend_router
from alloy_oauth.logsafe import install_redaction
from alloy_oauth.providers import CatalogError
from alloy_oauth.runtime import Runtime, build_runtime
from alloy_oauth.sandbox import SandboxConfig, create_sandbox_router
from alloy_oauth.server import errors
from alloy_oauth.server.middleware import ApiVersionMiddleware
from alloy_oauth.server.routes import account, connections, connectors, strategy, users
from alloy_oauth.server.routes import actions as action_routes
from alloy_oauth.server.routes import auth_configs as auth_config_routes
from alloy_oauth.server.routes import proxy as proxy_routes
from alloy_oauth.server.routes import webhooks as webhook_routes
from alloy_oauth.settings import Settings, load_settings
from alloy_oauth.store.db import migrate_async

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, run_migrations: bool = False,
               background: bool = False) -> FastAPI:
    """The server app. With `run_migrations`, pending migrations are applied at start;
    `background` is the default for the token refresher and webhook delivery (settings win)."""
    settings = settings or load_settings()
    problems = settings.problems()
    if problems:
        raise SystemExit("alloy-oauth cannot start:\n  " + "\n  ".join(problems))
    try:
        runtime = build_runtime(settings)
    except CatalogError as exc:  # names the file, entry and field
        raise SystemExit(f"alloy-oauth cannot start:\n  {exc}") from None
    install_redaction()  # request logs carry codes, states and link tokens in query strings

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if run_migrations:
            await migrate_async(settings.database_url)
        work = BackgroundWork(runtime, default=background)
        work.start()
        yield
        await work.stop()
        await runtime.aclose()

    app = FastAPI(
        title="alloy-oauth",
        version="0.1.0",
        description="Self-hostable OAuth connection service. Every API request carries "
                    "`Authorization: Bearer <API key>`.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.runtime = runtime
    errors.install(app)
    app.add_middleware(ApiVersionMiddleware)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # The hot paths first: a request is matched against the routes in this order.
    for module in (connections, proxy_routes, connectors, strategy, users, account,
                   webhook_routes, action_routes):
        app.include_router(module.router)
    app.include_router(auth_config_routes.router)
    # The two hot paths are plain Starlette routes, matched before anything else: FastAPI's
    # routing through included routers and its parameter solving would cost more than the
    # work itself (server/deps.py, hot_route).
    app.router.routes[:0] = [*connections.hot_routes, *proxy_routes.hot_routes]
    app.include_router(frontend_router)  # /sdk/... and the hosted /connect/... pages
    if runtime.sandbox_enabled:
        app.include_router(_sandbox_router(runtime), prefix="/sandbox",
                           include_in_schema=False)
    return app


def _sandbox_router(runtime: Runtime):  # type: ignore[no-untyped-def]
    creds = runtime.sandbox_credentials
    return create_sandbox_router(runtime.sessions, SandboxConfig(
        client_id=creds.client_id, client_secret=creds.client_secret,
        redirect_uris=(runtime.callback_url,),
        access_token_ttl=runtime.settings.sandbox_token_ttl,
    ))


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` (each worker process builds its own app)."""
    return create_app(background=True)

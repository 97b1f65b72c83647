"""The `alloy-oauth` command line: serve, demo, keys, connect."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from fastapi import FastAPI

from alloy_oauth import accounts
from alloy_oauth.crypto import new_key
from alloy_oauth.errors import ServiceError
from alloy_oauth.settings import load_settings
from alloy_oauth.store.db import create_engine, migrate, sessionmaker

app = typer.Typer(help="alloy-oauth: a self-hostable OAuth connection service.",
                  no_args_is_help=True, add_completion=False)
keys_app = typer.Typer(help="API keys and encryption keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _migrate() -> str:
    settings = load_settings()
    migrate(settings.database_url)
    return settings.database_url


async def _with_sessions(url: str, name: str, account: str | None) -> tuple[str, str]:
    engine = create_engine(url)
    try:
        sessions = sessionmaker(engine)
        if account:
            return account, await accounts.add_key(sessions, account, name)
        return await accounts.create_account_with_key(sessions, name)
    finally:
        await engine.dispose()


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A name for the key (and its new account).")],
    account: Annotated[str | None, typer.Option(help="Add the key to this account id "
                                                     "instead of a new account.")] = None,
) -> None:
    """Create an API key. The key is printed once, alone on standard output."""
    url = _migrate()
    account_id, key = asyncio.run(_with_sessions(url, name, account))
    _err(f"account: {account_id} (the key is shown only now; it is stored hashed)")
    typer.echo(key)


async def _keys(url: str, account: str | None, revoke: str | None) -> list[str]:
    engine = create_engine(url)
    try:
        sessions = sessionmaker(engine)
        if revoke:
            found = [await accounts.revoke_key(sessions, revoke)]
        else:
            found = await accounts.list_keys(sessions, account)
    finally:
        await engine.dispose()
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    return [f"{k.id}  {k.prefix}...  account={k.account_id}  name={k.name}  "
            f"created={k.created_at:{stamp}}  "
            f"{f'revoked={k.revoked_at:{stamp}}' if k.revoked_at else 'active'}"
            for k in found]


@keys_app.command("list")
def keys_list(
    account: Annotated[str | None, typer.Option(help="Only this account's keys.")] = None,
) -> None:
    """List API keys: id, prefix, account, name, created, active or revoked (never the key)."""
    for line in asyncio.run(_keys(_migrate(), account, None)):
        typer.echo(line)


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key's id (key_...) or its prefix "
                                            "(the first 10 characters, as `keys list` shows).")],
) -> None:
    """Revoke an API key: every server process refuses it from now on."""
    try:
        [line] = asyncio.run(_keys(_migrate(), None, key))
    except ServiceError as exc:
        _err(f"error: {exc.message}")
        raise typer.Exit(1) from None
    typer.echo(line)


@keys_app.command("encryption-key")
def keys_encryption_key(
    kid: Annotated[str | None, typer.Option(help="Key id (default: random).")] = None,
) -> None:
    """Print a new key for ALLOY_ENCRYPTION_KEYS (`<key id>:<base64 of 32 bytes>`)."""
    typer.echo(new_key(kid))


@app.command("migrate")
def migrate_db() -> None:
    """Apply pending database migrations (serve does this too)."""
    _err(f"migrated {_migrate()}")


def _log_config() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Run the server (applies pending migrations first)."""
    settings = load_settings()
    problems = settings.problems()
    if problems:
        _err("alloy-oauth cannot start:\n  " + "\n  ".join(problems))
        raise typer.Exit(2)
    migrate(settings.database_url)
    _log_config()
    uvicorn.run("alloy_oauth.server.app:app_from_env", factory=True, host=host, port=port,
                workers=workers, log_level="info", proxy_headers=True)


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Server port.")] = 8000,
    app_port: Annotated[int, typer.Option(help="Example app port.")] = 3000,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
) -> None:
    """Server, sandbox provider and example app together, with a development key."""
    from alloy_oauth.example import create_app as create_example
    from alloy_oauth.server.app import create_app

    os.environ.setdefault("ALLOY_PUBLIC_URL", f"http://localhost:{port}")
    settings = load_settings()
    if settings.is_production:
        _err("the demo runs in development only (unset ALLOY_ENV=production)")
        raise typer.Exit(2)
    migrate(settings.database_url)
    _, key = asyncio.run(_demo_account(settings.database_url))
    server = create_app(settings, background=True)  # the refresher and webhook delivery
    runtime = server.state.runtime
    configured = [c.id for c in runtime.catalog.values()
                  if c.is_oauth and runtime.client_credentials(c) is not None]
    example = create_example(
        alloy_base_url=f"http://127.0.0.1:{port}", api_key=key,
        public_url=f"http://localhost:{app_port}", db_path=Path("example-app.db"),
        session_secret=secrets.token_urlsafe(32), connectors=configured,
    )
    _log_config()
    banner = f"""
alloy-oauth demo is running.

  Example app   http://localhost:{app_port}      <- open this and click "Connect Sandbox"
  Server        {settings.public_url}      (API docs at /docs)
  Sandbox       {settings.public_url}/sandbox  (a local OAuth provider)

A development API key for this run (also usable with curl):
  export ALLOY_API_KEY={key}
  export ALLOY_BASE_URL={settings.public_url}
Press Ctrl+C to stop.
"""
    asyncio.run(_serve_both(server, example, host, port, app_port, banner))


async def _demo_account(url: str) -> tuple[str, str]:
    engine = create_engine(url)
    try:
        sessions = sessionmaker(engine)
        existing = await accounts.find_account(sessions, "demo")
        if existing:
            return existing, await accounts.add_key(sessions, existing, "demo")
        return await accounts.create_account_with_key(sessions, "demo")
    finally:
        await engine.dispose()


async def _serve_both(server: FastAPI, example: FastAPI, host: str, port: int,
                      app_port: int, banner: str) -> None:
    """Both apps in one event loop; the banner once both listen."""
    servers = [uvicorn.Server(uvicorn.Config(a, host=host, port=p, log_level="warning"))
               for a, p in ((server, port), (example, app_port))]
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    while not all(s.started for s in servers):
        if any(t.done() for t in tasks):  # one could not start (port in use?)
            for s in servers:
                s.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)
            raise typer.Exit(1)
        await asyncio.sleep(0.05)
    typer.echo(banner)
    await asyncio.gather(*tasks)


@app.command()
def connect(
    connector: Annotated[str, typer.Argument(help="Connector id, e.g. notion or sandbox.")],
    env_file: Annotated[Path | None, typer.Option("--env-file",
                                                  help="Also write CONNECTION_ID there.")] = None,
    user_id: Annotated[str | None, typer.Option(help="The user to connect for.")] = None,
    no_browser: Annotated[bool, typer.Option("--no-browser",
                                             help="Only print the URL to open.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the browser.")] = 300.0,
) -> None:
    """Run the OAuth flow from a terminal and print CONNECTION_ID=..."""
    from alloy_oauth.client import AlloyError, AlloyOAuthFlow
    from alloy_oauth.client.loopback import connect_via_loopback, write_env_file

    try:
        with AlloyOAuthFlow() as flow:
            conn = connect_via_loopback(
                flow, connector, user_id=user_id, open_browser=not no_browser, timeout=timeout,
                on_url=lambda url: _err(f"Open this URL to connect {connector}:\n  {url}"),
            )
    except AlloyError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(1) from None
    typer.echo(f"CONNECTION_ID={conn.connection_id}")
    if env_file is not None:
        write_env_file(env_file, "CONNECTION_ID", conn.connection_id)
        _err(f"wrote CONNECTION_ID to {env_file}")


def main() -> None:
    app(prog_name="alloy-oauth")


if __name__ == "__main__":
    main()

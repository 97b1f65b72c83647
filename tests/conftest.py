"""Fixtures: a real alloy-oauth server on 127.0.0.1 over a fresh SQLite file, per test."""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from alloy_oauth.accounts import create_account_with_key
from alloy_oauth.crypto import new_key
from alloy_oauth.server.app import create_app
from alloy_oauth.settings import Settings
from alloy_oauth.store.db import create_engine, migrate, sessionmaker
from tests.support.aio import run_coro
from tests.support.postgres import PostgresCluster, start_postgres
from tests.support.servers import free_port, run_asgi

StartAlloy = Callable[..., contextlib.AbstractContextManager["Alloy"]]


@dataclass
class Alloy:
    """A running server and one account's API key."""

    base_url: str
    api_key: str = field(repr=False)
    account_id: str
    settings: Settings
    db_path: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "x-api-version": "2025-09"}

    def api(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=20)

    def new_account(self, name: str = "other") -> tuple[str, str]:
        async def make() -> tuple[str, str]:
            engine = create_engine(self.settings.database_url)
            try:
                return await create_account_with_key(sessionmaker(engine), name)
            finally:
                await engine.dispose()
        return run_coro(make)

    def rows(self, table: str, where: str = "1=1") -> int:
        with contextlib.closing(sqlite3.connect(self.db_path)) as db:
            count: int = db.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0]
            return count


@pytest.fixture
def start_alloy(tmp_path: Path) -> Iterator[StartAlloy]:
    """`with start_alloy(providers={...}, connector_env={...}, **settings) as alloy:`."""
    @contextlib.contextmanager
    def start(*, providers: dict[str, Any] | None = None,
              connector_env: dict[str, str] | None = None, **overrides: Any) -> Iterator[Alloy]:
        public_url = overrides.pop("public_url", None)
        port = int(public_url.rsplit(":", 1)[1]) if public_url else free_port()
        name = secrets.token_hex(4)
        database_url = overrides.pop("database_url", None)
        db_path = (Path(database_url.split("///", 1)[1])
                   if database_url and database_url.startswith("sqlite")
                   else tmp_path / f"alloy-{name}.db")  # unused with PostgreSQL
        providers_file = None
        if providers:
            providers_file = tmp_path / f"providers-{name}.yaml"
            providers_file.write_text(yaml.safe_dump(providers))
        settings = Settings(
            database_url=database_url or f"sqlite+aiosqlite:///{db_path}",
            public_url=public_url or f"http://127.0.0.1:{port}",
            encryption_keys=overrides.pop("encryption_keys", new_key("test1")),
            providers_file=str(providers_file) if providers_file else None,
            key_file=str(tmp_path / "dev.key"),
            connector_env=connector_env or {},
            **overrides,
        )
        migrate(settings.database_url)

        async def account() -> tuple[str, str]:
            engine = create_engine(settings.database_url)
            try:
                return await create_account_with_key(sessionmaker(engine), "test")
            finally:
                await engine.dispose()

        account_id, key = run_coro(account)
        with run_asgi(create_app(settings), port=port) as url:
            yield Alloy(base_url=url, api_key=key, account_id=account_id, settings=settings,
                        db_path=db_path)

    yield start


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the run; each test makes its own database in it
    (`postgres.create_database(...)`)."""
    with start_postgres() as cluster:
        yield cluster

"""An alloy-oauth server configured for one provider emulator, for end-to-end connector tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

import httpx2

from alloy_oauth.testing import ProviderEmulator
from tests.conftest import Alloy, StartAlloy

E = TypeVar("E", bound=ProviderEmulator)


@contextlib.asynccontextmanager
async def alloy_with_emulator(
        start_alloy: StartAlloy, emulator: E, connector_env: dict[str, str] | None = None,
) -> AsyncIterator[tuple[E, Alloy, httpx2.AsyncClient]]:
    """Start `emulator`, then alloy with its catalog entry and OAuth app (`connector_env`
    overrides the app's variables), and open an API client: `(emulator, alloy, api)`."""
    env = {**emulator.connector_env(), **(connector_env or {})}
    with emulator, start_alloy(providers=emulator.providers_entry(), connector_env=env) as alloy:
        async with alloy.api() as api:
            yield emulator, alloy, api

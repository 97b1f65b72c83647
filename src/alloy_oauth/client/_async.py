"""The asyncio client: the same methods as AlloyOAuthFlow, as coroutines."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx2

from . import _core
from ._models import AccessToken, Connection, DeletedConnection, OAuthStart

T = TypeVar("T")


class AsyncAlloyOAuthFlow:
    """The asyncio twin of AlloyOAuthFlow: the same settings, methods as coroutines.

    Use it with ``async with``, or ``await flow.aclose()`` when done.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        api_version: str | None = None,
        timeout: float | None = 30.0,
        *,
        max_retries: int = 3,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = _core.resolve_settings(
            api_key, base_url, api_version, timeout, max_retries
        )
        self._client = httpx2.AsyncClient(
            base_url=self._settings.base_url,
            headers=_core.default_headers(self._settings),
            timeout=timeout,
            transport=transport,
        )
        # Replaceable so that tests (and callers with their own scheduler) need not wait.
        self._sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    @property
    def base_url(self) -> str:
        return self._settings.base_url

    @property
    def api_version(self) -> str:
        return self._settings.api_version

    def __repr__(self) -> str:
        return _core.flow_repr(type(self).__name__, self._settings)

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _run(self, op: _core.Operation[T]) -> T:
        attempt = 0
        while True:
            try:
                response = await self._client.request(
                    op.method, op.path, json=op.json, params=op.params
                )
            except httpx2.TransportError as exc:
                delay = _core.retry_delay_for_error(
                    op.method, exc, attempt, self._settings.max_retries
                )
                if delay is None:
                    raise _core.transport_error(self._settings, exc) from None
            else:
                if response.is_success:
                    return op.parse(_core.read_success(response))
                delay = _core.retry_delay_for_response(
                    op.method, response, attempt, self._settings.max_retries
                )
                if delay is None:
                    raise _core.error_from_response(response, op.path)
            await self._sleep(delay)
            attempt += 1

    async def initiate_oauth_flow(
        self,
        connector_id: str,
        redirect_uri: str,
        *,
        user_id: str | None = None,
        state: str | None = None,
        scopes: Sequence[str] | str | None = None,
        data: Mapping[str, Any] | None = None,
        auth_config_id: str | None = None,
    ) -> OAuthStart:
        """Start a flow: returns the URL to send the user to and the state to keep.

        Without ``state`` a random one is made and sent; compare it with the callback's.
        """
        return await self._run(
            _core.initiate_oauth_flow(
                connector_id,
                redirect_uri,
                user_id=user_id,
                state=state,
                scopes=scopes,
                data=data,
                auth_config_id=auth_config_id,
            )
        )

    async def handle_oauth_callback(
        self, connector_id: str, code: str, state: str | None = None
    ) -> Connection:
        """Exchange the one-time ``code`` of the callback for the connection."""
        return await self._run(_core.handle_oauth_callback(connector_id, code, state))

    async def create_credential(
        self,
        connector_id: str,
        credential_type: str,
        data: Mapping[str, Any],
        *,
        user_id: str | None = None,
    ) -> Connection:
        """Store a non-OAuth credential (``apiKey``, ``basic``, ``bearer``) at once."""
        return await self._run(
            _core.create_credential(connector_id, credential_type, data, user_id=user_id)
        )

    async def get_connection(self, connection_id: str) -> dict[str, Any]:
        """A connection's details (never its secrets)."""
        return await self._run(_core.get_connection(connection_id))

    async def list_connections(
        self, *, user_id: str | None = None, connector_id: str | None = None
    ) -> list[dict[str, Any]]:
        return await self._run(_core.list_connections(user_id=user_id, connector_id=connector_id))

    async def get_access_token(
        self, connection_id: str, *, force_refresh: bool = False
    ) -> AccessToken:
        """A valid access token, refreshed by the server first when it is about to expire."""
        return await self._run(_core.get_access_token(connection_id, force_refresh=force_refresh))

    async def delete_connection(self, connection_id: str) -> DeletedConnection:
        """Revoke (where the provider can) and delete a connection; says whether the provider
        revoked the grant (``revoked`` True, False with ``revocation_error``, or None)."""
        return await self._run(_core.delete_connection(connection_id))

    async def list_connectors(self) -> list[dict[str, Any]]:
        return await self._run(_core.list_connectors())

    async def get_connector(self, connector_id: str) -> dict[str, Any]:
        return await self._run(_core.get_connector(connector_id))

    async def create_user(self, username: str, full_name: str | None = None) -> str:
        """Create a user; returns its userId."""
        return await self._run(_core.create_user(username, full_name))

    async def get_user_token(self, user_id: str) -> str:
        """A short-lived JWT for the frontend SDK's ``alloy.authenticate()``."""
        return await self._run(_core.get_user_token(user_id))

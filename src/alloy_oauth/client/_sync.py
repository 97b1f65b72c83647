"""The blocking client."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx2

from . import _core
from ._models import AccessToken, Connection, DeletedConnection, OAuthStart

T = TypeVar("T")


class AlloyOAuthFlow:
    """Client of an alloy-oauth server: run the OAuth flow and use the connections it makes.

    Settings left out come from ALLOY_API_KEY, ALLOY_BASE_URL (default http://localhost:8000)
    and ALLOY_API_VERSION (default 2025-09). Use it as a context manager, or call close().
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        api_version: str | None = None,
        timeout: float | None = 30.0,
        *,
        max_retries: int = 3,
        transport: httpx2.BaseTransport | None = None,
    ) -> None:
        self._settings = _core.resolve_settings(
            api_key, base_url, api_version, timeout, max_retries
        )
        self._client = httpx2.Client(
            base_url=self._settings.base_url,
            headers=_core.default_headers(self._settings),
            timeout=timeout,
            transport=transport,
        )
        # Replaceable so that tests (and callers with their own scheduler) need not wait.
        self._sleep: Callable[[float], None] = time.sleep

    @property
    def base_url(self) -> str:
        return self._settings.base_url

    @property
    def api_version(self) -> str:
        return self._settings.api_version

    def __repr__(self) -> str:
        return _core.flow_repr(type(self).__name__, self._settings)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, op: _core.Operation[T]) -> T:
        attempt = 0
        while True:
            try:
                response = self._client.request(op.method, op.path, json=op.json, params=op.params)
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
            self._sleep(delay)
            attempt += 1

    def initiate_oauth_flow(
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
        return self._run(
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

    def handle_oauth_callback(
        self, connector_id: str, code: str, state: str | None = None
    ) -> Connection:
        """Exchange the one-time ``code`` of the callback for the connection."""
        return self._run(_core.handle_oauth_callback(connector_id, code, state))

    def create_credential(
        self,
        connector_id: str,
        credential_type: str,
        data: Mapping[str, Any],
        *,
        user_id: str | None = None,
    ) -> Connection:
        """Store a non-OAuth credential (``apiKey``, ``basic``, ``bearer``) at once."""
        return self._run(
            _core.create_credential(connector_id, credential_type, data, user_id=user_id)
        )

    def get_connection(self, connection_id: str) -> dict[str, Any]:
        """A connection's details (never its secrets)."""
        return self._run(_core.get_connection(connection_id))

    def list_connections(
        self, *, user_id: str | None = None, connector_id: str | None = None
    ) -> list[dict[str, Any]]:
        return self._run(_core.list_connections(user_id=user_id, connector_id=connector_id))

    def get_access_token(self, connection_id: str, *, force_refresh: bool = False) -> AccessToken:
        """A valid access token, refreshed by the server first when it is about to expire."""
        return self._run(_core.get_access_token(connection_id, force_refresh=force_refresh))

    def delete_connection(self, connection_id: str) -> DeletedConnection:
        """Revoke (where the provider can) and delete a connection; says whether the provider
        revoked the grant (``revoked`` True, False with ``revocation_error``, or None)."""
        return self._run(_core.delete_connection(connection_id))

    def list_connectors(self) -> list[dict[str, Any]]:
        return self._run(_core.list_connectors())

    def get_connector(self, connector_id: str) -> dict[str, Any]:
        return self._run(_core.get_connector(connector_id))

    def create_user(self, username: str, full_name: str | None = None) -> str:
        """Create a user; returns its userId."""
        return self._run(_core.create_user(username, full_name))

    def get_user_token(self, user_id: str) -> str:
        """A short-lived JWT for the frontend SDK's ``alloy.authenticate()``."""
        return self._run(_core.get_user_token(user_id))

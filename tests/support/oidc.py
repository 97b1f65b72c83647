"""oidc-provider (npm) as a real authorization server for tests: start it, point alloy at it."""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

from .servers import free_port, run_process

OIDC_DIR = Path(__file__).resolve().parent.parent / "oidc"
SERVER_SCRIPT = OIDC_DIR / "server.mjs"


@dataclass(frozen=True)
class OidcProvider:
    """A running oidc-provider with one registered client."""

    issuer: str
    authorization_url: str
    token_url: str
    revocation_url: str
    userinfo_url: str
    client_id: str
    client_secret: str = field(repr=False)
    redirect_uris: tuple[str, ...] = ()

    def stats(self) -> dict[str, Any]:
        """Counters since start or the last reset.

        Keys: token_requests / token_success / token_errors ({grant_type: n}),
        token_error_codes ({"invalid_grant": n}), token_client_auth ({"basic"|"body"|"none": n}),
        revocation_requests, revocations (answered 200), userinfo_requests.
        """
        response = httpx2.get(f"{self.issuer}/__test/stats", timeout=5)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def reset_stats(self) -> None:
        httpx2.post(f"{self.issuer}/__test/reset", timeout=5).raise_for_status()

    async def astats(self) -> dict[str, Any]:
        """`stats()` without blocking the running event loop."""
        async with httpx2.AsyncClient(timeout=5) as client:
            response = await client.get(f"{self.issuer}/__test/stats")
            response.raise_for_status()
            data: dict[str, Any] = response.json()
            return data

    async def areset_stats(self) -> None:
        async with httpx2.AsyncClient(timeout=5) as client:
            (await client.post(f"{self.issuer}/__test/reset")).raise_for_status()


def _require_node() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed; the OIDC test provider needs Node.js 20+")
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError(
            f"{OIDC_DIR}/node_modules is missing: run scripts/setup.sh test "
            "(it runs `npm ci` in tests/oidc)"
        )
    return node


@contextlib.contextmanager
def start_oidc_provider(
    *,
    redirect_uris: list[str],
    client_id: str = "alloy-test",
    client_secret: str | None = None,
    token_endpoint_auth_method: str = "client_secret_basic",
    access_token_ttl: int = 3600,
    refresh_token_ttl: int = 14 * 24 * 3600,
) -> Iterator[OidcProvider]:
    """Run tests/oidc/server.mjs with one client; yield its endpoints and credentials.

    Tokens come with a refresh token only for scope `offline_access` and `prompt=consent`.
    """
    node = _require_node()
    secret = client_secret if client_secret is not None else secrets.token_urlsafe(24)
    config = {
        "port": 0,
        "clients": [
            {
                "client_id": client_id,
                "client_secret": secret,
                "redirect_uris": list(redirect_uris),
                "token_endpoint_auth_method": token_endpoint_auth_method,
            }
        ],
        "accessTokenTtl": access_token_ttl,
        "refreshTokenTtl": refresh_token_ttl,
    }
    with tempfile.TemporaryDirectory(prefix="alloy-oidc-") as tmp:
        config_path = Path(tmp) / "config.json"
        config_path.write_text(json.dumps(config))
        with run_process(
            [node, str(SERVER_SCRIPT), str(config_path)],
            env={"NODE_NO_WARNINGS": "1"},
            ready_line_prefix="READY ",
            timeout=20,
            cwd=OIDC_DIR,
        ) as proc:
            issuer = proc.ready_line.split(" ", 1)[1].strip()
            discovery = httpx2.get(f"{issuer}/.well-known/openid-configuration", timeout=5)
            discovery.raise_for_status()
            meta = discovery.json()
            yield OidcProvider(
                issuer=issuer,
                authorization_url=meta["authorization_endpoint"],
                token_url=meta["token_endpoint"],
                revocation_url=meta["revocation_endpoint"],
                userinfo_url=meta["userinfo_endpoint"],
                client_id=client_id,
                client_secret=secret,
                redirect_uris=tuple(redirect_uris),
            )


def provider_yaml_entry(p: OidcProvider, connector_id: str = "oidc") -> dict[str, Any]:
    """The connector entry for alloy-oauth's ALLOY_PROVIDERS_FILE that points at `p`."""
    return {
        connector_id: {
            "name": "OIDC test provider",
            "authorization_url": p.authorization_url,
            "token_url": p.token_url,
            "revocation_url": p.revocation_url,
            "api_base_url": p.issuer,
            "scopes": ["openid", "email", "offline_access"],
            "authorize_params": {"prompt": "consent"},
        }
    }


@contextlib.contextmanager
def alloy_with_oidc(start_alloy: Callable[..., contextlib.AbstractContextManager[Any]],
                    **overrides: Any) -> Iterator[tuple[Any, OidcProvider]]:
    """An alloy-oauth server (from the `start_alloy` fixture) whose connector `oidc` is a real
    oidc-provider, configured through the connector's environment variables."""
    public = f"http://127.0.0.1:{free_port()}"
    with start_oidc_provider(redirect_uris=[f"{public}/api/strategy/callback"]) as oidc:
        env = {"ALLOY_CONNECTOR_OIDC_CLIENT_ID": oidc.client_id,
               "ALLOY_CONNECTOR_OIDC_CLIENT_SECRET": oidc.client_secret}
        with start_alloy(providers=provider_yaml_entry(oidc), connector_env=env,
                         public_url=public, **overrides) as alloy:
            yield alloy, oidc

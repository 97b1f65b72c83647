"""Everything a request needs, built once per process from the settings."""

from __future__ import annotations

from dataclasses import dataclass

import httpx2
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from alloy_oauth.auth_configs.models import AuthConfig, secret_context
from alloy_oauth.crypto import SecretBox, load_or_create_key_file, parse_keys
from alloy_oauth.oauth import ClientCredentials
from alloy_oauth.providers import Connector, load_catalog
from alloy_oauth.settings import Settings
from alloy_oauth.store.db import create_engine, sessionmaker
from alloy_oauth.store.models import Connection
from alloy_oauth.store.reads import Reader

SANDBOX_ID = "sandbox"
SANDBOX_CLIENT_ID = "alloy-sandbox"
# The connection metadata key naming the auth config a connection was made with.
AUTH_CONFIG_KEY = "authConfigId"


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    reads: Reader
    box: SecretBox
    catalog: dict[str, Connector]
    transport: httpx2.AsyncBaseTransport

    @property
    def callback_url(self) -> str:
        """The one redirect URI to register at every provider."""
        return f"{self.settings.public_url}/api/strategy/callback"

    @property
    def sandbox_enabled(self) -> bool:
        return not self.settings.is_production

    @property
    def sandbox_credentials(self) -> ClientCredentials:
        return ClientCredentials(SANDBOX_CLIENT_ID, self.box.derive("sandbox-client-secret"))

    def client_credentials(self, connector: Connector) -> ClientCredentials | None:
        """The deployment's OAuth app for a connector, if configured."""
        if connector.id == SANDBOX_ID and self.sandbox_enabled:
            return self.sandbox_credentials
        client_id = self.settings.connector_setting(connector.id, "CLIENT_ID")
        secret = self.settings.connector_setting(connector.id, "CLIENT_SECRET")
        if client_id and secret:
            return ClientCredentials(client_id, secret)
        return None

    async def auth_config(self, connector: Connector, *, account_id: str, auth_config_id: str,
                          db: AsyncSession | None = None) -> AuthConfig | None:
        """The account's auth config for this connector (another account's is None).

        `db`: read inside that session (a caller holding a lock), else in a new one.
        """
        if db is not None:
            row = await db.get(AuthConfig, auth_config_id)
        else:
            async with self.sessions() as own:
                row = await own.get(AuthConfig, auth_config_id)
        if row is None or row.account_id != account_id or row.connector_id != connector.id:
            return None
        return row

    async def oauth_app(self, connector: Connector, *, account_id: str,
                        auth_config_id: str | None,
                        db: AsyncSession | None = None) -> ClientCredentials | None:
        """The OAuth app a flow or connection uses: its auth config, else the deployment's."""
        if not auth_config_id:
            return self.client_credentials(connector)
        row = await self.auth_config(connector, account_id=account_id,
                                     auth_config_id=auth_config_id, db=db)
        if row is None:
            return None
        return ClientCredentials(row.client_id, self.box.decrypt(row.client_secret_enc,
                                                                 secret_context(row.id)))

    async def connection_credentials(self, connector: Connector, conn: Connection,
                                     db: AsyncSession | None = None) -> ClientCredentials | None:
        """The OAuth app a stored connection was made with (for refresh and revocation)."""
        auth_config_id = (conn.metadata_ or {}).get(AUTH_CONFIG_KEY)
        return await self.oauth_app(connector, account_id=conn.account_id,
                                    auth_config_id=auth_config_id
                                    if isinstance(auth_config_id, str) else None, db=db)

    def default_scopes(self, connector: Connector) -> list[str]:
        configured = self.settings.connector_setting(connector.id, "SCOPES")
        if configured:
            return [s for s in configured.replace(",", " ").split() if s]
        return list(connector.scopes)

    async def aclose(self) -> None:
        await self.transport.aclose()
        await self.reads.aclose()
        await self.engine.dispose()


def encryption_box(settings: Settings) -> SecretBox:
    if settings.encryption_keys is not None and settings.encryption_keys.get_secret_value():
        return SecretBox(parse_keys(settings.encryption_keys.get_secret_value()))
    if settings.is_production:
        raise ValueError("ALLOY_ENCRYPTION_KEYS is required in production")
    return SecretBox(parse_keys(load_or_create_key_file(settings.key_file)))


def sandbox_connector(settings: Settings) -> Connector:
    base = f"{settings.public_url}/sandbox"
    return Connector(
        id=SANDBOX_ID,
        name="Sandbox",
        authorization_url=f"{base}/oauth/authorize",
        token_url=f"{base}/oauth/token",
        revocation_url=f"{base}/oauth/revoke",
        api_base_url=f"{base}/api",
        scopes=("profile", "email"),
        docs_url=f"{settings.public_url}/docs",
        local_only=True,
    )


def build_runtime(settings: Settings) -> Runtime:
    extra = {SANDBOX_ID: sandbox_connector(settings)} if not settings.is_production else {}
    catalog = load_catalog(providers_file=settings.providers_file,
                           development=not settings.is_production, extra=extra)
    engine = create_engine(settings.database_url)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=sessionmaker(engine),
        reads=Reader(engine),
        box=encryption_box(settings),
        catalog=catalog,
        transport=httpx2.AsyncHTTPTransport(
            limits=httpx2.Limits(max_connections=200, max_keepalive_connections=50)
        ),
    )

"""The one settings object of the server, read from the environment and a `.env` file."""

from __future__ import annotations

import os
from functools import cached_property
from typing import Literal

from dotenv import dotenv_values
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

API_VERSIONS = ("2025-09", "2025-06", "2024-02", "2023-12")
CURRENT_API_VERSION = API_VERSIONS[0]


class Settings(BaseSettings):
    """Server settings; every field is `ALLOY_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="ALLOY_", env_file=".env", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./alloy-oauth.db"
    public_url: str = "http://localhost:8000"
    env: Literal["development", "production"] = "development"
    encryption_keys: SecretStr | None = None
    # Where development keeps its generated encryption key (shared by every process started here).
    key_file: str = ".alloy-oauth.key"
    allowed_redirect_uris: str = ""
    providers_file: str | None = None
    # Lifetime of the sandbox provider's access tokens: short, so the demo shows a refresh.
    sandbox_token_ttl: int = Field(default=300, ge=1)
    flow_ttl: int = Field(default=600, ge=1)
    code_ttl: int = Field(default=600, ge=1)
    http_timeout: float = Field(default=15.0, gt=0)
    # Background work. None: on under `alloy-oauth serve`, off when the app is built in-process
    # (tests), where a test turns it on with True.
    background_refresh: bool | None = None
    webhook_delivery: bool | None = None
    refresh_interval: float = Field(default=30.0, gt=0)  # background refresher tick, seconds
    refresh_concurrency: int = Field(default=4, ge=1)
    refresh_retry_base: float = Field(default=5.0, gt=0)  # backoff after a temporary failure
    refresh_retry_max: float = Field(default=900.0, gt=0)
    webhook_poll_interval: float = Field(default=1.0, gt=0)
    webhook_retry_base: float = Field(default=10.0, gt=0)
    webhook_max_attempts: int = Field(default=12, ge=1)
    webhook_timeout: float = Field(default=10.0, gt=0)
    # Production: let webhook URLs reach private, loopback and link-local addresses (an internal
    # receiver). Off: only public addresses, checked when set and at every delivery.
    webhook_allow_private: bool = False
    proxy_retries: int = Field(default=2, ge=0)  # on 429/5xx, idempotent methods only
    proxy_max_retry_after: float = Field(default=10.0, ge=0)  # longer waits go to the caller
    # A connector's environment variables, `ALLOY_CONNECTOR_<ID>_...`, kept from the environment.
    connector_env: dict[str, str] = Field(default_factory=dict, exclude=True, repr=False)

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @cached_property
    def redirect_allow_list(self) -> tuple[str, ...]:
        return tuple(u.strip() for u in self.allowed_redirect_uris.split(",") if u.strip())

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    def connector_setting(self, connector_id: str, name: str) -> str | None:
        """`ALLOY_CONNECTOR_<ID>_<NAME>` for a connector, or None."""
        key = f"ALLOY_CONNECTOR_{connector_id.upper().replace('-', '_')}_{name}"
        value = self.connector_env.get(key)
        return value or None

    def problems(self) -> list[str]:
        """What stops the server from starting with these settings."""
        found: list[str] = []
        if self.is_production:
            if self.encryption_keys is None or not self.encryption_keys.get_secret_value():
                found.append(
                    "ALLOY_ENCRYPTION_KEYS is required in production "
                    "(make one with `alloy-oauth keys encryption-key`)."
                )
            if not self.public_url.startswith("https://"):
                found.append("ALLOY_PUBLIC_URL must be an https URL in production.")
        return found


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and `./.env`, with the connector variables collected."""
    env: dict[str, str] = {
        k: v for k, v in dotenv_values(".env").items() if v is not None
    } if os.path.exists(".env") else {}
    env.update(os.environ)
    connector_env = {k: v for k, v in env.items() if k.startswith("ALLOY_CONNECTOR_")}
    overrides.setdefault("connector_env", connector_env)
    return Settings(**overrides)  # type: ignore[arg-type]

"""The connector catalog: data, validated by a schema when loaded.

The OAuth 2.0 standard is every default, so an ordinary provider needs only a name and two URLs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

CATALOG_DIR = Path(__file__).parent
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LOCAL_HOSTS = {"localhost", "127.0.0.1"}

CredentialType = Literal["oauth2", "apiKey", "basic", "bearer"]


class CatalogError(ValueError):
    """A catalog or providers file that does not validate; names the file, entry and field."""


class InputSpec(BaseModel):
    """A per-connection input a connector declares, such as a subdomain."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str
    pattern: str = ".+"
    example: str
    description: str | None = None
    required: bool = True


class Connector(BaseModel):
    """One catalog entry. Field names are the YAML keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    authorization_url: str | None = None
    token_url: str | None = None
    revocation_url: str | None = None
    api_base_url: str | None = None
    auth_types: tuple[CredentialType, ...] = ("oauth2",)
    scopes: tuple[str, ...] = ()
    scope_separator: str = " "
    pkce: bool = True
    token_auth_method: Literal["client_secret_basic", "client_secret_post"] = (
        "client_secret_basic"
    )
    authorize_params: dict[str, str] = Field(default_factory=dict)
    token_params: dict[str, str] = Field(default_factory=dict)
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    # How the credential is applied to API calls: `Authorization: Bearer`, a named header,
    # or a named query parameter; plus headers every API call carries (Notion-Version).
    api_auth: Literal["bearer", "header", "query"] = "bearer"
    api_auth_name: str | None = None
    api_headers: dict[str, str] = Field(default_factory=dict)
    docs_url: str | None = None
    source: str | None = None
    # Only local test servers may be plain http, and only in development.
    local_only: bool = False

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", value):
            raise ValueError("connector ids are lower-case letters, digits and '-'")
        return value

    def urls(self) -> dict[str, str]:
        return {
            k: v
            for k, v in {
                "authorization_url": self.authorization_url,
                "token_url": self.token_url,
                "revocation_url": self.revocation_url,
                "api_base_url": self.api_base_url,
            }.items()
            if v
        }

    @property
    def is_oauth(self) -> bool:
        return "oauth2" in self.auth_types

    def check(self, *, development: bool) -> None:
        """URL and variable rules that need the deployment mode."""
        if self.is_oauth and not (self.authorization_url and self.token_url):
            raise ValueError("an oauth2 connector needs authorization_url and token_url")
        for field, url in self.urls().items():
            parts = urlsplit(_VARIABLE.sub("x", url))
            local = parts.hostname in _LOCAL_HOSTS
            if parts.scheme != "https" and not (
                development and parts.scheme == "http" and local
            ):
                raise ValueError(
                    f"{field} must be an https URL (http://localhost only in development)"
                )
            for name in _VARIABLE.findall(url):
                if name not in self.inputs:
                    raise ValueError(f"{field} uses ${{{name}}}, which is not declared in inputs")

    def render(self, url: str, data: dict[str, Any]) -> str:
        return _VARIABLE.sub(lambda m: str(data[m.group(1)]), url)


def _entries(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"{path}: cannot read: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise CatalogError(f"{path}: the top level must map connector ids to entries")
    return loaded


def parse_entries(path: Path, *, development: bool) -> dict[str, Connector]:
    connectors: dict[str, Connector] = {}
    for key, entry in _entries(path).items():
        if not isinstance(entry, dict):
            raise CatalogError(f"{path}: entry '{key}': must be a mapping of fields")
        try:
            connector = Connector(id=str(key), **entry)
            connector.check(development=development)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "entry"
            raise CatalogError(f"{path}: entry '{key}': field '{where}': {err['msg']}") from exc
        except ValueError as exc:
            raise CatalogError(f"{path}: entry '{key}': {exc}") from exc
        connectors[connector.id] = connector
    return connectors


def load_catalog(*, providers_file: str | None = None, development: bool = True,
                 extra: dict[str, Connector] | None = None) -> dict[str, Connector]:
    """The built-in catalog, plus `extra` (the sandbox), then the providers file's overrides."""
    catalog: dict[str, Connector] = {}
    for path in sorted(CATALOG_DIR.glob("*.yaml")):
        catalog.update(parse_entries(path, development=False))
    catalog.update(extra or {})
    if providers_file:
        catalog.update(parse_entries(Path(providers_file), development=development))
    return catalog

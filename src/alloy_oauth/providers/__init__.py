"""The connector catalog: data, validated by a schema when loaded.

The OAuth 2.0 standard is every default, so an ordinary provider needs only a name and two URLs.
Every way a provider bends the standard is one named field below (the "quirk vocabulary"); the
OAuth code in `alloy_oauth.oauth` reads these fields and nothing else about a provider.

Built-in entries live in the `*.yaml` files beside this module. `ALLOY_PROVIDERS_FILE` adds or
replaces entries in the same format; an entry with `extends: <id>` starts from that connector
and changes only the fields it names (how a test points a built-in connector at an emulator).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CATALOG_DIR = Path(__file__).parent
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_LOCAL_HOSTS = {"localhost", "127.0.0.1"}
URL_SAFE = re.compile(r"[A-Za-z0-9._~-]+")
# Metadata keys the service sets itself; a catalog entry cannot take them.
RESERVED_METADATA = frozenset({"authConfigId"})
# Token response fields that are secrets or token bookkeeping, never connection metadata.
_SECRET_WORDS = ("token", "secret", "password", "signature")

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

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"pattern is not a regular expression: {exc}") from exc
        return value


# Variables a `revocation.url` may use besides inputs and kept values.
REVOCATION_VARIABLES = frozenset({"client_id", "token"})
_PLACEMENT = re.compile(r"(body_json|form):([A-Za-z_][A-Za-z0-9_]*)")


class Revocation(BaseModel):
    """A provider's own revocation call, where it has no RFC 7009 endpoint.

    `url` may use `${client_id}` (the OAuth app's), `${token}` (with `token: path`), inputs and
    kept values. `auth`: `client_basic` (HTTP Basic with the app's client id and secret),
    `bearer` (the revoked token itself in `Authorization: Bearer`) or `none`. `token`: where the
    revoked token goes: `path` (as `${token}` in the url), `body_json:<field>` (a JSON object),
    `form:<field>` (form-encoded), or nothing with `auth: bearer`. `token_kind`: which of the
    connection's tokens is revoked.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["POST", "DELETE"] = "POST"
    url: str
    auth: Literal["client_basic", "bearer", "none"]
    token: str | None = None
    token_kind: Literal["access_token", "refresh_token"] = "access_token"

    @field_validator("token")
    @classmethod
    def _placement(cls, value: str | None) -> str | None:
        if value is None or value == "path" or _PLACEMENT.fullmatch(value):
            return value
        raise ValueError("token is `path`, `body_json:<field>` or `form:<field>`")

    @model_validator(mode="after")
    def _consistent(self) -> Revocation:
        if (self.token == "path") != ("${token}" in self.url):
            raise ValueError("`token: path` and `${token}` in the url go together")
        if self.token is None and self.auth != "bearer":
            raise ValueError("token says where the revoked token goes (`path`, "
                             "`body_json:<field>` or `form:<field>`); only `auth: bearer` "
                             "may carry it in the Authorization header alone")
        return self

    @property
    def field_name(self) -> str | None:
        """The body field of `body_json:<field>` / `form:<field>`."""
        match = _PLACEMENT.fullmatch(self.token or "")
        return match.group(2) if match else None


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# One step of a lookup path: a field name, a list index, or `[field]` (the first list item whose
# `field` is true), optionally right after a field name: `accounts[is_default]`.
_LOOKUP_STEP = re.compile(rf"(?:({_NAME})|([0-9]+))?(?:\[({_NAME})\])?")
_MAX_LOOKUP_NAMES = 10


def lookup_steps(path: str) -> list[tuple[str, str | int]]:
    """The steps of a `connect_lookup` path: ("key", name), ("index", n) or ("where", field).

    Raises ValueError for a path that is not dotted steps of those forms.
    """
    steps: list[tuple[str, str | int]] = []
    for part in path.split("."):
        match = _LOOKUP_STEP.fullmatch(part)
        if not part or match is None:
            raise ValueError(f"'{path}' is not a dotted path of field names, list indexes "
                             "(0) and `[field]` selectors")
        name, index, where = match.groups()
        if name is not None:
            steps.append(("key", name))
        if index is not None:
            steps.append(("index", int(index)))
        if where is not None:
            steps.append(("where", where))
    return steps


def lookup_value(body: Any, path: str) -> Any:
    """The value at a `connect_lookup` path of a JSON answer, or None when it is not there."""
    value = body
    for kind, step in lookup_steps(path):
        if kind == "key" and isinstance(value, dict):
            value = value.get(step)
        elif kind == "index" and isinstance(value, list) and isinstance(step, int):
            value = value[step] if step < len(value) else None
        elif kind == "where" and isinstance(value, list):
            value = next((item for item in value if isinstance(item, dict)
                          and item.get(step) in (True, "true", "True")), None)
        else:
            return None
    return value


class ConnectLookup(BaseModel):
    """One API call made with the new access token right after the code exchange, whose answer
    names values a connection needs (Xero's tenant, DocuSign's account host, Mailchimp's data
    centre). They are kept as connection metadata under the names in `keep`, usable as
    `${name}` in api_base_url, api_headers and revocation.url; a refresh does not repeat it.

    `url`: GET, https, may use inputs. `keep`: metadata name -> path into the JSON answer
    (`0.tenantId`, `accounts[is_default].base_uri`, `dc`). `auth_scheme`: the Authorization
    word for this call when it is not the connector's (Mailchimp's metadata wants `OAuth`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    keep: dict[str, str]
    auth_scheme: str | None = None

    @field_validator("keep")
    @classmethod
    def _keep(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("keep names at least one value to look up")
        if len(value) > _MAX_LOOKUP_NAMES:
            raise ValueError(f"keep names at most {_MAX_LOOKUP_NAMES} values")
        for name, path in value.items():
            if not re.fullmatch(_NAME, name):
                raise ValueError(f"'{name}' is not a name usable as ${{{name}}}")
            lookup_steps(path)
            last = [p for p in re.split(r"[.\[\]]", path) if p][-1].lower()
            if any(word in name.lower() or word in last for word in _SECRET_WORDS):
                raise ValueError(f"'{name}: {path}' looks like a secret; secrets are never "
                                 "metadata")
        return value

    @field_validator("auth_scheme")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", value):
            raise ValueError("auth_scheme is one word, such as `Bearer` or `OAuth`")
        return value


def metadata_key(path: str) -> str:
    """The connection metadata key of a kept token-response path: `team.id` -> `team_id`."""
    return path.replace(".", "_")


class Connector(BaseModel):
    """One catalog entry. Field names are the YAML keys; every default is the OAuth 2.0 standard."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    authorization_url: str | None = None
    token_url: str | None = None
    revocation_url: str | None = None
    api_base_url: str | None = None
    auth_types: tuple[CredentialType, ...] = ("oauth2",)
    # Per-connection inputs (a subdomain, a region), usable as `${name}` in the URLs.
    inputs: dict[str, InputSpec] = Field(default_factory=dict)

    # --- the authorize request ----------------------------------------------------------------
    scopes: tuple[str, ...] = ()
    # Scopes without which the provider issues no refresh token (`offline_access`,
    # Salesforce's `refresh_token`): always requested, whatever scopes the app asks for.
    offline_scopes: tuple[str, ...] = ()
    scope_separator: str = " "
    # The authorize parameter that carries scopes (Slack's user tokens: `user_scope`).
    scope_param: str = "scope"
    # PKCE S256 is sent unless the provider refuses it.
    pkce: bool = True
    authorize_params: dict[str, str] = Field(default_factory=dict)

    # --- the token request --------------------------------------------------------------------
    token_auth_method: Literal["client_secret_basic", "client_secret_post"] = (
        "client_secret_basic"
    )
    # The body of token and revocation requests: form-encoded (RFC 6749) or a JSON object.
    token_request_format: Literal["form", "json"] = "form"
    # Headers every token and revocation request carries (Notion-Version).
    token_headers: dict[str, str] = Field(default_factory=dict)
    token_params: dict[str, str] = Field(default_factory=dict)
    refresh_params: dict[str, str] = Field(default_factory=dict)
    # False where the revocation endpoint authenticates by the token itself and wants no
    # client credentials (Slack's auth.revoke).
    revocation_client_auth: bool = True
    # The provider's own revocation call when it has no RFC 7009 endpoint (GitHub's
    # DELETE /applications/{client_id}/grant); exclusive with revocation_url.
    revocation: Revocation | None = None

    # --- the token response -------------------------------------------------------------------
    # `form`: the provider answers form-encoded unless asked otherwise (GitHub); the JSON
    # Accept header is then not sent and the body is parsed as a form.
    token_response_format: Literal["json", "form"] = "json"
    # Dotted path of the object holding the token fields when the answer has one (Slack's
    # `authed_user`); otherwise they are read from the top level.
    token_path: str | None = None
    # A boolean field that is false on failures answered with HTTP 200 (Slack's `ok`).
    success_flag: str | None = None
    # Where a failed answer names its error and describes it (the standard `error` is always
    # honoured too), and provider error codes mapped to OAuth ones (`bad_verification_code`
    # -> `invalid_grant`), so that a dead grant is recognised as one.
    error_field: str = "error"
    error_description_field: str = "error_description"
    error_codes: dict[str, str] = Field(default_factory=dict)
    # Values kept as connection metadata: dotted paths into the token response (kept under
    # the path with `.` as `_`), and parameters of the provider's callback query (QuickBooks'
    # `realmId`). Both may be used as `${variables}` in api_base_url.
    keep_from_token: tuple[str, ...] = ()
    keep_from_callback: tuple[str, ...] = ()
    # Values only an API call with the new token names (Xero's tenant id, DocuSign's base_uri):
    # looked up once after the code exchange, kept like the values above (`ConnectLookup`).
    connect_lookup: ConnectLookup | None = None

    # --- API calls ----------------------------------------------------------------------------
    # How the credential is applied to API calls: `Authorization: Bearer`, a named header,
    # or a named query parameter; plus headers every API call carries (Notion-Version), whose
    # values may use `${name}` of inputs and kept values (Harvest-Account-Id).
    api_auth: Literal["bearer", "header", "query"] = "bearer"
    api_auth_name: str | None = None
    # The Authorization scheme for api_auth "bearer" (Zoho's `Zoho-oauthtoken`).
    api_auth_scheme: str = "Bearer"
    api_headers: dict[str, str] = Field(default_factory=dict)

    # --- documentation ------------------------------------------------------------------------
    docs_url: str | None = None
    source: str | None = None
    checked: date | None = None
    # Only local test servers may be plain http, and only in development.
    local_only: bool = False

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", value):
            raise ValueError("connector ids are lower-case letters, digits and '-'")
        return value

    @field_validator("scope_separator")
    @classmethod
    def _separator(cls, value: str) -> str:
        if value not in (" ", ",", "+", ";"):
            raise ValueError("scope_separator is one of ' ', ',', '+', ';'")
        return value

    @field_validator("keep_from_token")
    @classmethod
    def _no_secrets_kept(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for path in value:
            last = path.rsplit(".", 1)[-1].lower()
            if any(word in last for word in _SECRET_WORDS):
                raise ValueError(f"'{path}' looks like a secret; secrets are never metadata")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", path):
                raise ValueError(f"'{path}' is not a dotted path of field names")
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

    @property
    def kept_names(self) -> set[str]:
        """Metadata keys that come from the provider's answers (token response, callback,
        connect lookup)."""
        return ({metadata_key(p) for p in self.keep_from_token} | set(self.keep_from_callback)
                | self.lookup_names)

    @property
    def lookup_names(self) -> set[str]:
        """Metadata keys filled by the connect lookup; OAuth flows do not ask for them as
        inputs (an input of the same name is for non-OAuth credentials)."""
        return set(self.connect_lookup.keep) if self.connect_lookup else set()

    @property
    def oauth_inputs(self) -> dict[str, InputSpec]:
        """The inputs an OAuth flow asks the user for: all but those the connect lookup fills."""
        return {n: spec for n, spec in self.inputs.items() if n not in self.lookup_names}

    @property
    def api_base_variable(self) -> str | None:
        """The kept value that is the whole start of api_base_url (Salesforce's instance_url)."""
        if not self.api_base_url:
            return None
        match = VARIABLE.match(self.api_base_url)
        return match.group(1) if match else None

    def check(self, *, development: bool) -> None:
        """URL and variable rules that need the deployment mode."""
        optional = sorted(n for n, spec in self.inputs.items() if not spec.required)
        used = " ".join([*self.urls().values(), *self.scopes, *self.offline_scopes,
                         *self.authorize_params.values(), *self.token_params.values(),
                         *self.refresh_params.values(), *self.token_headers.values(),
                         *self.api_headers.values(),
                         *([self.revocation.url] if self.revocation else []),
                         *([self.connect_lookup.url] if self.connect_lookup else [])])
        for name in optional:
            if f"${{{name}}}" in used:
                raise ValueError(f"input '{name}' is used in a URL or parameter, so it must be "
                                 "required")
        if self.is_oauth and not (self.authorization_url and self.token_url):
            raise ValueError("an oauth2 connector needs authorization_url and token_url")
        if not self.auth_types:
            raise ValueError("auth_types lists at least one credential type")
        if self.api_auth != "bearer" and not self.api_auth_name:
            raise ValueError(f"api_auth '{self.api_auth}' needs api_auth_name (the header or "
                             "query parameter that carries the credential)")
        clash = (self.kept_names | set(self.inputs)) & RESERVED_METADATA
        if clash:
            raise ValueError(f"'{sorted(clash)[0]}' is reserved for the service's own metadata")
        inputs = set(self.inputs)
        for scope in (*self.scopes, *self.offline_scopes):
            _check_declared(f"scope '{scope}'", scope, inputs, "inputs")
        for field in ("authorize_params", "token_params", "refresh_params", "token_headers"):
            for key, value in getattr(self, field).items():
                _check_declared(f"{field}.{key}", value, inputs, "inputs")
        for field, url in self.urls().items():
            if field == "api_base_url":
                _check_declared(field, url, inputs | self.kept_names, _ANY_SOURCE)
                if self.api_base_variable in self.kept_names:
                    continue  # the provider names the API host; checked when the value arrives
            else:
                _check_declared(field, url, inputs, "inputs")
            _check_https(field, url, development=development)
        for key, value in self.api_headers.items():
            _check_declared(f"api_headers.{key}", value, inputs | self.kept_names, _ANY_SOURCE)
        self._check_revocation(development=development)
        self._check_connect_lookup(development=development)

    def _check_connect_lookup(self, *, development: bool) -> None:
        lookup = self.connect_lookup
        if lookup is None:
            return
        if not self.is_oauth:
            raise ValueError("connect_lookup runs after an OAuth code exchange: auth_types must "
                             "include oauth2")
        if lookup.auth_scheme and self.api_auth != "bearer":
            raise ValueError("connect_lookup.auth_scheme applies to api_auth: bearer only")
        names = self.lookup_names
        clash = names & ({metadata_key(p) for p in self.keep_from_token}
                         | set(self.keep_from_callback))
        if clash:
            raise ValueError(f"connect_lookup.keep.{sorted(clash)[0]} is also kept from the token "
                             "answer or the callback: give each value one source")
        # Values needed before the lookup has run cannot come from it.
        before = {"authorization_url": self.authorization_url, "token_url": self.token_url,
                  "connect_lookup.url": lookup.url,
                  **{f"scopes: {s}": s for s in (*self.scopes, *self.offline_scopes)},
                  **{f"{field}.{k}": v for field in ("authorize_params", "token_params",
                                                     "token_headers")
                     for k, v in getattr(self, field).items()}}
        for where, text in before.items():
            used = set(VARIABLE.findall(text or "")) & names
            if used:
                raise ValueError(f"{where} uses ${{{sorted(used)[0]}}}, which connect_lookup "
                                 "fills only after the code exchange")
        _check_declared("connect_lookup.url", lookup.url, set(self.inputs), "inputs")
        _check_https("connect_lookup.url", lookup.url, development=development)

    def _check_revocation(self, *, development: bool) -> None:
        rev = self.revocation
        if rev is None:
            return
        if self.revocation_url:
            raise ValueError("revocation_url (RFC 7009) and revocation (the provider's own "
                             "call) exclude each other: give one")
        if not self.revocation_client_auth:
            raise ValueError("revocation_client_auth applies to revocation_url only; "
                             "revocation says its own `auth`")
        clash = (set(self.inputs) | self.kept_names) & REVOCATION_VARIABLES
        if clash:
            raise ValueError(f"'{sorted(clash)[0]}' is a variable of revocation.url; an input "
                             "or kept value cannot take that name")
        _check_declared("revocation.url", rev.url,
                        set(self.inputs) | self.kept_names | REVOCATION_VARIABLES,
                        _ANY_SOURCE + " (nor is it ${client_id} or ${token})")
        _check_https("revocation.url", rev.url, development=development)

    @property
    def revocable(self) -> bool:
        """Whether the provider can be told to revoke a grant (RFC 7009 or its own call)."""
        return bool(self.revocation_url) or self.revocation is not None

    @property
    def url_inputs(self) -> set[str]:
        """Inputs that become part of a URL the service calls (and sends secrets to)."""
        urls = [*self.urls().values(), *([self.revocation.url] if self.revocation else [])]
        return {n for url in urls for n in VARIABLE.findall(url) if n in self.inputs}

    def input_problem(self, name: str, value: str) -> str | None:
        """Why a value cannot be used for an input, beyond its pattern, or None.

        A value that lands in a URL may only hold host-name and path-segment characters, so no
        input can move a token request (and the client secret) to another host or path.
        """
        if name in self.url_inputs and not URL_SAFE.fullmatch(value):
            return "it may only contain letters, digits, '.', '-', '_' and '~'"
        return None

    def render(self, url: str, data: dict[str, Any]) -> str:
        return VARIABLE.sub(lambda m: str(data[m.group(1)]), url)

    def render_params(self, params: dict[str, str], data: dict[str, Any]) -> dict[str, str]:
        """Extra request parameters with the connection's inputs filled in."""
        return {k: self.render(v, data) for k, v in params.items()}

    def api_header_values(self, metadata: Mapping[str, Any]) -> dict[str, str]:
        """api_headers with a connection's inputs and kept values filled in.

        Raises ValueError when the connection lacks a value, or a value would break the header.
        """
        headers: dict[str, str] = {}
        for key, value in self.api_headers.items():
            missing = [n for n in VARIABLE.findall(value) if n not in metadata]
            if missing:
                raise ValueError(f"the connection has no '{missing[0]}' for the {key} header")
            rendered = self.render(value, dict(metadata))
            if any(ord(ch) < 32 or ord(ch) == 127 for ch in rendered):
                raise ValueError(f"the connection's value for the {key} header holds control "
                                 "characters")
            headers[key] = rendered
        return headers

    def api_base(self, metadata: dict[str, Any]) -> str:
        """api_base_url with a connection's inputs and kept values filled in."""
        if not self.api_base_url:
            raise ValueError(f"connector '{self.id}' declares no api_base_url")
        missing = [n for n in VARIABLE.findall(self.api_base_url) if n not in metadata]
        if missing:
            raise ValueError(f"the connection has no '{missing[0]}' for the API base URL")
        return self.render(self.api_base_url, metadata).rstrip("/")


# Where a `${name}` used after the connect may come from.
_ANY_SOURCE = "inputs, keep_from_token, keep_from_callback or connect_lookup"


def _check_declared(where: str, text: str, allowed: set[str], declared_in: str) -> None:
    """Raise ValueError naming the first `${name}` in `text` that is not in `allowed`."""
    for name in VARIABLE.findall(text):
        if name not in allowed:
            raise ValueError(f"{where} uses ${{{name}}}, which is not declared in {declared_in}")


def _check_https(where: str, url: str, *, development: bool) -> None:
    """Raise ValueError unless `url` (variables filled with a placeholder) may be called."""
    parts = urlsplit(VARIABLE.sub("x", url))
    if not url_allowed(parts.scheme, parts.hostname, development=development):
        raise ValueError(f"{where} must be an https URL (http://localhost only in development)")


def url_allowed(scheme: str, host: str | None, *, development: bool) -> bool:
    """https anywhere; plain http only to this machine, and only in development."""
    if scheme == "https" and host:
        return True
    return development and scheme == "http" and host in _LOCAL_HOSTS


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


def _field_name(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "entry"


def build_connector(key: str, entry: dict[str, Any], *, known: dict[str, Connector],
                    development: bool) -> Connector:
    """One entry, merged over the connector it `extends`, validated. Raises ValueError."""
    fields = dict(entry)
    base_id = fields.pop("extends", None)
    if base_id is not None:
        base = known.get(str(base_id))
        if base is None:
            raise ValueError(f"field 'extends': there is no connector '{base_id}' to extend")
        fields = {**base.model_dump(exclude={"id"}, exclude_defaults=True), **fields}
    connector = Connector(id=str(key), **fields)
    connector.check(development=development)
    return connector


def parse_entries(path: Path, *, development: bool,
                  known: dict[str, Connector] | None = None) -> dict[str, Connector]:
    """The entries of one file; `extends` may name `known` connectors or earlier entries."""
    connectors: dict[str, Connector] = {}
    for key, entry in _entries(path).items():
        if not isinstance(entry, dict):
            raise CatalogError(f"{path}: entry '{key}': must be a mapping of fields")
        try:
            connector = build_connector(str(key), entry, known={**(known or {}), **connectors},
                                        development=development)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise CatalogError(
                f"{path}: entry '{key}': field '{_field_name(err['loc'])}': {err['msg']}"
            ) from None
        except ValueError as exc:
            raise CatalogError(f"{path}: entry '{key}': {exc}") from None
        connectors[connector.id] = connector
    return connectors


def catalog_files() -> list[Path]:
    return sorted(CATALOG_DIR.glob("*.yaml"))


def builtin_catalog() -> dict[str, Connector]:
    """The built-in connectors alone (always validated as for production)."""
    catalog: dict[str, Connector] = {}
    for path in catalog_files():
        for cid, connector in parse_entries(path, development=False, known=catalog).items():
            if cid in catalog:
                raise CatalogError(f"{path}: entry '{cid}': defined twice in the catalog")
            catalog[cid] = connector
    return catalog


def load_catalog(*, providers_file: str | None = None, development: bool = True,
                 extra: dict[str, Connector] | None = None) -> dict[str, Connector]:
    """The built-in catalog, plus `extra` (the sandbox), then the providers file's entries."""
    catalog = builtin_catalog()
    catalog.update(extra or {})
    if providers_file:
        catalog.update(parse_entries(Path(providers_file), development=development,
                                     known=catalog))
    return catalog

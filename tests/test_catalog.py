"""The catalog as data: every built-in entry validates, states no default, names its source;
a bad entry anywhere is refused with its file, entry and field named."""

from __future__ import annotations

import importlib.util
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from alloy_oauth.providers import (
    CatalogError,
    Connector,
    builtin_catalog,
    catalog_files,
    load_catalog,
    parse_entries,
)

ROOT = Path(__file__).resolve().parents[1]
SIX = ("notion", "hubspot", "salesforce", "slack", "google-drive", "github")
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def raw_entries() -> list[tuple[Path, str, dict[str, Any]]]:
    """Every entry as written (YAML merge keys resolved), with its file."""
    found = []
    for path in catalog_files():
        for key, entry in (yaml.safe_load(path.read_text()) or {}).items():
            found.append((path, str(key), entry))
    return found


def test_every_builtin_entry_validates_with_production_rules() -> None:
    catalog = builtin_catalog()
    assert len(catalog) == len(raw_entries())  # ids are unique across the files
    for connector in catalog.values():
        connector.check(development=False)


def test_the_six_named_connectors_are_verified_with_source_and_date() -> None:
    catalog = builtin_catalog()
    for cid in SIX:
        c = catalog[cid]
        assert c.is_oauth and c.source and c.source.startswith("https://"), cid
        assert c.checked == date(2026, 11, 27), cid
        assert c.api_base_url and c.docs_url, cid


def test_at_least_150_further_oauth_connectors_each_name_a_source() -> None:
    catalog = builtin_catalog()
    further = [c for c in catalog.values() if c.is_oauth and c.id not in SIX]
    assert len(further) >= 150, len(further)
    for c in catalog.values():
        assert c.source and c.source.startswith("https://"), c.id
        assert c.api_base_url, c.id


def test_at_least_ten_connectors_take_non_oauth_credentials() -> None:
    static = [c for c in builtin_catalog().values() if set(c.auth_types) - {"oauth2"}]
    assert len(static) >= 10
    assert {"apiKey", "basic", "bearer"} <= {t for c in static for t in c.auth_types}


def test_no_entry_restates_a_default() -> None:
    fields = Connector.model_fields
    for path, key, entry in raw_entries():
        for name, value in entry.items():
            if name not in fields:
                continue
            default = fields[name].get_default(call_default_factory=True)
            normalised = tuple(value) if isinstance(value, list) else value
            assert normalised != default, f"{path.name}: {key}.{name} restates the default"


def test_every_url_is_https_and_every_variable_is_declared() -> None:
    for c in builtin_catalog().values():
        for field, url in c.urls().items():
            assert url.startswith("https://") or (
                field == "api_base_url" and url.startswith("${")), (c.id, field)
            for name in VARIABLE.findall(url):
                assert name in c.inputs or name in c.kept_names, (c.id, field, name)
        for name, spec in c.inputs.items():
            assert re.fullmatch(spec.pattern, spec.example), (c.id, spec)
            assert c.input_problem(name, spec.example) is None, (c.id, name)


def test_the_connector_table_in_docs_is_current() -> None:
    spec = importlib.util.spec_from_file_location("gen_table",
                                                  ROOT / "scripts" / "gen_connectors_table.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.render()
    assert (ROOT / "docs" / "connectors.md").read_text() == expected, (
        "docs/connectors.md is out of date: run .venv/bin/python scripts/gen_connectors_table.py")
    for cid in builtin_catalog():
        assert f"| `{cid}` |" in expected


# --- bad entries are refused, naming the file, entry and field --------------------------------

def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "providers.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text,entry,needle", [
    ("acme:\n  name: Acme\n  authorization_url: https://a.example/auth\n"
     "  token_url: https://a.example/token\n  token_format: json\n",
     "acme", "field 'token_format'"),
    ("acme:\n  name: Acme\n  authorization_url: http://a.example/auth\n"
     "  token_url: https://a.example/token\n", "acme", "authorization_url must be an https URL"),
    ("acme:\n  name: Acme\n  authorization_url: https://${tenant}.example/auth\n"
     "  token_url: https://a.example/token\n", "acme", "${tenant}"),
    ("acme:\n  name: Acme\n  token_url: https://a.example/token\n", "acme",
     "needs authorization_url and token_url"),
    ("acme:\n  name: Acme\n  authorization_url: https://a.example/auth\n"
     "  token_url: https://a.example/token\n  pkce: sometimes\n", "acme", "field 'pkce'"),
    ("acme:\n  name: Acme\n  authorization_url: https://a.example/auth\n"
     "  token_url: https://a.example/token\n  keep_from_token: [refresh_token]\n",
     "acme", "secret"),
    ("acme:\n  name: Acme\n  authorization_url: https://a.example/auth\n"
     "  token_url: https://a.example/token\n  api_auth: header\n", "acme", "api_auth_name"),
    ("acme:\n  extends: no-such-connector\n", "acme", "no connector 'no-such-connector'"),
    ("Acme Corp:\n  name: Acme\n", "Acme Corp", "field 'id'"),
    ("acme:\n  name: Acme\n  authorization_url: https://a.example/auth\n"
     "  token_url: https://a.example/token\n  inputs:\n"
     "    site: {title: Site, example: x, pattern: '[a-'}\n", "acme", "inputs.site.pattern"),
    ("acme:\n  name: Acme\n  authorization_url: https://${site}.example/auth\n"
     "  token_url: https://a.example/token\n  inputs:\n"
     "    site: {title: Site, example: x, required: false}\n", "acme", "must be required"),
    ("acme:\n  name: Acme\n  authorization_url: https://a.example/auth\n"
     "  token_url: https://a.example/token\n  authorize_params: {tenant: '${tenant}'}\n",
     "acme", "authorize_params.tenant"),
    ("acme: just a string\n", "acme", "must be a mapping"),
])
def test_a_bad_entry_names_file_entry_and_field(tmp_path: Path, text: str, entry: str,
                                                needle: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CatalogError) as caught:
        load_catalog(providers_file=str(path), development=False)
    message = str(caught.value)
    assert str(path) in message and f"entry '{entry}'" in message and needle in message


@pytest.mark.parametrize("text", ["- a\n- list\n", "acme: {name: [unclosed\n"])
def test_a_file_that_is_not_a_mapping_names_the_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CatalogError, match=re.escape(str(path))):
        load_catalog(providers_file=str(path))


def test_plain_http_to_this_machine_only_in_development(tmp_path: Path) -> None:
    path = write(tmp_path, "local:\n  name: Local\n"
                           "  authorization_url: http://127.0.0.1:9/auth\n"
                           "  token_url: http://localhost:9/token\n")
    assert "local" in load_catalog(providers_file=str(path), development=True)
    with pytest.raises(CatalogError, match="https"):
        load_catalog(providers_file=str(path), development=False)


def test_extends_overrides_only_the_fields_it_names(tmp_path: Path) -> None:
    path = write(tmp_path, "notion:\n  extends: notion\n"
                           "  token_url: http://127.0.0.1:9/v1/oauth/token\n"
                           "notion-eu:\n  extends: notion\n  name: Notion (EU proxy)\n")
    catalog = load_catalog(providers_file=str(path), development=True)
    builtin = builtin_catalog()["notion"]
    notion = catalog["notion"]
    assert notion.token_url == "http://127.0.0.1:9/v1/oauth/token"
    # every quirk field of the built-in entry is still there
    assert notion.model_dump(exclude={"token_url"}) == builtin.model_dump(exclude={"token_url"})
    # a new connector can start from a built-in one (and from an earlier entry)
    assert catalog["notion-eu"].name == "Notion (EU proxy)"
    assert catalog["notion-eu"].token_request_format == "json"


def test_a_custom_connector_can_use_every_quirk_field(tmp_path: Path) -> None:
    path = write(tmp_path, """
acme:
  name: Acme
  authorization_url: https://${tenant}.acme.example/oauth/authorize
  token_url: https://${tenant}.acme.example/oauth/token
  revocation_url: https://${tenant}.acme.example/oauth/revoke
  api_base_url: ${api_host}/v2/${account}
  auth_types: [oauth2, apiKey]
  scopes: [read]
  offline_scopes: [offline]
  scope_separator: ","
  scope_param: user_scope
  pkce: false
  authorize_params: {prompt: consent}
  token_auth_method: client_secret_post
  token_request_format: json
  token_headers: {Acme-Version: "2"}
  token_params: {audience: "${tenant}"}
  refresh_params: {action: refresh}
  revocation_client_auth: false
  token_response_format: form
  token_path: data.token
  success_flag: ok
  error_field: code
  error_description_field: message
  error_codes: {EXPIRED: invalid_grant}
  keep_from_token: [api_host, data.team.id]
  keep_from_callback: [account]
  api_auth: header
  api_auth_name: X-Acme-Token
  api_auth_scheme: Token
  api_headers: {Accept: application/json}
  inputs:
    tenant: {title: Tenant, pattern: "[a-z]+", example: demo}
""")
    acme = parse_entries(path, development=False)["acme"]
    assert acme.kept_names == {"api_host", "data_team_id", "account"}
    assert acme.api_base_variable == "api_host"
    assert acme.render_params(acme.token_params, {"tenant": "demo"}) == {"audience": "demo"}
    assert acme.api_base({"api_host": "https://eu.acme.example", "account": "7"}) == \
        "https://eu.acme.example/v2/7"

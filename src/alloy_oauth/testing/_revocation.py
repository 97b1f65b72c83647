"""The built-in connector's own `revocation` call, pointed at an emulator."""

from __future__ import annotations

from typing import Any

from alloy_oauth.providers import CATALOG_DIR, parse_entries


def revocation_override(connector_id: str, provider_base: str, emulator_base: str,
                        ) -> dict[str, Any]:
    """The catalog entry's `revocation` field (from catalog.yaml, the six emulated
    connectors' file) with `provider_base` at the start of its URL replaced by
    `emulator_base`; every other part of it as the catalog says."""
    connector = parse_entries(CATALOG_DIR / "catalog.yaml", development=False)[connector_id]
    if connector.revocation is None:
        raise ValueError(f"the '{connector_id}' catalog entry declares no revocation call")
    spec = connector.revocation.model_dump()
    if not spec["url"].startswith(provider_base):
        raise ValueError(f"the '{connector_id}' revocation URL is not at {provider_base}")
    spec["url"] = emulator_base + spec["url"][len(provider_base):]
    return spec

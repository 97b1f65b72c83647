"""Settings of the sandbox provider: its one registered client and its token lifetimes."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit

# Host names and IP literals only: the origin goes into a Content-Security-Policy header.
_HOST = re.compile(r"[A-Za-z0-9.\-]+|[0-9A-Fa-f:.]+")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SandboxConfig:
    """The sandbox's registered client and lifetimes (seconds).

    `clock` returns the current time as an aware UTC datetime; tests inject a fake one so that
    expiry can be exercised without sleeping.
    """

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uris: tuple[str, ...]
    access_token_ttl: int = 3600
    refresh_token_ttl: int = 30 * 24 * 3600
    code_ttl: int = 600
    clock: Callable[[], datetime] = field(default=utc_now, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A list would make the frozen object unhashable and mutable from outside.
        object.__setattr__(self, "redirect_uris", tuple(self.redirect_uris))
        if not self.client_id:
            raise ValueError("SandboxConfig.client_id must not be empty")
        if not self.client_secret:
            raise ValueError("SandboxConfig.client_secret must not be empty")
        if not self.redirect_uris:
            raise ValueError("SandboxConfig.redirect_uris must list at least one URI")
        for uri in self.redirect_uris:
            parts = urlsplit(uri)
            try:
                parts.port  # noqa: B018 - raises on a malformed port
            except ValueError:
                raise ValueError(f"sandbox redirect URI {uri!r} has a malformed port") from None
            host_ok = parts.hostname is not None and _HOST.fullmatch(parts.hostname) is not None
            if parts.scheme not in ("http", "https") or not host_ok or parts.fragment:
                raise ValueError(
                    f"sandbox redirect URI {uri!r} must be an absolute http(s) URI without fragment"
                )
        for name in ("access_token_ttl", "refresh_token_ttl", "code_ttl"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SandboxConfig.{name} must be positive")

    def now(self) -> datetime:
        value = self.clock()
        if value.tzinfo is None:
            raise ValueError("SandboxConfig.clock must return an aware datetime")
        return value.astimezone(UTC)

"""Calling a provider's API with a connection's credential (the proxy, and the actions).

- The credential is applied the connector's way (`oauth.apply.api_request_auth`), after a
  refresh when the token expires soon; the caller's own `Authorization` (its alloy API key)
  and alloy's headers never reach the provider.
- Bodies stream both ways. A request body of up to `REPLAY_LIMIT` bytes is held so it can be
  sent again; a larger one streams straight through and is sent once.
- 401: one refresh and one retry (when the body can be sent again). 429 and 5xx on idempotent
  methods: up to `proxy_retries` retries, honouring `Retry-After` up to
  `proxy_max_retry_after` seconds (a longer wait is the caller's: the answer is passed back).
- Hop-by-hop headers are stripped both ways; the provider's answer is otherwise passed back
  unchanged (same bytes, same encoding), except that a header echoing the credential is
  redacted.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import unquote, unquote_plus, urlencode, urlsplit

import httpx2

from alloy_oauth import connections
from alloy_oauth.backoff import backoff
from alloy_oauth.errors import BadRequest, NotFound, ProviderFailure, ServiceError
from alloy_oauth.oauth.apply import api_request_auth
from alloy_oauth.providers import Connector
from alloy_oauth.runtime import Runtime
from alloy_oauth.store.models import Connection

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})
# The caller's business with alloy, never the provider's.
_NOT_FORWARDED = HOP_BY_HOP | {
    "host", "authorization", "content-length", "expect", "x-api-version",
    "x-alloy-userid", "forwarded", "x-forwarded-for", "x-forwarded-host",
    "x-forwarded-proto", "x-forwarded-port", "x-real-ip",
}
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REPLAY_LIMIT = 1 << 20
SMALL_BODY = 64 << 10
BACKOFF_BASE = 0.2
REDACTED = "[redacted]"

Body = bytes | AsyncIterator[bytes]


async def read_body(stream: AsyncIterator[bytes], limit: int = REPLAY_LIMIT) -> Body:
    """The whole body when it is small (so it can be sent again), else a stream of it."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream:
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return _chain(chunks, stream)
    return b"".join(chunks)


async def _chain(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in head:
        yield chunk
    head.clear()
    async for chunk in rest:
        yield chunk


@dataclass(frozen=True)
class Target:
    """Where and how to call: the API base URL and the credential's headers and query."""

    conn: Connection
    connector: Connector
    base_url: str
    headers: dict[str, str] = field(repr=False)
    query: dict[str, str] = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False)


def _api_base(rt: Runtime, connector: Connector, conn: Connection) -> str:
    try:
        base = connector.api_base(dict(conn.metadata_))
    except ValueError as exc:
        raise BadRequest(f"This connection cannot call the provider's API: {exc}.",
                         code="no_api_base_url") from None
    parts = urlsplit(base)
    local = parts.hostname in {"localhost", "127.0.0.1"}
    if not parts.hostname or not (parts.scheme == "https" or (
            parts.scheme == "http" and local and not rt.settings.is_production)):
        raise BadRequest("The connection's API base URL is not an https URL.",
                         code="no_api_base_url")
    return base.rstrip("/")


async def target(rt: Runtime, conn: Connection, *, force_refresh: bool = False) -> Target:
    """The credential for one call, the access token refreshed first when due (or forced)."""
    connector = rt.catalog.get(conn.connector_id)
    if connector is None:
        raise NotFound(f"Connector not found: '{conn.connector_id}' is no longer in this "
                       "server's catalog.", code="connector_not_found")
    secrets: list[str] = []
    if conn.credential_type == "oauth2":
        conn = await connections.fresh(rt, conn, force=force_refresh)
        token = connections.current_token(rt, conn)
        headers, query = api_request_auth(connector, token.token_type, token.access_token, None,
                                          metadata=conn.metadata_)
        secrets.append(token.access_token)
    else:
        if conn.secret_data_enc is None:
            raise BadRequest("This connection holds no credential.", code="no_credential")
        data = json.loads(rt.box.decrypt(conn.secret_data_enc, f"conn:{conn.id}:data"))
        headers, query = api_request_auth(connector, None, None, data, metadata=conn.metadata_)
        secrets.extend(v for v in data.values() if isinstance(v, str) and len(v) >= 6)
    plain = connector.api_header_values(conn.metadata_).values()  # rendered above already
    secrets.extend(v for v in (*headers.values(), *query.values()) if v not in plain)
    return Target(conn=conn, connector=connector, base_url=_api_base(rt, connector, conn),
                  headers=headers, query=query,
                  secrets=tuple(sorted({s for s in secrets if s}, key=len, reverse=True)))


def build_url(base_url: str, raw_path: str, raw_query: str, credential_query: dict[str, str],
              ) -> str:
    """`{base}/{path}?{query}` with the path and query as the caller encoded them; the path
    cannot climb out of the base (no `.` or `..` segments, encoded or not)."""
    for segment in unquote(raw_path).replace("\\", "/").split("/"):
        if segment in (".", ".."):
            raise BadRequest("The proxied path may not contain '.' or '..' segments.",
                             code="invalid_path")
    url = f"{base_url}/{raw_path.lstrip('/')}"
    parts = [p for p in raw_query.split("&") if p]
    if credential_query:
        # The credential's own parameter is never taken from the caller.
        names = set(credential_query)
        parts = [p for p in parts if unquote_plus(p.split("=", 1)[0]) not in names]
        parts.append(urlencode(credential_query))
    return f"{url}?{'&'.join(parts)}" if parts else url


def forward_headers(raw: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The caller's headers that go to the provider (hop-by-hop and alloy's own removed)."""
    dropped = set(_NOT_FORWARDED)
    for name, value in raw:
        if name.lower() == "connection":
            dropped.update(t.strip().lower() for t in value.split(","))
    return [(n, v) for n, v in raw if n.lower() not in dropped]


def answer_headers(response: httpx2.Response, secrets: Sequence[str]) -> list[tuple[bytes, bytes]]:
    """The provider's headers for the caller: hop-by-hop removed, credential echoes redacted."""
    dropped = set(HOP_BY_HOP)
    for value in response.headers.get_list("connection"):
        dropped.update(t.strip().lower() for t in value.split(","))
    out: list[tuple[bytes, bytes]] = []
    for name, value in response.headers.multi_items():
        if name.lower() in dropped:
            continue
        for secret in secrets:
            if secret and secret in value:
                value = value.replace(secret, REDACTED)
        out.append((name.encode("latin-1"), value.encode("latin-1")))
    return out


def retry_after(response: httpx2.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass
class Upstream:
    """The provider's answer, not yet read: stream it with `body()`, then `aclose()`."""

    response: httpx2.Response
    secrets: tuple[str, ...] = field(repr=False)
    attempts: int = 1
    _read: bytes | None = field(default=None, repr=False)

    @property
    def status_code(self) -> int:
        return self.response.status_code

    def headers(self) -> list[tuple[bytes, bytes]]:
        return answer_headers(self.response, self.secrets)

    async def body(self) -> AsyncIterator[bytes]:
        """The body exactly as the provider sent it (still compressed, if it was); the
        provider's connection is released at the end, or when the caller goes away."""
        try:
            if self._read is not None:
                yield self._read
                return
            async for chunk in self.response.aiter_raw():
                yield chunk
        finally:
            await self.response.aclose()

    async def small_body(self, limit: int = SMALL_BODY) -> bytes | None:
        """The raw body when the provider announced at most `limit` bytes (cheaper to pass
        back whole than to stream); None for a larger or unannounced one."""
        if self._read is not None:
            return self._read
        length = self.response.headers.get("content-length", "")
        if not length.isdigit() or int(length) > limit:
            return None
        try:
            self._read = b"".join([chunk async for chunk in self.response.aiter_raw()])
        finally:
            await self.response.aclose()
        return self._read

    async def read(self, limit: int) -> bytes:
        """The decoded body, up to `limit` bytes (for actions)."""
        if self._read is not None:
            return self._read
        data = bytearray()
        async for chunk in self.response.aiter_bytes():
            data.extend(chunk)
            if len(data) > limit:
                raise ProviderFailure(f"The provider's answer is larger than {limit} bytes; "
                                      "use the proxy to stream it.", code="response_too_large")
        return bytes(data)

    async def aclose(self) -> None:
        await self.response.aclose()


def _timeouts(rt: Runtime) -> dict[str, float]:
    """httpcore's timeout extension: provider APIs may think for a while before answering."""
    timeout = rt.settings.http_timeout
    return {"connect": timeout, "read": max(60.0, timeout), "write": max(60.0, timeout),
            "pool": timeout}


def _can_refresh(conn: Connection) -> bool:
    return conn.credential_type == "oauth2" and conn.refresh_token_enc is not None


async def send(rt: Runtime, conn: Connection, *, method: str, raw_path: str, raw_query: str = "",
               headers: Sequence[tuple[str, str]] = (), body: Body = b"",
               had_length: bool = False) -> Upstream:
    """One API call through the connection, with the refresh and retry rules above. The
    caller must `aclose()` the answer."""
    method = method.upper()
    tgt = await target(rt, conn)
    timeouts = _timeouts(rt)
    replayable = isinstance(body, bytes)
    sent_headers = forward_headers(headers)
    names = {n.lower() for n, _ in sent_headers}
    if "accept-encoding" not in names:
        sent_headers.append(("Accept-Encoding", "identity"))  # the caller asked for no coding
    if "user-agent" not in names:
        sent_headers.append(("User-Agent", "alloy-oauth-proxy"))
    if not replayable and had_length:
        length = next((v for n, v in headers if n.lower() == "content-length"), None)
        if length is not None:
            sent_headers.append(("Content-Length", length))
    content: Body | None = body if (not replayable or body or had_length) else None
    refreshed = False
    retries = 0
    attempts = 0
    while True:
        credential_names = {n.lower() for n in tgt.headers}
        # A bare request on the runtime's connection pool, no client: no cookie jar (one
        # caller's provider cookies must never reach another's calls), no redirects followed,
        # no default headers.
        request = httpx2.Request(
            method, build_url(tgt.base_url, raw_path, raw_query, tgt.query),
            headers=[*((n, v) for n, v in sent_headers if n.lower() not in credential_names),
                     *tgt.headers.items()],
            content=content, extensions={"timeout": timeouts})
        attempts += 1
        try:
            response = await rt.transport.handle_async_request(request)
            response.request = request
        except httpx2.TransportError as exc:
            if replayable and method in IDEMPOTENT and retries < rt.settings.proxy_retries:
                retries += 1
                await asyncio.sleep(backoff(BACKOFF_BASE, retries))
                continue
            raise _transport_failure(exc) from None
        if response.status_code == 401 and not refreshed and replayable and _can_refresh(tgt.conn):
            refreshed = True
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
            await response.aclose()
            try:
                tgt = await target(rt, tgt.conn, force_refresh=True)
            except ServiceError as exc:
                if exc.code == "needs_reauth":
                    raise
                # The refresh cannot help now: the provider's own 401 is the answer.
                log.info("proxy: 401 from %s and no refresh possible (%s)",
                         tgt.connector.id, exc.code)
                return Upstream(response, tgt.secrets, attempts, raw)
            continue
        if (response.status_code in RETRY_STATUSES and method in IDEMPOTENT and replayable
                and retries < rt.settings.proxy_retries):
            wait = retry_after(response)
            if wait is None:
                wait = backoff(BACKOFF_BASE, retries + 1)
            if wait <= rt.settings.proxy_max_retry_after:
                await response.aclose()
                retries += 1
                await asyncio.sleep(wait)
                continue
        return Upstream(response, tgt.secrets, attempts)


def _transport_failure(exc: httpx2.TransportError) -> ProviderFailure:
    if isinstance(exc, httpx2.TimeoutException):
        return ProviderFailure("The provider's API did not answer in time; try again.",
                               code="provider_timeout", status=504)
    return ProviderFailure(f"Cannot reach the provider's API ({type(exc).__name__}); "
                           "try again shortly.", code="provider_unreachable")

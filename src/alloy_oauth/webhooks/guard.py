"""Where webhooks may go (the SSRF guard).

In production a webhook URL must be https, and its host must be, and resolve only to, public
addresses: not loopback, private, link-local, site-local, multicast, reserved, unspecified or
otherwise non-global (IPv4 and IPv6; IPv4-mapped, 6to4 and NAT64 IPv6 addresses are judged by
the IPv4 address inside them). Hosts are read the way the connection is made: through
`getaddrinfo`, so `2130706433`, `0x7f000001` or `127.1` are 127.0.0.1 here as they are on the
wire. `ALLOY_WEBHOOK_ALLOW_PRIVATE=true` lifts the address rule (https stays required).

The URL is checked when it is set, and again at every delivery: `GuardedTransport` resolves the
host, checks every address, then opens the TCP connection to a checked address itself, so a DNS
answer that changes between the check and the connection (rebinding) is never used.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Iterable

import httpcore2
import httpx2

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressCheck = Callable[[IPAddress], str | None]
# httpcore's socket option type (its own alias is private).
SocketOption = (tuple[int, int, int] | tuple[int, int, bytes | bytearray]
                | tuple[int, int, None, int])

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
PUBLIC_ONLY = "in production, webhooks go to public addresses only"
_DEV_LOCAL_HOSTS = {"localhost", "127.0.0.1"}


class TargetRefused(Exception):
    """A webhook target the policy refuses. `reason` names why; it is safe to show the
    account (it never carries the address a host name resolved to)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unresolvable(Exception):
    """The host has no address (now)."""


def address_problem(ip: IPAddress) -> str | None:
    """Why a webhook must not go to `ip` in production ("a loopback address"), or None."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (
            ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        if embedded is not None:
            return address_problem(embedded)
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (such as the cloud metadata service)"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "a site-local address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "a non-public address"
    return None


def url_problem(url: str, *, production: bool) -> str | None:
    """What is wrong with a webhook URL before any address is looked at, or None.

    Production: https only. Development: https, or http to localhost / 127.0.0.1."""
    try:
        parsed = httpx2.URL(url)
    except (httpx2.InvalidURL, TypeError):
        return "it is not a valid URL"
    if not parsed.host:
        return "it has no host"
    if parsed.scheme == "https":
        return None
    if production:
        return "it must be an https URL in production"
    if parsed.scheme == "http" and parsed.host in _DEV_LOCAL_HOSTS:
        return None
    return "it must be an https URL (http://localhost only in development)"


async def _getaddrinfo(host: str, port: int, flags: int = 0) -> list[IPAddress]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=flags)
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(sockaddr[0])
        if ip not in found:
            found.append(ip)
    return found


def _same_ip(host: str, ip: IPAddress) -> bool:
    try:
        return ipaddress.ip_address(host) == ip
    except ValueError:
        return False


async def checked_addresses(host: str, port: int, *, timeout: float | None,
                            check: AddressCheck = address_problem) -> list[IPAddress]:
    """Every address of `host` (a name or an IP in any spelling `getaddrinfo` accepts), once
    each passed `check`. Raises `TargetRefused` if any address fails it (one bad answer
    refuses the lot), `Unresolvable` if there is no address within `timeout` seconds."""
    host = host.strip("[]")
    try:  # an IP literal, in any spelling the resolver takes: no DNS query
        addresses, literal = await _getaddrinfo(host, port, socket.AI_NUMERICHOST), True
    except (socket.gaierror, UnicodeError, ValueError):
        try:
            async with asyncio.timeout(timeout):
                addresses, literal = await _getaddrinfo(host, port), False
        except TimeoutError:
            raise Unresolvable(f"its host '{host}' did not resolve in time") from None
        except (socket.gaierror, UnicodeError, ValueError):
            raise Unresolvable(f"its host '{host}' does not resolve") from None
    if not addresses:
        raise Unresolvable(f"its host '{host}' does not resolve")
    for ip in addresses:
        problem = check(ip)
        if problem is None:
            continue
        if not literal:  # the answer of a name is not echoed: no probing of internal DNS
            raise TargetRefused(f"its host '{host}' resolves to {problem}; {PUBLIC_ONLY}")
        shown = f"{host} is" if _same_ip(host, ip) else f"'{host}' is {ip},"
        raise TargetRefused(f"its host {shown} {problem}; {PUBLIC_ONLY}")
    return addresses


async def host_problem(url: str, *, timeout: float,
                       check: AddressCheck = address_problem) -> str | None:
    """Why the host of a (valid) webhook URL must not be used, or None."""
    parsed = httpx2.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        await checked_addresses(parsed.raw_host.decode("ascii"), port, timeout=timeout,
                                check=check)
    except (TargetRefused, Unresolvable) as exc:
        return str(exc)
    return None


class GuardedBackend(httpcore2.AsyncNetworkBackend):
    """httpcore's network backend, except that `connect_tcp` resolves the host itself, checks
    every address, and connects to a checked address (never to the name again). TLS still
    uses the URL's host name for SNI and certificate checks: httpcore passes it to
    `start_tls`, not the address."""

    def __init__(self, check: AddressCheck = address_problem,
                 inner: httpcore2.AsyncNetworkBackend | None = None) -> None:
        self._check = check
        self._inner = inner or httpcore2.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[SocketOption] | None = None,
                          ) -> httpcore2.AsyncNetworkStream:
        try:
            addresses = await checked_addresses(host, port, timeout=timeout, check=self._check)
        except Unresolvable as exc:
            raise httpcore2.ConnectError(str(exc)) from None
        failure: Exception = httpcore2.ConnectError(f"cannot connect to '{host}'")
        for ip in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(ip), port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options)
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                failure = exc
        raise failure

    async def connect_unix_socket(
            self, path: str, timeout: float | None = None,
            socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise TargetRefused("a webhook cannot go to a unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx2.AsyncHTTPTransport):
    """httpx2's transport with every connection made by `GuardedBackend`.

    `httpx2.AsyncHTTPTransport` takes no network backend, so its connection pool is replaced
    by one built the same way with ours; the request, response and error mapping of the
    transport are used unchanged. Environment proxies are not used (a proxy would make the
    connection, and the check, somewhere else): a client given a transport ignores them."""

    def __init__(self, check: AddressCheck = address_problem,
                 limits: httpx2.Limits | None = None) -> None:
        limits = limits or httpx2.Limits(max_connections=50, max_keepalive_connections=10)
        super().__init__(limits=limits)
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=httpx2.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(check),
        )

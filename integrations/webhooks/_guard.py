"""Where a webhook may be sent: public addresses only, checked where the connection is made.

A subscriber's URL is chosen by whoever holds an admin key, and the sender runs inside the
network: without this guard it reaches loopback services, the cloud metadata endpoint and
the private network, and its delivery log tells open ports from closed ones.

The URL is checked when a webhook is created (fast feedback) and, what counts, at every
connection: ``GuardedBackend`` resolves the name itself, refuses the connection unless every
address is public, and connects to the address it checked. httpx never resolves the name
again, so a DNS answer that changes between check and connect (rebinding) cannot slip
through; the URL is left as it is, so the Host header, TLS SNI and certificate check still
use the name.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[IPAddress]]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


class UnsafeTarget(ValueError):
    """A URL or address a webhook must not be sent to; the message names no address."""


class RefusedDestination(httpcore.ConnectError):
    """Raised by the guarded backend; httpx turns it into ``httpx.ConnectError``."""


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (plain DNS, through the system resolver)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 one carries and may be routed to (mapped, 6to4, Teredo, NAT64)."""
    inner: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        inner.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        inner.append(address.sixtofour)
    if address.teredo is not None:
        inner.extend(address.teredo)
    if address in _NAT64 or address in _NAT64_LOCAL:
        inner.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return inner


def is_public(address: IPAddress) -> bool:
    """A globally routable unicast address: not loopback, private, link-local (cloud
    metadata), shared (CGNAT), multicast, unspecified or reserved, nor one hiding such an
    IPv4 address inside IPv6."""
    if (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or not address.is_global
    ):
        return False
    if isinstance(address, ipaddress.IPv6Address):
        return all(is_public(inner) for inner in _embedded_ipv4(address))
    return True


def literal_address(host: str) -> IPAddress | None:
    """The address a host written as a number stands for: dotted, IPv6, and the forms
    ``inet_aton`` also reads (``127.1``, ``0x7f000001``, ``2130706433``, octal)."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def is_local_name(host: str) -> bool:
    """``localhost`` and its subdomains always mean loopback (RFC 6761), resolver or not."""
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


def check_addresses(addresses: list[IPAddress]) -> None:
    """Refuse unless there is an address and every one of them is public."""
    if not addresses:
        raise UnsafeTarget("the host has no address")
    if not all(is_public(a) for a in addresses):
        raise UnsafeTarget(
            "the URL resolves to a loopback, private, link-local or reserved address"
        )


def check_url(url: str, *, allow_private: bool, resolver: Resolver = resolve) -> None:
    """Refuse credentials in the URL always, and non-public destinations unless allowed.

    A name that does not resolve yet passes: the receiver may not be live yet, and the
    check that matters runs at every connection.
    """
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeTarget("credentials are not allowed in a webhook URL")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeTarget("an http or https URL with a host is required")
    if allow_private:
        return
    if is_local_name(parts.hostname):
        raise UnsafeTarget("the URL names this host (localhost)")
    literal = literal_address(parts.hostname)
    if literal is not None:
        check_addresses([literal])
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = resolver(parts.hostname, port)
    except (OSError, UnicodeError, ValueError):
        return
    check_addresses(addresses)


class GuardedBackend(httpcore.SyncBackend):
    """Connects only to public addresses, and to exactly the address it checked."""

    def __init__(self, *, allow_private: bool, resolver: Resolver = resolve) -> None:
        self.allow_private = allow_private
        self.resolver = resolver

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        if not self.allow_private and is_local_name(host):
            raise RefusedDestination("the URL names this host (localhost)")
        literal = literal_address(host)
        try:
            addresses = [literal] if literal is not None else self.resolver(host, port)
        except (OSError, UnicodeError, ValueError) as exc:
            raise httpcore.ConnectError("name resolution failed") from exc
        if not self.allow_private:
            try:
                check_addresses(addresses)
            except UnsafeTarget as exc:
                raise RefusedDestination(str(exc)) from None
        if not addresses:
            raise httpcore.ConnectError("the host has no address")
        return super().connect_tcp(
            str(addresses[0]),
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        raise RefusedDestination("unix sockets are not a webhook destination")


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with the guarded backend underneath (no proxy: it would connect
    to the proxy instead, and the destination would go unchecked)."""

    def __init__(self, *, allow_private: bool, resolver: Resolver = resolve) -> None:
        super().__init__(retries=0)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=GuardedBackend(allow_private=allow_private, resolver=resolver),
            max_connections=10,
            max_keepalive_connections=5,
            keepalive_expiry=5.0,
            http1=True,
            http2=False,
            retries=0,
        )

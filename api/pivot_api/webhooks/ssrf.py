"""The SSRF guard of outbound webhook requests: which addresses the API may call.

A webhook URL is the user's, the network the API runs in is not: by default only globally
routable addresses are allowed. Loopback, link-local (169.254.0.0/16, where clouds serve
instance metadata and credentials; fe80::/10), private (RFC 1918, fc00::/7), CGNAT,
unspecified, multicast and reserved ranges are refused, as are metadata host names. Every
A/AAAA record of a host must pass (a name with one public and one private record is the
usual DNS-rebinding trick), and the check runs again right before each delivery, which then
connects to the address that was checked rather than resolving a second time.

Operators permit internal receivers with an allowlist of CIDRs and host names.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Names that reach a cloud's instance metadata service even where DNS would not say so.
METADATA_HOSTS = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
    }
)


class UnsafeURLError(ValueError):
    """The URL may not be called; the message says why (it is shown to the user)."""


def address_problem(ip: IPAddress) -> str | None:
    """Why an address is refused, or None when it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        # ::ffff:10.0.0.1 and the like reach the IPv4 address inside.
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return address_problem(mapped)
    checks = (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local (cloud metadata lives here)"),
        ("is_multicast", "multicast"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    )
    for attr, reason in checks:
        if getattr(ip, attr):
            return f"{ip} is a {reason} address"
    if not ip.is_global:  # CGNAT 100.64/10, benchmarking, documentation ranges...
        return f"{ip} is not a globally routable address"
    return None


@dataclass(frozen=True)
class Allowlist:
    """Networks and host names an operator lets webhooks reach despite the rules above."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allowlist:
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.rstrip("."))
        return cls(tuple(networks), frozenset(hosts))

    def allows_ip(self, ip: IPAddress) -> bool:
        return any(ip.version == n.version and ip in n for n in self.networks)


@dataclass(frozen=True)
class Target:
    """A URL checked for delivery: connect to `ip`, send Host and SNI as `host`."""

    url: str
    scheme: str
    host: str
    port: int
    ip: IPAddress

    def connect_url(self) -> str:
        """The URL with the checked address in place of the name (no second lookup)."""
        parts = urlsplit(self.url)
        netloc = f"[{self.ip}]" if self.ip.version == 6 else str(self.ip)
        netloc = f"{netloc}:{self.port}"
        return parts._replace(netloc=netloc).geturl()

    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def split_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL, or UnsafeURLError."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURLError(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"}:
        raise UnsafeURLError("the URL must use http or https")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise UnsafeURLError("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURLError("the URL may not carry credentials")
    return scheme, host, port or (443 if scheme == "https" else 80)


async def resolve(host: str, port: int, timeout_s: float) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout_s
        )
    except (OSError, TimeoutError, UnicodeError) as exc:
        raise UnsafeURLError(f"the host {host} does not resolve: {exc}") from None
    out: list[IPAddress] = []
    for info in infos:
        # Scope ids ("fe80::1%eth0") are not part of the address.
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if ip not in out:
            out.append(ip)
    if not out:
        raise UnsafeURLError(f"the host {host} has no address")
    return out


async def check_url(url: str, allow: Allowlist, *, timeout_s: float = 2.0) -> Target:
    """The URL's target if every address its host resolves to may be called."""
    scheme, host, port = split_url(url)
    host_allowed = host in allow.hosts
    if not host_allowed and (host in METADATA_HOSTS or host.endswith(".internal")):
        raise UnsafeURLError(f"{host} is a cloud metadata or internal host name")
    if not host_allowed and (host == "localhost" or host.endswith(".localhost")):
        raise UnsafeURLError(f"{host} is a loopback host name")
    addresses = await resolve(host, port, timeout_s)
    if not host_allowed:
        for ip in addresses:
            problem = address_problem(ip)
            if problem and not allow.allows_ip(ip):
                raise UnsafeURLError(f"{host} resolves to a refused address: {problem}")
    return Target(url=url, scheme=scheme, host=host, port=port, ip=addresses[0])

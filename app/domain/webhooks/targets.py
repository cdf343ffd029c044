"""Where a webhook may POST: only to public addresses (security.md, "Webhooks that cannot reach
inside").

A URL's host is checked by what it is and by every address it resolves to: loopback, private,
link-local (the cloud metadata service at 169.254.169.254 among them), shared, reserved,
multicast and unspecified addresses are refused, IPv6 forms that embed an IPv4 address
(IPv4-mapped, 6to4, Teredo, NAT64) are judged by that address, and the numeric forms of an
IPv4 address that resolvers accept (`2130706433`, `0x7f000001`, `127.1`, `0177.0.0.1`) are
refused outright. The check runs at registration and again at every delivery, which connects
to the address it checked (the host name stays in `Host` and in TLS's SNI and certificate
check), so a name that resolves differently a second later (DNS rebinding) cannot move the
request. Hosts listed in `LC_WEBHOOK_ALLOWED_HOSTS` are let through unchecked (development,
the project's own tests); the list is empty by default.

`RESOLVE` is the one place names are looked up; tests replace it with a stub, so a refusal
never depends on (or causes) a real lookup or connection."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from app.core.config import get_settings
from app.core.errors import WebhookUrlNotAllowed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
RESOLVE_TIMEOUT_SECONDS = 5.0
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_DEFAULT_PORTS = {"http": 80, "https": 443}


async def _system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# (host, port) -> the addresses the host resolves to; replaced by a stub in tests
RESOLVE: Callable[[str, int], Awaitable[list[str]]] = _system_resolve


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL: what to connect to. `addresses` is empty for an allowed host (connected to
    by name, as configured)."""

    url: httpx.URL
    addresses: tuple[str, ...]

    def pinned(self, address: str) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
        """The URL with `address` for its host, the `Host` header and the request extensions
        (TLS's SNI and certificate check stay on the host name)."""
        host = self.url.netloc.decode("ascii")
        extensions = {"sni_hostname": self.url.host} if self.url.scheme == "https" else {}
        return self.url.copy_with(host=address), {"Host": host}, extensions


class Unresolvable(WebhookUrlNotAllowed):
    """The URL's host name does not resolve (now)."""


def refusal_of_address(address: IPAddress) -> str | None:
    """Why `address` may not receive webhooks (None: it is public)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            reason = refusal_of_address(embedded)
            return f"{reason} (embedded in {address})" if reason else None
    for kind, flag in (
        ("an unspecified", address.is_unspecified),
        ("a loopback", address.is_loopback),
        ("a link-local", address.is_link_local),
        ("a multicast", address.is_multicast),
        ("a private", address.is_private),
        ("a reserved", address.is_reserved),
    ):
        if flag:
            return f"{address} is {kind} address"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _numeric_ipv4(host: str) -> bool:
    """Whether `host` is an IPv4 address in a form other than dotted decimal (`2130706433`,
    `0x7f000001`, `127.1`, `0177.0.0.1`), which resolvers turn into an address."""
    try:
        socket.inet_aton(host)
    except OSError:
        return False
    return True


def _allowed(host: str) -> bool:
    allowed = {h.strip().lower().strip("[]").rstrip(".") for h in get_settings().webhook_allowed_hosts}
    return host in allowed


def parse(url: str) -> httpx.URL:
    """The URL as the transport reads it; refused when the standard library reads another host
    (a URL written to be read two ways)."""
    try:
        parsed = httpx.URL(url)
        split = urlsplit(url)
        port = split.port
    except (httpx.InvalidURL, ValueError) as error:
        raise WebhookUrlNotAllowed("the URL cannot be parsed") from error
    if parsed.scheme not in _DEFAULT_PORTS or not parsed.host:
        raise WebhookUrlNotAllowed("the URL must be an absolute http(s) URL")
    default = _DEFAULT_PORTS[parsed.scheme]
    if (split.hostname or "").lower().rstrip(".") != parsed.host.lower().rstrip(".") or (port or default) != (
        parsed.port or default
    ):
        raise WebhookUrlNotAllowed("the URL's host is ambiguous")
    if "\\" in url or any(ord(c) < 33 for c in url):
        raise WebhookUrlNotAllowed("the URL contains a backslash, a space or a control character")
    return parsed


async def check(url: str) -> Target:
    """The URL's target, if every address it names or resolves to is public; else raise
    `WebhookUrlNotAllowed` (422 `webhook_url_not_allowed`). No connection is made."""
    parsed = parse(url)
    host = parsed.host.lower().rstrip(".")
    if _allowed(host):
        return Target(parsed, ())
    if host == "localhost" or host.endswith(".localhost"):
        raise WebhookUrlNotAllowed(f"{host} is a loopback name")
    literal = _literal(host)
    if literal is None and _numeric_ipv4(host):
        raise WebhookUrlNotAllowed(f"{host} is a numeric form of an IPv4 address: write a public address in dotted form")
    if literal is not None:
        reason = refusal_of_address(literal)
        if reason:
            raise WebhookUrlNotAllowed(reason)
        return Target(parsed, (str(literal),))
    port = parsed.port or _DEFAULT_PORTS[parsed.scheme]
    try:
        resolved = await asyncio.wait_for(RESOLVE(host, port), RESOLVE_TIMEOUT_SECONDS)
    except Exception as error:  # noqa: BLE001 - gaierror, a timeout, a name IDNA cannot encode …
        raise Unresolvable(f"{host} does not resolve") from error
    if not resolved:
        raise Unresolvable(f"{host} does not resolve")
    addresses: list[str] = []
    for text in resolved:
        address = _literal(text.split("%", 1)[0])
        reason = refusal_of_address(address) if address is not None else f"{host} resolves to something that is not an address"
        if reason:
            raise WebhookUrlNotAllowed(f"{host} resolves to a non-public address: {reason}")
        addresses.append(str(address))
    return Target(parsed, tuple(addresses))

"""Links the service hands out (a live session's QR picture, a base's check-in QR, a machine's
diagram, downloads): absolute, and usable in a plain `<img>`/`<a>` with no bearer token
(client-contract.md, "Links a page can show").

A link carries whom it was made for and until when, signed: `?…&u=<account id>&r=<role>&exp=<unix
seconds>&sig=<HMAC>`. The signature (HMAC-SHA256 under a key derived from `LC_SECRET_KEY`) covers
the path and every other query parameter, so a changed path, parameter, account or expiry is
refused (403), as is an expired link. Links live at most an hour.

Their base is `LC_PUBLIC_BASE_URL`, or else the scheme and host of the request the link is made in
(`X-Forwarded-Proto` / `X-Forwarded-Host` honoured when the request comes from one of
`LC_TRUSTED_PROXIES`). `TxRoute` records the request's scope in `REQUEST` for that."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

from app.core.config import get_settings
from app.core.errors import Forbidden

LINK_SECONDS = 3600
_SIGNED = ("u", "r", "exp", "sig")
# the ASGI scope of the request being answered (set by TxRoute; None outside a request)
REQUEST: ContextVar[Mapping[str, Any] | None] = ContextVar("request_scope", default=None)


@lru_cache(maxsize=4)
def _key(secret: str) -> bytes:
    return hashlib.sha256(b"live-collab links\x00" + secret.encode()).digest()


def _signature(path: str, params: Iterable[tuple[str, str]]) -> str:
    message = path + "?" + urlencode(sorted(params))
    digest = hmac.new(_key(get_settings().secret_key), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode().rstrip("=")


def _trusted(peer: str | None) -> bool:
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in get_settings().trusted_proxies)


def base_url() -> str:
    """Where links point: LC_PUBLIC_BASE_URL, else the request's own scheme and host."""
    configured = get_settings().public_base_url
    if configured:
        return configured.rstrip("/")
    scope = REQUEST.get()
    if scope is None:
        return "http://127.0.0.1:8000"
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
    scheme = str(scope.get("scheme", "http"))
    host = headers.get("host") or "{}:{}".format(*(scope.get("server") or ("127.0.0.1", 8000)))
    client = scope.get("client")
    if _trusted(client[0] if client else None):
        scheme = headers.get("x-forwarded-proto", scheme).split(",")[0].strip() or scheme
        host = headers.get("x-forwarded-host", host).split(",")[0].strip() or host
    return f"{scheme}://{host}"


def signed(path: str, account_id: str, role: str, *, params: Mapping[str, str] | None = None, seconds: int = LINK_SECONDS) -> str:
    """An absolute link to `path` (with `params`) for this account, valid `seconds` (≤ 1 hour)."""
    expires = int(time.time()) + min(seconds, LINK_SECONDS)
    query = [*(params or {}).items(), ("u", account_id), ("r", role), ("exp", str(expires))]
    return f"{base_url()}{path}?{urlencode([*query, ('sig', _signature(path, query))])}"


def verify(path: str, query: Iterable[tuple[str, str]]) -> tuple[str, str]:
    """(account id, role) a signed link was made for; 403 for a tampered or expired one."""
    items = list(query)
    given = dict(items)
    sig = given.get("sig", "")
    rest = [(k, v) for k, v in items if k != "sig"]
    if len(given) != len(items) or not all(k in given for k in _SIGNED):
        raise Forbidden("this link is not a signed link of this service")
    # bytes: compare_digest refuses a str with non-ASCII characters (a 500 for `?sig=%C2%80`)
    if not hmac.compare_digest(sig.encode(), _signature(path, rest).encode()):
        raise Forbidden("this link's signature does not match it")
    try:
        expires = int(given["exp"])
    except ValueError:
        raise Forbidden("this link's expiry is not a time") from None
    if expires < time.time():
        raise Forbidden("this link has expired: ask for a fresh one")
    return given["u"], given["r"]


def client_address(scope: Mapping[str, Any]) -> str:
    """The caller's address: the peer, or, when the peer is one of LC_TRUSTED_PROXIES, the
    nearest address in `X-Forwarded-For` that is not one of them."""
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    if not _trusted(peer):
        return peer
    forwarded = ""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"x-forwarded-for":
            forwarded = f"{forwarded},{value.decode('latin-1')}" if forwarded else value.decode("latin-1")
    for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
        if not _trusted(hop):
            return hop[:64]
    return peer

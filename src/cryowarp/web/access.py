"""Who may use the dashboard (docs/dashboard_api.md, "Access").

Bound to a loopback address the dashboard is open to the local user (a token is needed only
when one was given) and answers only requests addressed to a loopback host name, so that a web
page elsewhere cannot reach it through DNS rebinding. Bound to any other address it needs a
token: ``Authorization: Bearer <token>``, the ``cryowarp_token`` cookie, or ``?token=``.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass

__all__ = [
    "COOKIE_NAME",
    "MAX_BODY_BYTES",
    "AccessPolicy",
    "is_loopback",
    "new_token",
]

COOKIE_NAME = "cryowarp_token"
MAX_BODY_BYTES = 64 * 1024
"""Largest request body accepted (the API's bodies are a few hundred bytes)."""

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is loopback."""
    bare = host.strip().strip("[]").lower()
    if bare in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    """A random access token (32 URL-safe characters)."""
    return secrets.token_urlsafe(24)


def _host_name(header: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8000`` → ``::1``, ``a:80`` → ``a``)."""
    header = header.strip()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@dataclass(frozen=True)
class AccessPolicy:
    """The access rule of one dashboard: the address it is bound to and its token (``None``:
    no token needed, allowed only on a loopback address)."""

    host: str
    token: str | None

    def __post_init__(self) -> None:
        if self.token is None and not is_loopback(self.host):
            raise ValueError(f"a dashboard bound to {self.host} needs an access token")

    def host_allowed(self, host_header: str | None) -> bool:
        """Whether a request addressed to ``host_header`` is answered (any host when bound to
        a non-loopback address, where the token protects it)."""
        if not is_loopback(self.host):
            return True
        return host_header is not None and is_loopback(_host_name(host_header))

    def token_ok(self, *candidates: str | None) -> bool:
        """Whether one of the presented tokens is the right one (always, without a token)."""
        if self.token is None:
            return True
        expected = self.token.encode()
        return any(
            c is not None and secrets.compare_digest(c.encode(), expected) for c in candidates
        )

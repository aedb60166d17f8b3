"""Who may use the dashboard (docs/dashboard_api.md, "Access").

Bound to a loopback address the dashboard is open to the local user (a token is needed only
when one was given) and answers only requests addressed to a loopback host name, so that a web
page elsewhere cannot reach it through DNS rebinding. Bound to any other address it needs a
token: ``Authorization: Bearer <token>``, the ``cryowarp_token`` cookie, or ``?token=``.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "COOKIE_NAME",
    "MAX_BODY_BYTES",
    "AccessPolicy",
    "BodyLimit",
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


class BodyLimit:
    """ASGI middleware: a request body larger than ``limit_bytes`` is answered 413 before the
    application sees it, whether it came with a ``Content-Length`` or in chunks."""

    def __init__(self, app: ASGIApp, *, limit_bytes: int) -> None:
        self.app = app
        self.limit_bytes = limit_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        total, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.limit_bytes:
                await _send_json(
                    send, 413, f"request bodies are limited to {self.limit_bytes} bytes"
                )
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _send_json(send: Send, status: int, message: str) -> None:
    payload: Any = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})

"""Basic authentication and response headers on every endpoint, from the web configuration.

A request without valid credentials gets ``401`` with ``WWW-Authenticate``.
A wrong password and an unknown user cost the same: an unknown user is
checked against a dummy bcrypt hash of the configured cost, so the time to
refuse does not tell which user names exist. bcrypt runs in a worker thread
(it is slow by design, tens of milliseconds) and a successful check is
remembered (keyed by a SHA-256 of user, hash and password, never the
password itself), so a scraper pays for bcrypt once, not on every scrape;
changing a user's hash in the file invalidates it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import bcrypt
from aiohttp import web

from wasp.exporter.webconfig import WebConfig, WebConfigWatcher, bcrypt_cost

__all__ = ["WebGuard"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

class WebGuard:
    """The aiohttp middleware: basic auth (when users are configured) and headers."""

    def __init__(self, watcher: WebConfigWatcher, *, unauthenticated: tuple[str, ...] = (),
                 cache_size: int = 256) -> None:
        self.watcher = watcher
        self.unauthenticated = frozenset(unauthenticated)
        self._ok: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size
        self._dummies: dict[int, bytes] = {}

    def _dummy(self, cost: int) -> bytes:
        if cost not in self._dummies:
            self._dummies[cost] = bcrypt.hashpw(b"wasp-no-such-user", bcrypt.gensalt(cost))
        return self._dummies[cost]

    async def authorized(self, cfg: WebConfig, header: str | None) -> bool:
        """True when `header` carries a configured user and its password."""
        users = cfg.users_map
        user, password = _credentials(header)
        stored = users.get(user) if user is not None else None
        key = hashlib.sha256(b"\0".join((
            (user or "").encode(), stored or b"", password or b""))).digest()
        if stored is not None and key in self._ok:
            self._ok.move_to_end(key)
            return True
        # an unknown user, a malformed header: the same bcrypt work as a wrong password
        cost = max(bcrypt_cost(h) for h in users.values())
        target = stored if stored is not None else self._dummy(cost)
        ok = await asyncio.to_thread(bcrypt.checkpw, password or b"", target)
        if not (ok and stored is not None):
            return False
        self._ok[key] = None
        while len(self._ok) > self._cache_size:
            self._ok.popitem(last=False)
        return True

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Refuse without credentials (unless the path is exempt); add the configured headers."""
        cfg = self.watcher.current()
        if cfg.users and request.path not in self.unauthenticated and not await self.authorized(
                cfg, request.headers.get("Authorization")):
            resp: web.StreamResponse = web.Response(
                status=401, text="401 Unauthorized\n",
                headers={"WWW-Authenticate": 'Basic realm="wasp", charset="UTF-8"'})
        else:
            try:
                resp = await handler(request)
            except web.HTTPException as e:
                _add_headers(e, cfg)
                raise
        _add_headers(resp, cfg)
        return resp


def _add_headers(resp: web.StreamResponse, cfg: WebConfig) -> None:
    for name, value in cfg.headers:
        resp.headers[name] = value


def _credentials(header: str | None) -> tuple[str | None, bytes | None]:
    if not header:
        return None, None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None, None
    user, sep, password = raw.partition(b":")
    if not sep:
        return None, None
    try:
        return user.decode(), password
    except UnicodeDecodeError:
        return None, None

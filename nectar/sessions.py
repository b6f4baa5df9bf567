"""The web UI's session: an opaque signed value that stands for an API token without containing it.

A session is ``<expires>.<nonce>.<mac>``: a unix time, 16 random bytes and the HMAC-SHA256, under a key derived
from the signing secret (:mod:`nectar.signing`), of the three together with the SHA-256 of the token it was opened
with. Nothing in it reveals the token or which one it is; any API process that shares the secret (every gunicorn
worker, every machine given the same ``NECTAR_SECRET_KEY``) recognises it without shared memory, by computing the
MAC for each configured token; a token removed from the configuration ends its sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable

from nectar.auth import TokenEntry

#: seconds a session lasts (a working day); then the page asks for the token again
SESSION_LIFETIME = 12 * 3600
_NONCE_BYTES = 16
#: what the session key is derived for: a MAC of one use is never valid as the other's
_PURPOSE = b"datanectar web UI session"


class SessionSigner:
    """Opens sessions for token entries, and finds the entry of a session."""

    def __init__(self, secret: bytes, lifetime: int = SESSION_LIFETIME) -> None:
        if not secret:
            raise ValueError("the signing secret must not be empty")
        self._key = hmac.new(secret, _PURPOSE, hashlib.sha256).digest()
        self.lifetime = lifetime

    def _mac(self, expires: str, nonce: str, entry: TokenEntry) -> str:
        message = f"{expires}.{nonce}.".encode("ascii") + entry.digest
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def open(self, entry: TokenEntry, now: float | None = None) -> str:
        """A new session for ``entry``, valid for :attr:`lifetime` seconds."""
        expires = str(int(time.time() if now is None else now) + self.lifetime)
        nonce = secrets.token_hex(_NONCE_BYTES)
        return f"{expires}.{nonce}.{self._mac(expires, nonce, entry)}"

    def entry(self, session: str, entries: Iterable[TokenEntry], now: float | None = None) -> TokenEntry | None:
        """The configured entry ``session`` was opened with; None if it is malformed, expired or of no entry.
        Every entry is compared, in constant time, whatever matches."""
        expires, _, rest = session.partition(".")
        nonce, _, mac = rest.partition(".")
        if not (expires.isascii() and expires.isdigit() and len(expires) <= 12 and nonce.isascii() and mac.isascii()):
            return None
        if int(expires) < (time.time() if now is None else now):
            return None
        given = mac.encode("ascii")
        found = None
        for entry in entries:
            if hmac.compare_digest(self._mac(expires, nonce, entry).encode("ascii"), given):
                found = entry
        return found

"""API tokens: configured as SHA-256 hashes, never stored or logged in clear, checked in constant time.

A token entry is ``<sha256 hex of the token>:<scope>[:<name>]``, scope ``read`` or ``write``
(``write`` can also read). Entries come from ``NECTAR_API_TOKENS`` (comma-separated) and from
the file ``NECTAR_API_TOKENS_FILE`` (one per line, ``#`` comments). With no entry configured,
authentication is off (the local embedded default). Tokens are random and long
(:func:`new_token`), so a plain SHA-256 is the right hash: a slow password hash buys nothing
against 256 bits of entropy and would cost every request.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from nectar.errors import NectarError

_ENTRY = re.compile(r"(?P<digest>[0-9a-f]{64}):(?P<scope>read|write)(?::(?P<name>[A-Za-z0-9_.@-]{1,64}))?")


class Scope(IntEnum):
    READ = 1
    WRITE = 2


class InvalidTokenConfig(NectarError):
    """A token entry that does not follow the grammar (its text is never repeated: it may hold a secret)."""


class Unauthenticated(NectarError):
    """No token, or a token that is not configured (HTTP 401)."""


class Forbidden(NectarError):
    """A configured token whose scope does not allow the request (HTTP 403)."""


@dataclass(frozen=True)
class TokenEntry:
    digest: bytes
    scope: Scope
    name: str


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_token() -> tuple[str, str]:
    """A fresh token and the hash to configure for it (``<hex>``)."""
    token = secrets.token_urlsafe(32)
    return token, digest(token).hex()


def parse_entries(lines: Iterable[str], origin: str) -> list[TokenEntry]:
    entries = []
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _ENTRY.fullmatch(line)
        if match is None:
            raise InvalidTokenConfig(
                f"{origin}, entry {number}: expected <sha256 hex>:<read|write>[:<name>] (configure hashes, not tokens)"
            )
        name = match["name"] or f"token-{match['digest'][:8]}"
        entries.append(TokenEntry(bytes.fromhex(match["digest"]), Scope[match["scope"].upper()], name))
    return entries


class TokenChecker:
    """Decides whether a request's bearer token may read or write."""

    def __init__(self, entries: Iterable[TokenEntry], protect_reads: bool = True) -> None:
        self.entries = list(entries)
        self.protect_reads = protect_reads

    @classmethod
    def from_config(cls, tokens: str | None, tokens_file: Path | None, protect_reads: bool = True) -> TokenChecker:
        entries = parse_entries((tokens or "").split(","), "NECTAR_API_TOKENS")
        if tokens_file is not None:
            entries += parse_entries(Path(tokens_file).read_text(encoding="utf-8").splitlines(), str(tokens_file))
        return cls(entries, protect_reads)

    @property
    def enabled(self) -> bool:
        return bool(self.entries)

    def identify(self, token: str) -> TokenEntry | None:
        """The entry of ``token``; every entry is compared, in constant time, whatever matches."""
        presented = digest(token)
        found = None
        for entry in self.entries:
            if hmac.compare_digest(presented, entry.digest):
                found = entry
        return found

    def authorize(self, authorization: str | None, needs: Scope) -> TokenEntry | None:
        """The entry allowed to do what ``needs``; raises :class:`Unauthenticated` or :class:`Forbidden`."""
        if not self.enabled or (needs == Scope.READ and not self.protect_reads):
            return None
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("a bearer token is required: send 'Authorization: Bearer <token>'")
        entry = self.identify(token.strip())
        if entry is None:
            raise Unauthenticated("the bearer token is not valid")
        if entry.scope < needs:
            raise Forbidden(f"token '{entry.name}' may only read; this request needs a write token")
        return entry

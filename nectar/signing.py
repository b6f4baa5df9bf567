"""Sign and verify expiring download URLs for local targets, like S3's presigned URLs.

A signature is the hex HMAC-SHA256 of ``<key>\\n<expires>`` (a unix time) under a secret:
``NECTAR_SECRET_KEY`` if set, else a random one created once in ``<data_dir>/secret_key`` (linked into place
whole, refused if there, so every process of a deployment that shares the data folder shares the secret). A URL
is valid until its ``expires``, which may lie at most the configured lifetime (``NECTAR_URL_EXPIRY``)
ahead, give or take :data:`CLOCK_SKEW`: no signature is a longer-lived credential than the links the API
hands out.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path

from nectar.config import Settings
from nectar.errors import InvalidSignature

SECRET_ENV = "NECTAR_SECRET_KEY"
SECRET_FILE = "secret_key"
_SECRET_BYTES = 32
#: seconds an expiry may lie beyond the lifetime, for the clocks of the API's machines to disagree
CLOCK_SKEW = 60
#: seconds a signed URL lives when no lifetime is given: :class:`~nectar.config.Settings`' ``url_expiry``
DEFAULT_LIFETIME = Settings.url_expiry


def _read_secret_file(path: Path, timeout: float = 2.0) -> str:
    """The secret in ``path``, waiting for a creator of an older release (which wrote the file in place) to finish."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(encoding="ascii").strip()
        if len(text) == 2 * _SECRET_BYTES or time.monotonic() > deadline:
            if not text:
                raise RuntimeError(f"secret file {path} is empty: delete it, and it is made again at the next start")
            return text
        time.sleep(0.01)


def load_secret(
    settings: Settings, environ: Mapping[str, str] | None = None, env: str = SECRET_ENV, filename: str = SECRET_FILE
) -> bytes:
    """A shared secret (by default the signing one): from ``env`` in the environment, or created once in the
    data folder as ``filename`` (mode 0600), whole or not at all (:func:`_create_whole`)."""
    environ = os.environ if environ is None else environ
    if environ.get(env):
        return environ[env].encode("utf-8")
    path = settings.data_dir / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        secret = secrets.token_hex(_SECRET_BYTES)
        if _create_whole(path, secret):
            return secret.encode("ascii")
    return _read_secret_file(path).encode("ascii")


def _create_whole(path: Path, text: str) -> bool:
    """Create ``path`` holding ``text`` (mode 0600) unless another process created it first (False): written and
    synced under a temporary name, then linked as ``path``, so a process stopped part-way (kill -9) leaves no empty
    or partial file that every later start would refuse."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)  # atomic, and refused if ``path`` exists: the first creator's secret is everyone's
    except FileExistsError:
        return False
    finally:
        temporary.unlink(missing_ok=True)
    return True


class UrlSigner:
    """Signs ``(key, expires)`` pairs and checks them back; ``max_lifetime``: the seconds a URL lives."""

    def __init__(self, secret: bytes, max_lifetime: int = DEFAULT_LIFETIME) -> None:
        if not secret:
            raise ValueError("the signing secret must not be empty")
        #: the HMAC keyed with the secret and fed nothing: each signature is a copy of it (the key's setup, two
        #: SHA-256 blocks, done once rather than for every URL)
        self._keyed = hmac.new(secret, digestmod=hashlib.sha256)
        self.max_lifetime = max_lifetime

    def signature(self, key: str, expires: int) -> str:
        mac = self._keyed.copy()
        mac.update(f"{key}\n{expires}".encode())
        return mac.hexdigest()

    def sign(self, key: str, expires_in: int, now: float | None = None) -> dict[str, str]:
        """The query a download URL carries: ``key``, ``expires`` and ``signature``."""
        if expires_in > self.max_lifetime:
            raise ValueError(f"a signed URL lives at most {self.max_lifetime} s, not {expires_in}")
        expires = int(time.time() if now is None else now) + int(expires_in)
        return {"key": key, "expires": str(expires), "signature": self.signature(key, expires)}

    def verify(self, key: str, expires: str, signature: str, now: float | None = None) -> None:
        """Raise :class:`InvalidSignature` unless the signature matches, has not expired and does not expire
        further ahead than the lifetime (plus :data:`CLOCK_SKEW`)."""
        if not (expires.isascii() and expires.isdigit() and len(expires) <= 12):
            raise InvalidSignature(f"expires {expires[:40]!r} is not a unix time")
        expires_at = int(expires)
        # bytes, not str: compare_digest refuses non-ASCII text, and a forged signature may be anything
        given = signature.encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(self.signature(key, expires_at).encode(), given):
            raise InvalidSignature("signature does not match the key and expiry")
        now = time.time() if now is None else now
        if now > expires_at:
            raise InvalidSignature("signed URL has expired")
        if expires_at - now > self.max_lifetime + CLOCK_SKEW:
            raise InvalidSignature(f"signed URL expires too far ahead: one lives at most {self.max_lifetime} s")

"""The Host allow-list: the API answers to its own names only, so a page whose DNS name was rebound to it is refused.

A browser on a page of ``rebind.evil.example`` whose name now points at this API sends
``Host: rebind.evil.example`` (and that Origin): the page's writes and reads are same-origin to the browser, so only
the Host tells them apart. Allowed are ``localhost``, ``127.0.0.1`` and ``[::1]`` (any port), the host of
``NECTAR_PUBLIC_URL`` and the names in ``NECTAR_ALLOWED_HOSTS``; any other Host is answered ``421``. ``/healthz``
stays open to any Host: a load balancer's probe names the machine by its address.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from flask import Flask
from flask_smorest import abort

from nectar.config import Settings
from nectar.hostnames import LOOPBACK_NAMES, host_name

if TYPE_CHECKING:
    from api.guards import Asked

#: endpoints any Host may reach (a load balancer probes ``http://10.0.3.7:5000/healthz``)
ANY_HOST_ENDPOINTS = frozenset({"health.Health"})
#: Host values whose verdict is kept (the header is the client's: the cache must not grow without bound)
MAX_KEPT = 256
#: how much of a refused Host its error message repeats
SHOWN = 100


class HostAllowList:
    """Whether a Host header names this service, each distinct value decided once."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(name.strip().lower().rstrip(".") for name in names if name.strip())
        self._verdicts: dict[str, bool] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> HostAllowList:
        public = urlsplit(settings.public_url).netloc if settings.public_url else ""
        extra = (settings.allowed_hosts or "").split(",")
        return cls([*LOOPBACK_NAMES, host_name(public), *(host_name(name) or name for name in extra)])

    def allows(self, host: str) -> bool:
        verdict = self._verdicts.get(host)
        if verdict is None:
            if len(self._verdicts) >= MAX_KEPT:
                self._verdicts.clear()
            verdict = self._verdicts[host] = host_name(host) in self.names
        return verdict


def refusal(host: str) -> str:
    shown = host if len(host) <= SHOWN else f"{host[:SHOWN]}…"
    return (
        f"this service does not answer to the host {shown!r}: if clients reach it by that name, set "
        "NECTAR_PUBLIC_URL to the URL they use, or add the name to NECTAR_ALLOWED_HOSTS"
    )


def install(app: Flask, settings: Settings) -> HostAllowList:
    """The allow-list of ``settings``, kept in ``app``: :func:`refuse_foreign_host` checks every request by it
    (:mod:`api.guards`), before its token or its view is looked at."""
    allowed = app.extensions["nectar_hosts"] = HostAllowList.from_settings(settings)
    return allowed


def refuse_foreign_host(request: Asked, allowed: HostAllowList) -> None:
    """Refuse (421) ``request`` when its Host is not allowed (unless its endpoint is open to any Host)."""
    environ = request.environ
    host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")  # as werkzeug reads it for links
    if not allowed.allows(host) and request.endpoint not in ANY_HOST_ENDPOINTS:
        abort(421, message=refusal(host))

"""Refuse writes that a page of another site makes a browser send (the API may run without tokens on a laptop)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from flask_smorest import abort
from werkzeug.wsgi import get_host

from api.hosts import HostAllowList

if TYPE_CHECKING:
    from api.guards import Asked

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: the port a browser leaves out of an Origin, by scheme
DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def cross_site(request: Asked, allowed: HostAllowList, public_url: str | None) -> bool:
    """Whether the browser says the request comes from another site (clients other than browsers say nothing).

    A page of this service has the origin of ``NECTAR_PUBLIC_URL``, or the origin of the (allowed) Host it was
    served by: an Origin naming a host off the allow-list is another site even when it equals the request's own
    Host (a DNS-rebound page sends both alike; :mod:`api.hosts` refuses such a Host first, this holds regardless).
    The headers are read from the environ, as werkzeug's ``request.headers`` and ``request.host`` read them.
    """
    environ = request.environ
    if environ.get("HTTP_SEC_FETCH_SITE") == "cross-site":
        return True
    origin = environ.get("HTTP_ORIGIN")
    if origin is None:
        return False
    if origin == "null":
        return True
    if public_url and origin == public_origin(public_url):
        return False
    netloc = urlsplit(origin).netloc
    return netloc != get_host(environ) or not allowed.allows(netloc)


def public_origin(public_url: str) -> str:
    """The origin (``scheme://host[:port]``) of the public URL, as a browser writes it in ``Origin``."""
    parts = urlsplit(public_url)
    netloc = parts.netloc.lower().removesuffix(DEFAULT_PORTS[parts.scheme])
    return f"{parts.scheme}://{netloc}"


def refuse_cross_site_write(request: Asked, allowed: HostAllowList, public_url: str | None) -> None:
    """Refuse (403) a write that a page of another site made a browser send (:mod:`api.guards` calls it)."""
    if request.method not in SAFE_METHODS and cross_site(request, allowed, public_url):
        abort(403, message="a write from a page of another site is refused (Origin/Sec-Fetch-Site)")

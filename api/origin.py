"""Refuse writes that a page of another site makes a browser send (the API may run without tokens on a laptop)."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, request
from flask_smorest import abort

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def cross_site() -> bool:
    """Whether the browser says the request comes from another site (clients other than browsers say nothing)."""
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    return origin == "null" or urlsplit(origin).netloc != request.host


def install(app: Flask) -> None:
    @app.before_request
    def same_site_writes_only() -> None:
        if request.method not in SAFE_METHODS and cross_site():
            abort(403, message="a write from a page of another site is refused (Origin/Sec-Fetch-Site)")

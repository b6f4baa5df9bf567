"""The current app's Nectar facade and URL signer, as views reach them."""

from __future__ import annotations

from flask import current_app

from nectar.service import Nectar
from nectar.signing import UrlSigner


def facade() -> Nectar:
    return current_app.extensions["nectar"]


def signer() -> UrlSigner:
    return current_app.extensions["nectar_signer"]

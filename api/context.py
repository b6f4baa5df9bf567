"""The current app's Nectar facade and URL signer, as views reach them."""

from __future__ import annotations

from flask import current_app

from nectar.service import Nectar
from nectar.signing import UrlSigner

#: the names of the facade and the signer in the app's ``extensions``
FACADE, SIGNER = "nectar", "nectar_signer"


def facade() -> Nectar:
    return current_app.extensions[FACADE]


def signer() -> UrlSigner:
    return current_app.extensions[SIGNER]

"""review9 (round 55): a WSGI app whose requests a test holds inside it, served by gunicorn under the service's
configuration and worker class: ``GET /hold/<name>`` marks its entry (``<name>.entered`` in ``$REVIEW9_APP_DIR``)
and is answered once the test opened and closed the FIFO ``<name>`` there; any other path is answered at once."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

#: the variable naming the folder of the FIFOs and entry marks
APP_DIR = "REVIEW9_APP_DIR"
APP = "tests.helpers.review9_app:create_app()"


def create_app() -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    folder = Path(os.environ[APP_DIR])

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        name = path.removeprefix("/hold/")
        if name != path:
            (folder / f"{name}.entered").touch()
            with open(folder / name, "rb") as fifo:  # waits for the test to open it, then for it to close it
                fifo.read()
        body = path.encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    return app


def hold(folder: Path, name: str) -> None:
    """Make the FIFO that a request to ``/hold/<name>`` waits on."""
    os.mkfifo(folder / name)


def entered(folder: Path, name: str) -> bool:
    """Whether a request to ``/hold/<name>`` is inside the app."""
    return (folder / f"{name}.entered").exists()


def release(folder: Path, name: str) -> None:
    """Let the request to ``/hold/<name>`` be answered (once it is inside the app: opening the FIFO waits for it)."""
    with open(folder / name, "wb"):
        pass

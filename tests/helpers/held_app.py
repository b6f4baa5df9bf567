"""A WSGI app whose requests a test holds inside it: ``GET /hold/<name>`` marks its entry (``<name>.entered`` in
``$HELD_APP_DIR``) and answers once the test opened and closed the FIFO ``<name>`` there (:func:`release`); any other
path is answered at once. Served by gunicorn under the service's configuration and worker class.

``HELD_APP_DIR=<folder> gunicorn -c python:nectar.gunicorn_conf 'tests.helpers.held_app:create_app()'``

With ``HELD_APP_NO_THREAD=<name>``, no thread of that name starts in its processes (:func:`refuse_thread`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

#: the variable naming the folder of the FIFOs and entry marks
HELD_APP_DIR = "HELD_APP_DIR"
#: the variable naming a thread that may not start (:func:`refuse_thread`)
NO_THREAD = "HELD_APP_NO_THREAD"
APP = "tests.helpers.held_app:create_app()"


def create_app() -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    folder = Path(os.environ[HELD_APP_DIR])
    if NO_THREAD in os.environ:
        refuse_thread(os.environ[NO_THREAD])

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        name = path.removeprefix("/hold/")
        if name == path:
            name = path.lstrip("/")
        else:
            (folder / f"{name}.entered").touch()
            with open(folder / name, "rb") as fifo:  # waits for the test to open it, then for it to close it
                fifo.read()
            name = f"released {name}"
        body = name.encode()
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


def refuse_thread(name: str) -> None:
    """A thread named ``name`` is refused as its start is asked, as Python refuses one when the process may start no
    thread more (its limit of threads, the machine's memory): ``RuntimeError: can't start new thread``. Set in
    gunicorn's master as it loads the app, so in every worker it forks."""
    start = threading.Thread.start

    def refusing(thread: threading.Thread) -> None:
        if thread.name == name:
            raise RuntimeError("can't start new thread")
        start(thread)

    setattr(threading.Thread, "start", refusing)  # noqa: B010 (a method replaced: mypy refuses the assignment)

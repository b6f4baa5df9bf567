"""A wait on a run's status that fetches the links of each status it sees once, not at every poll.

The suite fetches every link a status hands out the moment the status arrives (tests/links.py). A wait polling a
status every 0.1 s until its run ends fetched the same links again at each poll: a status, its logs and its outputs
each 0.1 s while a worker ran, the test's CPU and the server's (gunicorn's, over HTTP) taken from the processes the
test waited for. A status whose job state, attempt and links are those of one already checked in the same wait hands
out nothing new: its links were fetched as that one arrived.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.links import check_links, fetched, handed_out


class LinksOnce:
    """The statuses one wait has checked the links of, by their job's state, attempt and the links they hand out."""

    def __init__(self) -> None:
        self.checked: set[tuple[object, object, tuple[str, ...]]] = set()

    def check(self, body: Any, source: str, fetch: Callable[[str], int] = fetched) -> None:
        """:func:`~tests.links.check_links` for ``body`` (an envelope) unless a status of the same state and attempt
        handing out the same links was checked in this wait already."""
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            check_links(body, source, fetch)
            return
        seen = (data.get("job_status"), data.get("attempt"), tuple(handed_out(data)))
        if seen not in self.checked:
            check_links(body, source, fetch)
            self.checked.add(seen)

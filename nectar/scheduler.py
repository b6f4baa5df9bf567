"""A small client of luigid's JSON RPC, for asking about one task (never the whole task list)."""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import quote

import requests

from nectar.errors import SchedulerUnavailable


class SchedulerClient:
    """Talks to a luigi central scheduler at ``url`` (e.g. ``http://localhost:8082``)."""

    def __init__(self, url: str, timeout: float = 2.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._local = threading.local()

    @property
    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def call(self, method: str, **data: Any) -> Any:
        try:
            answer = self._session.get(
                f"{self.url}/api/{method}", params={"data": json.dumps(data)}, timeout=self.timeout
            )
            answer.raise_for_status()
            return answer.json()["response"]
        except (requests.RequestException, ValueError, KeyError) as exc:
            raise SchedulerUnavailable(f"luigi scheduler at {self.url}: {method} failed: {exc}") from exc

    def check(self) -> str:
        self.call("worker_list")
        return f"luigid {self.url}"

    def task(self, task_id: str) -> dict[str, Any] | None:
        """The scheduler's record of one task (status, workers, deps), or None if unknown."""
        graph = self.call("dep_graph", task_id=task_id, include_done=True) or {}
        found = graph.get(task_id)
        return found if isinstance(found, dict) else None

    def task_url(self, task_id: str) -> str:
        """The task in luigid's visualiser."""
        return f"{self.url}/static/visualiser/index.html#tab=graph&taskId={quote(task_id)}"

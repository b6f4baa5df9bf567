"""The suite's check that every link a status hands out answers 200, fetched the moment the status arrives."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import requests

#: the answers whose links are checked: a status, a run, and a submission answered at once (200)
STATUS_PATH = re.compile(r"^/api/(chainstatus|runs/[^/]+)/?$")
SUBMIT_PATH = re.compile(r"^/api/chains/[^/]+/[^/]+/[^/]+/?$")
LINK_FIELDS = ("resource_url", "stdout_url", "stderr_url")

#: the reason of the running test's ``links_may_fail`` marker: its links are not fetched
exempt: str | None = None


def is_status_answer(method: str, path: str, status_code: int) -> bool:
    """Whether an answer is one whose links the check fetches."""
    if status_code != 200:
        return False
    if method == "GET":
        return bool(STATUS_PATH.match(path))
    return method == "POST" and bool(SUBMIT_PATH.match(path))


def handed_out(data: dict[str, Any]) -> list[str]:
    """Every link of a status's data: its own, each step's logs, each output's download."""
    urls = [data.get(name) for name in LINK_FIELDS]
    for step in data.get("steps") or []:
        urls += [step.get("stdout_url"), step.get("stderr_url")]
    urls += [output.get("url") for output in data.get("outputs") or []]
    return [url for url in urls if isinstance(url, str) and url]


def fetched(url: str) -> int:
    """The HTTP status of a GET of ``url`` on the network (a real server, or S3's presigned URL)."""
    with requests.get(url, timeout=60, stream=True) as answer:
        return answer.status_code


def check_links(body: Any, source: str, fetch: Callable[[str], int] = fetched) -> None:
    """Fetch every link the answer ``body`` (an envelope) hands out; each must answer 200."""
    data = body.get("data") if isinstance(body, dict) else None
    if exempt is not None or not isinstance(data, dict):
        return
    for url in handed_out(data):
        code = fetch(url)
        assert code == 200, f"{url} answered {code}; handed out by {source}: {json.dumps(data)[:3000]}"

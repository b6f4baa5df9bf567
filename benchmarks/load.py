"""Closed-loop HTTP clients on keep-alive connections: requests per second, and each request's latency."""

from __future__ import annotations

import http.client
import math
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from benchmarks.harness import median, percentile

Request = tuple[str, str]  # (method, path with query)

#: seconds past a burst's own bound (its duration, and each request's timeout) its clients are waited for
JOIN_MARGIN = 10.0


@dataclass
class Load:
    """What a burst of requests got: completed requests per second and each one's latency."""

    rate: float
    latencies: list[float]
    statuses: Counter[int]
    errors: int

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 99)

    def check(self, *ok: int) -> Load:
        """Raise unless every request was answered with one of ``ok``."""
        wrong = {code: n for code, n in self.statuses.items() if code not in ok}
        if wrong or self.errors:
            raise RuntimeError(f"unexpected answers {wrong} and {self.errors} connection errors")
        return self


class RanOut(RuntimeError):
    """A burst of each request once (``hammer``'s ``once``) whose list ended before its duration: its clients idled
    for the rest, and its rate is not a burst's as long as asked."""


@dataclass
class _Client:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    last: float = 0.0
    #: seconds into the burst this client found the list's end before the burst's duration did, if it did
    ran_out: float | None = None


def hammer(
    base_url: str,
    requests: Sequence[Request],
    clients: int = 16,
    duration: float | None = 2.0,
    per_client: int | None = None,
    timeout: float = 60.0,
    once: bool = False,
) -> Load:
    """``clients`` closed-loop clients (a thread and a keep-alive connection each) go through ``requests``.

    Each sends its next request as soon as the last one is answered, for ``duration`` seconds or
    ``per_client`` requests. Past the list's last request they start again from its first, but in a burst of a
    count of writes (``duration`` None and a request not a GET or HEAD: a new run's POST), which ends at the list's
    end: each sent once, where a whole number of requests per client was not (450 runs over 16 clients of 29 each
    POSTed 14 runs twice). ``once``: each request of the list sent once at most, for ``duration`` seconds: a burst of
    new runs as long as a hello burst, every client busy to its end (:mod:`benchmarks.submit`); a list that ends
    before the duration does is an error (:class:`RanOut`), not a shorter burst. http.client over a raw connection
    keeps the client's own CPU small: on a 2-core machine it shares the cores with the server.
    """
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    states = [_Client() for _ in range(clients)]
    barrier = threading.Barrier(clients + 1)
    started: list[float] = []
    again = not once and (duration is not None or all(method in ("GET", "HEAD") for method, _ in requests))
    ends_at = math.inf if again else len(requests)

    def client(index: int) -> None:
        state = states[index]
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        k = index
        barrier.wait()
        stop_at = started[0] + duration if duration is not None else math.inf
        try:
            while k < ends_at and time.perf_counter() < stop_at and (per_client is None or k // clients < per_client):
                method, path = requests[k % len(requests)]
                k += clients
                began = time.perf_counter()
                try:
                    conn.request(method, path)
                    answer = conn.getresponse()
                    answer.read()
                except (OSError, http.client.HTTPException):
                    state.errors += 1
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=timeout)
                    continue
                state.last = time.perf_counter()
                state.latencies.append(state.last - began)
                state.statuses[answer.status] += 1
                if answer.will_close:
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=timeout)
            if k >= ends_at and (now := time.perf_counter()) < stop_at:
                state.ran_out = now - started[0]
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    started.append(time.perf_counter())
    barrier.wait()
    # every client is done by then unless a server answers too slowly for a request to time out (or a list of reads
    # with neither a duration nor a count goes round for ever): a burst that ends there says so, rather than answer the
    # rate of the requests answered so far while its clients go on sending
    bound = (duration or 0) + timeout * (per_client or 1) + JOIN_MARGIN
    deadline = time.perf_counter() + bound
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.perf_counter()))
    if running := sum(thread.is_alive() for thread in threads):
        raise RuntimeError(
            f"{running} of {clients} clients still sending {bound:g} s after the burst began (its duration "
            f"{duration}, {per_client} requests a client, each timing out after {timeout:g} s without a byte)"
        )
    ran_out = [s.ran_out for s in states if s.ran_out is not None]
    if once and duration is not None and ran_out:
        raise RanOut(
            f"a burst of each request once for {duration:g} s ran out of its list of {len(requests):,} requests: a "
            f"client found its end {min(ran_out):.3f} s into the burst ({len(ran_out)} of {clients} clients before "
            "the burst's end)"
        )
    latencies = [x for s in states for x in s.latencies]
    end = max((s.last for s in states), default=started[0])
    statuses: Counter[int] = Counter()
    for s in states:
        statuses.update(s.statuses)
    rate = len(latencies) / (end - started[0]) if end > started[0] else 0.0
    return Load(rate, latencies, statuses, sum(s.errors for s in states))


def median_rate(loads: Sequence[Load]) -> float:
    return median([load.rate for load in loads])


def median_p99(loads: Sequence[Load]) -> float:
    return median([load.p99 for load in loads])


def samples(loads: Sequence[Load]) -> str:
    """How many latencies each repeat's percentile was taken of (the fewest), for the table."""
    return f"n≥{min((len(load.latencies) for load in loads), default=0):,} per repeat, median of {len(loads)}"


def rates(loads: Sequence[Load]) -> str:
    """Each repeat's requests per second, for the log."""
    return ", ".join(f"{load.rate:.0f}" for load in loads)

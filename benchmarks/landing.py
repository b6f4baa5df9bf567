"""A trigger benchmark's world: moto serving old objects, the trigger made in this process, new objects PUT."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from benchmarks.harness import CHAIN, CHAIN_TYPE, Cluster
from harness import MOTO_CREDENTIALS, REPO, PortTaken, Processes, Served, base_env, on_a_free_port
from nectar.config import Settings, configure
from nectar.service import Nectar
from nectar.triggers.book import TriggerBook

TASK = f"{CHAIN_TYPE}/{CHAIN}/LandedTask"
BUCKET, PREFIX = "bench-landing", "landing/"
#: the old objects' keys, given 0, 1, ...
OLD_KEYS = PREFIX + "0-old-{:06d}.csv"
#: seconds moto may take to put the old objects in and answer: fails a hung start only


def new_key(n: int) -> str:
    """Keys that land after the old ones in S3's order, each after the last (as timestamped names do)."""
    return f"{PREFIX}1-new-{n:06d}.csv"


class S3Requests:
    """Every S3 request of this process's clients made after it, by operation (botocore's ``before-call`` event,
    registered on boto3's default session, whose handlers each client made from it copies)."""

    def __init__(self) -> None:
        import boto3

        self.seen: Counter[str] = Counter()
        boto3.setup_default_session()
        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.register("before-call.s3", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.seen[model.name] += 1

    def total(self) -> int:
        return sum(self.seen.values())


@contextmanager
def in_process(settings: Settings, endpoint: str) -> Iterator[None]:
    """This process pointed at the case's moto and settings (the listing reads ``AWS_*``), put back after."""
    values = {"AWS_ENDPOINT_URL": endpoint, **MOTO_CREDENTIALS}
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    configure(settings)
    try:
        yield
    finally:
        configure(None)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def writer(endpoint: str) -> Any:
    """An S3 client of its own session: the hook does not count its requests."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=MOTO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=MOTO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=MOTO_CREDENTIALS["AWS_DEFAULT_REGION"],
    )
    return session.client("s3", endpoint_url=endpoint, config=Config(retries={"max_attempts": 5}))


def seeded_moto(procs: Processes, old: int, port: int | None = None, timeout: float = 60.0) -> Served:
    """moto serving ``old`` objects (:mod:`benchmarks.seeded_moto`) on ``port`` (or a free one), started again on
    another free one when that one was taken before moto bound it (:func:`harness.on_a_free_port`); answers before
    this returns, or raises after ``timeout`` (a benchmark's: :mod:`benchmarks.patience`)."""

    def start(port: int) -> Served:
        seed = ["--port", str(port), "--bucket", BUCKET, "--keys", OLD_KEYS, "--count", str(old)]
        moto = procs.start("moto", [sys.executable, "-m", "benchmarks.seeded_moto", *seed], base_env(), REPO)
        try:
            procs.wait_up(moto, f"http://127.0.0.1:{port}/", f"moto seeded with {old:,} objects", timeout=timeout)
        except PortTaken:
            procs.kill(moto)
            raise
        return Served(moto, port)

    return on_a_free_port(start, port)


class Landing:
    """A case's world: moto with the old objects (put in its memory before it serves: see
    :mod:`benchmarks.seeded_moto`), the trigger made in this process, new keys in order."""

    def __init__(self, cluster: Cluster, old: int, poll_s: float) -> None:
        self.cluster = cluster
        began = time.monotonic()  # the first start of the case: bounded by the floor, a Python's start measured now
        self.endpoint = f"http://127.0.0.1:{seeded_moto(cluster.procs, old, timeout=cluster.patience.bound()).port}"
        took = time.monotonic() - began
        cluster.patience.started(took, f"moto seeded with {old:,} objects")
        print(f"moto serves {old:,} old objects after {took:.1f} s", flush=True)
        self.client = writer(self.endpoint)
        self.written = 0
        self.requests = S3Requests()
        with in_process(cluster.settings, self.endpoint):
            self.nectar = Nectar(cluster.settings)
            self.book: TriggerBook = self.nectar.triggers
            definition = {"task": TASK, "prefix": f"s3://{BUCKET}/{PREFIX}", "glob": "*.csv", "param": "path"}
            self.id = self.book.create({**definition, "existing": "new", "poll_s": poll_s}).id
        print(f"the trigger starts after the old objects: {dict(self.requests.seen)} at its creation", flush=True)

    def land(self, count: int) -> dict[str, float]:
        """PUT ``count`` new objects one after the other; when each PUT returned, by URI."""
        returned = {}
        for _ in range(count):
            key = new_key(self.written)
            self.client.put_object(Bucket=BUCKET, Key=key, Body=b"new")
            returned[f"s3://{BUCKET}/{key}"] = time.time()
            self.written += 1
        return returned

    def raw_list(self) -> float:
        """Seconds one ListObjectsV2 after the last key takes: what an idle poll asks the store."""
        began = time.perf_counter()
        self.client.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX, StartAfter=new_key(self.written))
        return time.perf_counter() - began

    def claimed(self) -> int:
        return self.book.runs.trigger_counts()[self.id].objects

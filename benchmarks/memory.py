"""Memory: an API worker's RSS after 10,000 requests; the peak RSS of a task writing a big out.txt to S3 (moto)."""

from __future__ import annotations

import time
from urllib.parse import quote

import boto3

from benchmarks.harness import (
    CHAIN,
    CHAIN_TYPE,
    Context,
    Figure,
    at_most,
    rss_kb,
    submit,
    wait_run,
)
from benchmarks.load import Request, hammer
from benchmarks.population import Probe, fill_registry, fill_store
from harness import MOTO_CREDENTIALS, free_port

NAME = "memory"
TASK_PATH = f"/api/chains/{CHAIN_TYPE}/{CHAIN}"
MB = 1024  # kB
KNOWN = 2_000


def mixed_requests(count: int) -> list[Request]:
    """What a busy API answers: status polls, finished and new submissions, the catalog, health (count of each kind)."""
    kinds: list[list[Request]] = [
        [("GET", f"/api/chainstatus?chain={quote(Probe(n % KNOWN).key.path, safe='/')}") for n in range(count)],
        [("POST", f"{TASK_PATH}/ProbeTask?n={n % KNOWN}") for n in range(count)],
        [("POST", f"{TASK_PATH}/ProbeTask?n={2_000_000 + n}") for n in range(count)],
        [("GET", f"/api/chains/{CHAIN_TYPE}")] * count,
        [("GET", "/healthz")] * count,
    ]
    return [request for group in zip(*kinds, strict=True) for request in group]


def api_rss(ctx: Context, requests: int) -> tuple[float, float]:
    """(RSS of the one API worker after ``requests`` mixed requests, its RSS after the first 100), in kB."""
    with ctx.cluster(f"{NAME}-api") as cluster:
        cluster.start_luigid()
        fill_registry(cluster.settings.registry_path, range(KNOWN))
        fill_store(cluster.settings.local_targets_dir, range(KNOWN))
        url = cluster.start_api(workers=1)  # one worker answers them all
        (worker,) = cluster.api_workers(url)
        mix = mixed_requests(requests // 5 + 1)
        hammer(url, mix[:100], 4, duration=None, per_client=25).check(200, 202)
        warm = rss_kb(worker)
        hammer(url, mix[100:requests], 16, duration=None, per_client=(requests - 100) // 16).check(200, 202)
        if cluster.api_workers(url) != [worker]:
            raise RuntimeError("the API worker was replaced while it was measured")
        return rss_kb(worker), warm


def upload_peak(ctx: Context, sizes: list[int]) -> dict[int, float]:
    """Peak RSS (kB) of BigFileTask(mb) writing ``mb`` MiB to S3 on a moto server, through the service, per size."""
    with ctx.cluster(f"{NAME}-s3", env="bench", project_bucket="memory") as cluster:
        port = free_port()
        cluster.procs.moto(port)
        endpoint = f"http://127.0.0.1:{port}"
        cluster.extra_env |= {"AWS_ENDPOINT_URL": endpoint, **MOTO_CREDENTIALS}
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket=cluster.settings.bucket)
        cluster.start_luigid()
        cluster.start_workers(1)
        url = cluster.start_api()
        peaks: dict[int, float] = {}
        for mb in sizes:
            began = time.monotonic()
            run_id, key = submit(url, f"{TASK_PATH}/BigFileTask?mb={mb}")
            wait_run(cluster.settings.registry_path, run_id, 1800, interval=0.2)
            peaks[mb] = next(float(kb) for m, kb in cluster.ledger_lines("peak_rss") if int(m) == mb)
            size = s3.head_object(Bucket=cluster.settings.bucket, Key=key)["ContentLength"]
            if size != mb << 20:
                raise RuntimeError(f"out.txt of BigFileTask(mb={mb}) has {size} bytes, not {mb << 20}")
            print(f"BigFileTask(mb={mb}): peak RSS {peaks[mb] / MB:.1f} MB, {time.monotonic() - began:.1f} s")
        return peaks


def run(ctx: Context) -> list[Figure]:
    requests = 3_000 if ctx.quick else 10_000
    size = 64 if ctx.quick else 1024
    after, warm = api_rss(ctx, requests)
    peaks = upload_peak(ctx, [1, size])
    return [
        Figure(
            NAME,
            f"API worker RSS after {requests:,} requests",
            after,
            "MB",
            "the same worker after 100",
            warm,
            at_most(80 * MB, "≤ 80 MB"),
        ),
        Figure(
            NAME,
            f"peak RSS, task writing {size:,} MB to S3",
            peaks[size],
            "MB",
            "the same task writing 1 MB",
            peaks[1],
            at_most(150 * MB, "≤ 150 MB"),
        ),
    ]

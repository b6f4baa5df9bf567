"""Status lookup: GET /api/chainstatus at 16 clients, beside the seed's lookup and a hello world (same gunicorn)."""

from __future__ import annotations

import random
from urllib.parse import quote

from benchmarks.harness import (
    Context,
    Figure,
    ratio_at_least,
    ratio_at_most,
)
from benchmarks.load import Load, Request, hammer, median_p99, median_rate, rates, samples
from benchmarks.population import Probe, fill_luigid, fill_registry, fill_store

NAME = "status"
CLIENTS = 16
#: runs known to luigid (and to the registry) for the main figures and the seed's lookup
MAIN_SIZE = 10_000
#: distinct keys the clients cycle through, drawn from the whole registry
SAMPLE = 2_000
#: share of a burst's requests per API worker after which one is recycled, in the figure with a recycle in each burst
RECYCLE_AT = 0.6


def recycles(before: list[int], after: list[int]) -> int:
    """How many API workers were replaced between two looks at their pids."""
    return len(set(after) - set(before))


def status_requests(prefix: str, size: int, seed: int = 0) -> list[Request]:
    rng = random.Random(seed)
    keys = [Probe(n).key.path for n in rng.sample(range(size), min(SAMPLE, size))]
    return [("GET", f"{prefix}?chain={quote(key, safe='/')}") for key in keys]


def run(ctx: Context) -> list[Figure]:
    sizes = [1_000, MAIN_SIZE] if ctx.quick else [1_000, MAIN_SIZE, 100_000]
    duration = 1.0 if ctx.quick else 2.0
    with ctx.cluster(NAME) as cluster:
        fill_store(cluster.settings.local_targets_dir, range(sizes[-1]))
        # luigid answers the seed's lookup; the service's lookup never asks it about a run the registry knows
        fill_luigid(cluster.start_luigid(), range(MAIN_SIZE))
        targets: dict[str, tuple[str, list[Request]]] = {}
        for size in sizes:  # a registry and an API each, all up at once
            data_dir = cluster.dir / f"data-{size}"
            fill_registry(data_dir / "runs.sqlite3", range(size))
            url = cluster.start_api(NECTAR_DATA_DIR=str(data_dir))
            targets[str(size)] = (url, status_requests("/api/chainstatus", size))
        # the baselines, served beside them under the same gunicorn settings
        base_url = cluster.start_api(app="benchmarks.baseline_app:create_app()")
        targets["hello"] = (base_url, [("GET", "/hello")])
        loads: dict[str, list[Load]] = {name: [] for name in targets}
        for url, requests in targets.values():  # warm every worker thread
            hammer(url, requests, CLIENTS, duration=min(1.0, duration)).check(200)
        names = list(targets)
        for r in range(ctx.repeats):  # interleaved and rotated, so that all see the same noise
            for name in names[r % len(names) :] + names[: r % len(names)]:
                url, requests = targets[name]
                loads[name].append(hammer(url, requests, CLIENTS, duration=duration).check(200))
        print("requests/s per repeat:", "; ".join(f"{name} {rates(found)}" for name, found in loads.items()))
        # the same lookups by an API whose workers are each recycled about once a burst (gunicorn's max_requests, set
        # from the rate just measured), each burst beside one by the API that recycles none, so both see the same noise
        main_url, main_requests = targets[str(MAIN_SIZE)]
        per_worker = median_rate(loads[str(MAIN_SIZE)]) * duration / 2
        max_requests = max(50, int(per_worker * RECYCLE_AT))
        data_dir = cluster.dir / f"data-{MAIN_SIZE}"
        recycled_url = cluster.start_api(NECTAR_DATA_DIR=str(data_dir), NECTAR_API_MAX_REQUESTS=str(max_requests))
        hammer(recycled_url, main_requests, CLIENTS, duration=min(1.0, duration)).check(200)
        steady, recycled, replaced, dropped = [], [], 0, 0
        for _ in range(ctx.repeats):
            steady.append(hammer(main_url, main_requests, CLIENTS, duration=duration).check(200))
            before = cluster.api_workers(recycled_url)
            load = hammer(recycled_url, main_requests, CLIENTS, duration=duration)
            replaced += recycles(before, cluster.api_workers(recycled_url))
            if set(load.statuses) - {200}:
                raise RuntimeError(f"a recycling API answered {dict(load.statuses)}")
            dropped += load.errors  # a keep-alive connection closed by a worker that exits: the client reconnects
            recycled.append(load)
        print(
            f"recycling API (max_requests {max_requests}): {replaced} workers replaced in {ctx.repeats} bursts, "
            f"{dropped} connections closed under a client; requests/s {rates(recycled)} beside {rates(steady)}"
        )
        # the seed's lookup takes seconds at 16 clients: each client sends one per repeat (600 s fails only a hung one)
        seed = [
            hammer(base_url, status_requests("/seed/chainstatus", MAIN_SIZE, r), CLIENTS, None, 1, 600).check(200)
            for r in range(ctx.repeats)
        ]
    at_main = f"at {MAIN_SIZE:,} runs, {CLIENTS} clients"
    main, hello = loads[str(MAIN_SIZE)], loads["hello"]
    rate, p99, hello_what = median_rate(main), median_p99(main), "hello-world JSON, same gunicorn"
    big, small = sizes[-1], sizes[0]
    flat = (f"lookups/s at {big:,} runs (registry and store)", median_rate(loads[str(big)]), "/s")
    return [
        Figure(NAME, f"lookups/s {at_main}", rate, "/s", "seed: 4 full task_list fetches", median_rate(seed),
               ratio_at_least(50)),
        Figure(NAME, f"lookups/s {at_main}", rate, "/s", hello_what, median_rate(hello), ratio_at_least(0.8)),
        Figure(NAME, f"p99 latency {at_main} ({samples(main)})", p99, "ms", f"{hello_what} ({samples(hello)})",
               median_p99(hello), ratio_at_most(1.25)),
        Figure(NAME, *flat, f"the same at {small:,} runs", median_rate(loads[str(small)]), ratio_at_least(0.95)),
        Figure(NAME, f"lookups/s {at_main}, an API worker recycled in each burst ({replaced} in {len(recycled)})",
               median_rate(recycled), "/s", "the same, no recycle (bursts beside them)", median_rate(steady),
               ratio_at_least(0.9)),
    ]  # fmt: skip

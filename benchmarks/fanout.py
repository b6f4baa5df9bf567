"""Fan-out: a task requiring N trivial tasks, launched through the API and run to DONE, beside a raw luigi.build."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from benchmarks.harness import (
    CHAIN,
    CHAIN_TYPE,
    MODULE,
    Cluster,
    Context,
    Figure,
    median,
    ratio_at_most,
    submit,
)
from harness import LUIGI_CFG

NAME = "fanout"
#: a raw luigi.build in a fresh interpreter; prints the seconds the build itself took
RAW_BUILD = f"""
import sys, time, luigi
from {MODULE} import FanoutTask
size, salt, host, port = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
began = time.perf_counter()
ok = luigi.build([FanoutTask(size=size, salt=salt)], workers=1, scheduler_host=host, scheduler_port=port)
print(time.perf_counter() - began)
sys.exit(0 if ok else 1)
"""


#: the work the fan-out's waits are sized from (:mod:`benchmarks.patience`): a whole build, raw or through the service
BUILD = "the slowest build of the fan-out yet, raw or through the service"


def raw_build(cluster: Cluster, size: int, salt: str, config: str) -> float:
    """Seconds of ``luigi.build([FanoutTask])`` with one worker against the cluster's luigid, under ``config``."""
    assert cluster.settings.scheduler_url
    scheduler = urlsplit(cluster.settings.scheduler_url)
    argv = [sys.executable, "-c", RAW_BUILD, str(size), salt, "127.0.0.1", str(scheduler.port)]
    env = cluster.env(PYTHONPATH=str(cluster.dir), LUIGI_CONFIG_PATH=config)
    slowest = cluster.patience.longest(BUILD)
    began = time.perf_counter()
    cluster.run_once("raw-build", argv, env, slowest, BUILD)
    cluster.patience.note(BUILD, time.perf_counter() - began)
    log = sorted(cluster.procs.logs.glob("raw-build-*.log"), key=lambda p: p.stat().st_mtime)[-1]
    return float(log.read_text().split()[-1])


#: what a worker logs as it finds luigid down, and as it finds it up again (``Executor._scheduler_up``)
LUIGID_DOWN, LUIGID_UP = "not claiming runs until luigid answers again", "luigid answers again: claiming runs"


def sees_luigid(log: str) -> bool:
    """Whether a worker whose log is ``log`` claims runs as far as luigid goes: each time it found luigid down (its
    restart between two measurements), it found it up again since."""
    return log.count(LUIGID_DOWN) == log.count(LUIGID_UP)


def through_service(cluster: Cluster, size: int, salt: str) -> float:
    """Seconds from POSTing FanoutTask to its run being DONE in the registry: to the ``finished_at`` its attempt wrote
    there (this host's clock), not to the look that found it, which came up to a poll's interval later (50 ms, ~10 %
    of the figure at the quick size, always added)."""
    began = time.time()
    run_id, _ = submit(cluster.api_url, f"/api/chains/{CHAIN_TYPE}/{CHAIN}/FanoutTask?size={size}&salt={salt}")
    run = cluster.run_ended(run_id, cluster.patience.longest(BUILD), BUILD, 0.05)
    assert run.finished_at is not None  # a run that ended has
    cluster.patience.note(BUILD, run.finished_at - began)
    return run.finished_at - began


def run(ctx: Context) -> list[Figure]:
    size = 100 if ctx.quick else 1000
    with ctx.cluster(f"{NAME}-default") as default, ctx.cluster(f"{NAME}-tuned") as tuned:
        luigi_default = default.dir / "luigi-default.cfg"  # empty: luigi's own defaults everywhere
        luigi_default.write_text("")
        scheduler_url = default.start_luigid(config=luigi_default)
        port = int(scheduler_url.rpartition(":")[2])  # each measurement's fresh luigid comes back there
        default.settings = default.settings.replace(luigi_config=luigi_default)
        tuned.settings = tuned.settings.replace(scheduler_url=scheduler_url, luigi_config=LUIGI_CFG)
        tuned.patience = default.patience  # the same builds, the same luigid: each wait sized from all measured
        logs: dict[Path, Path] = {}  # each cluster's worker's log
        for cluster in (default, tuned):
            logs[cluster.dir] = cluster.procs.log_of[cluster.start_workers(1).pid]
            cluster.start_api()
            through_service(cluster, 2, "warm")

        def service(cluster: Cluster, salt: str) -> float:
            # a worker asks luigid whether it is up at most once per heartbeat, and, having found it down as it
            # restarted, claims nothing until it asks again: one heartbeat for any look made meanwhile to be said in
            # its log, then until the worker found it up again (a wait of the machine's speed, not a margin: 0.5 s)
            time.sleep(cluster.settings.heartbeat_interval)
            log = logs[cluster.dir]
            cluster.patience.wait(lambda: sees_luigid(log.read_text()), f"the worker of {log.name} to find luigid up")
            return through_service(cluster, size, salt)

        # what each measures, and the configuration of luigi (luigid's and the workers') it runs under
        measures: dict[str, tuple[Callable[[str], float], Path]] = {
            "raw": (lambda salt: raw_build(default, size, salt, str(luigi_default)), luigi_default),
            "default": (lambda salt: service(default, salt), luigi_default),
            "tuned": (lambda salt: service(tuned, salt), LUIGI_CFG),
        }
        took: dict[str, list[float]] = {name: [] for name in measures}
        names = list(measures)
        for r in range(ctx.repeats):
            for name in names[r % 3 :] + names[: r % 3]:  # rotated, so that the machine's noise falls on all alike
                measure, config = measures[name]
                # luigid answers more slowly the more tasks it holds: each measurement gets a fresh, empty one
                default.start_luigid(port, config)
                took[name].append(measure(f"{name}{r}"))
    print("seconds per run:", "; ".join(f"{name} {', '.join(f'{t:.2f}' for t in took[name])}" for name in took))
    what, raw = f"raw luigi.build, 1 worker, luigid and luigi defaults (n={ctx.repeats})", median(took["raw"])
    return [
        Figure(NAME, f"{size} tasks via the API, luigi defaults", median(took["default"]), "s", what, raw,
               ratio_at_most(0.5)),
        Figure(NAME, f"{size} tasks via the API, tuned luigi.cfg", median(took["tuned"]), "s", what, raw,
               ratio_at_most(1.0, "< 1x")),
    ]  # fmt: skip

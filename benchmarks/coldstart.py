"""Cold start: ``nectar serve`` to the first 200 on /api/chains, beside gunicorn starting a hello world.

Both start with the bytecode of the modules they import at hand, as an installed package has it (pip compiles it at
install; an editable install writes ``__pycache__`` on first import): in a folder of the benchmark's own
(``PYTHONPYCACHEPREFIX``), written by a first, untimed start of each. Without it, under ``PYTHONDONTWRITEBYTECODE``
(this machine's environment, and the Dockerfile's after pip compiled), every process compiled nectar and api from
their source at each start, ~0.3 s of CPU each, which no deployed start pays.

Beside the seconds, the CPU that all of their processes used by then (what stays comparable on a busy machine, where
the seconds swing by 2x between repeats): a part starting beside the API takes CPU the API's start needs.
"""

from __future__ import annotations

import shutil
import time

from benchmarks.harness import (
    Cluster,
    Context,
    Figure,
    at_most,
    median,
    ratio_at_most,
)
from harness import GUNICORN, NECTAR, REPO, answers, base_env, cpu_seconds, descendants, free_port, waitfor

NAME = "coldstart"


def first_200(cluster: Cluster, name: str, argv: list[str], env: dict[str, str], url: str) -> tuple[float, float]:
    """Seconds from starting ``argv`` to ``url`` answering 200, and the CPU seconds its processes (those alive then)
    used by then; the process is stopped before this returns."""
    began = time.perf_counter()
    proc = cluster.procs.start(name, argv, env, cluster.dir if name == "serve" else REPO)
    try:

        def ok() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {cluster.procs.logs}")
            return answers(url, timeout=5) == 200

        waitfor(ok, 60, f"{name} to answer 200 on {url}", interval=0.01)
        took = time.perf_counter() - began
        return took, sum(used(pid) for pid in [proc.pid, *descendants(proc.pid)])
    finally:
        cluster.procs.stop(proc, timeout=60)


def used(pid: int) -> float:
    """CPU seconds of ``pid`` so far; 0 for one that has just exited."""
    try:
        return cpu_seconds(pid)
    except OSError:
        return 0.0


def bytecode(cluster: Cluster) -> dict[str, str]:
    """The environment that keeps the modules' bytecode in the cluster's folder (written where it is missing)."""
    return {"PYTHONPYCACHEPREFIX": str(cluster.dir / "pycache"), "PYTHONDONTWRITEBYTECODE": ""}


def serve(cluster: Cluster) -> tuple[float, float]:
    port, scheduler_port = free_port(), free_port()
    argv = [*NECTAR, "serve", "--port", str(port), "--scheduler-port", str(scheduler_port)]
    argv += ["--data-dir", str(cluster.settings.data_dir), "--chains-dir", str(cluster.settings.chains_dir)]
    return first_200(cluster, "serve", argv, cluster.env(**bytecode(cluster)), f"http://127.0.0.1:{port}/api/chains")


def hello(cluster: Cluster) -> tuple[float, float]:
    port = free_port()
    env = {**base_env(), **bytecode(cluster), "NECTAR_HOST": "127.0.0.1", "NECTAR_PORT": str(port)}
    argv = [*GUNICORN, "benchmarks.baseline_app:create_app()"]
    return first_200(cluster, "hello", argv, env, f"http://127.0.0.1:{port}/hello")


def run(ctx: Context) -> list[Figure]:
    serves: list[tuple[float, float]] = []
    hellos: list[tuple[float, float]] = []
    with ctx.cluster(NAME) as cluster:
        shutil.rmtree(cluster.settings.chains_dir)
        shutil.copytree(REPO / "chains", cluster.settings.chains_dir, ignore=shutil.ignore_patterns("__pycache__"))
        serve(cluster), hello(cluster)  # untimed: writes the bytecode
        for _ in range(ctx.repeats):  # interleaved, so that both see the same noise
            serves.append(serve(cluster))
            hellos.append(hello(cluster))
    serve_s, hello_s = median([took for took, _ in serves]), median([took for took, _ in hellos])
    return [
        Figure(
            NAME,
            "nectar serve → first 200 on /api/chains",
            serve_s,
            "s",
            "gunicorn + hello world → first 200",
            hello_s,
            at_most(1.0, "≤ 1 s"),
        ),
        Figure(
            NAME,
            "nectar serve → first 200, beside hello",
            serve_s,
            "s",
            "gunicorn + hello world → first 200",
            hello_s,
            ratio_at_most(3.0),
        ),
        Figure(
            NAME,
            "nectar serve → first 200: CPU of all its processes by then",
            median([cpu for _, cpu in serves]),
            "s",
            "gunicorn + hello world: the same",
            median([cpu for _, cpu in hellos]),
        ),
    ]

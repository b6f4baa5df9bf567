"""Cold start: ``nectar serve`` to the first 200 on /api/chains, beside gunicorn starting a hello world
(:func:`hello_argv`: gunicorn's own configuration, the API's processes and threads).

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
import sys
import time
from urllib.parse import urlsplit

from benchmarks.harness import (
    Cluster,
    Context,
    Figure,
    api_size,
    at_most,
    median,
    ratio_at_most,
)
from harness import (
    NECTAR,
    REPO,
    PortTaken,
    answers,
    base_env,
    cpu_seconds,
    descendants,
    exited_starting,
    listens,
    on_a_free_port,
    on_free_ports,
)

NAME = "coldstart"
#: the hello world gunicorn serves (:func:`hello_argv`)
HELLO_APP = "benchmarks.baseline_app:create_app()"


def first_200(cluster: Cluster, name: str, argv: list[str], env: dict[str, str], url: str) -> tuple[float, float]:
    """Seconds from starting ``argv`` to ``url`` answering 200, and the CPU seconds its processes (those alive then)
    used by then; the process is stopped before this returns. Raises :class:`~harness.PortTaken` where the port was
    taken since its pick (it says so as it exits, or another process answers there): the caller starts it again on
    another (:func:`~harness.on_a_free_port`)."""
    began = time.perf_counter()
    proc = cluster.procs.start(name, argv, env, cluster.dir if name == "serve" else REPO)
    port = urlsplit(url).port or 80
    try:

        def ok() -> bool:
            if proc.poll() is not None:
                said = cluster.procs.log_of[proc.pid].read_text(errors="replace")[-4000:]
                raise exited_starting(f"{name} exited with {proc.returncode}; see {cluster.procs.logs}", said)
            answer = answers(url, timeout=5)
            if answer is not None and listens(proc.pid, port) is False:  # one query to the kernel, once answered
                raise PortTaken(f"{url} answers from another process than the {name} started here")
            return answer == 200

        slowest = cluster.patience.longest(name)
        cluster.patience.wait(ok, f"{name} to answer 200 on {url}", slowest, f"the slowest {name} start yet", 0.01)
        took = time.perf_counter() - began
        cluster.patience.note(name, took)
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
    """:func:`first_200` of ``nectar serve`` on free ports (two others where one was taken since its pick)."""

    def start(port: int, scheduler_port: int) -> tuple[float, float]:
        argv = [*NECTAR, "serve", "--port", str(port), "--scheduler-port", str(scheduler_port)]
        argv += ["--data-dir", str(cluster.settings.data_dir), "--chains-dir", str(cluster.settings.chains_dir)]
        env = cluster.env(**bytecode(cluster))
        return first_200(cluster, "serve", argv, env, f"http://127.0.0.1:{port}/api/chains")

    return on_free_ports(start)


def hello_argv(port: int) -> list[str]:
    """gunicorn serving the hello world on ``port`` with gunicorn's own configuration, but for the API's processes and
    threads (the service's, :func:`~benchmarks.harness.api_size`) and the app loaded before the fork, as the API
    loads its own: a hello world imports what it needs (gunicorn, Flask), none of the service's modules. Under the
    service's configuration it imported ``nectar.config``, ``nectar.gunicorn_ext`` and what they import and ran its
    hooks, and had its imports deferred by the service's :mod:`nectar.deferred_imports`. Its CPU by the first 200 is
    the same either way (0.157 s and 0.157 s, medians of 6 pairs); without ``--preload`` each worker imports Flask
    (0.19 s)."""
    workers, threads = api_size()
    options = ["--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads), "--preload"]
    return [sys.executable, "-m", "gunicorn", "--worker-class", "gthread", *options, HELLO_APP]


def hello(cluster: Cluster) -> tuple[float, float]:
    """:func:`first_200` of gunicorn serving a hello world on a free port (another where it was taken)."""

    def start(port: int) -> tuple[float, float]:
        env = {**base_env(), **bytecode(cluster)}
        return first_200(cluster, "hello", hello_argv(port), env, f"http://127.0.0.1:{port}/hello")

    return on_a_free_port(start)


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

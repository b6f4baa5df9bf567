"""What every benchmark shares: real processes on free 127.0.0.1 ports, load, timing statistics, the table."""

from __future__ import annotations

import http.client
import json
import math
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks import spread
from benchmarks.patience import Patience
from benchmarks.spread import Interval
from harness import APP, LUIGI_CFG, Processes, base_env, children, settings_env, tree_cpu
from nectar.config import ENV_VARS, GunicornSettings, Settings
from nectar.registry import Run, RunState
from nectar.registry.sqlite import SQLiteRunStore
from nectar.task import chain_module, chain_namespace

BENCH_CHAINS = Path(__file__).resolve().parent / "chains"
#: the chain file of the benchmark tasks, as ``<type>/<chain>``, as a module and as the luigi namespace of its tasks
CHAIN_TYPE, CHAIN = "bench", "probe_chain"
MODULE, NAMESPACE = chain_module(CHAIN_TYPE, CHAIN), chain_namespace(CHAIN_TYPE, CHAIN)
LEDGER_VAR = "NECTAR_BENCH_LEDGER"


# --- statistics ------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile by the nearest-rank method: the ``ceil(pct / 100 * n)``-th smallest of ``n`` values.

    So p99 of 50 samples is the largest (rank 50), of 200 the third largest (rank 198): below 100 samples a p99
    is the maximum, which is why the table says n beside every percentile.
    """
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return float(ordered[rank - 1])


def rss_kb(pid: int, field_name: str = "VmRSS") -> int:
    """A process's resident set (or its peak, ``VmHWM``) in kB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    raise LookupError(f"no {field_name} for process {pid}")


# --- processes -------------------------------------------------------------------------------


#: settings that place a benchmark's world (its folders, store, services and credentials): always the benchmark's own
WORLD = frozenset(
    {"env", "project_bucket", "s3_bucket", "chains_dir", "local_targets_dir", "data_dir", "scheduler_url"}
    | {"luigi_config", "api_tokens", "api_tokens_file", "database_url"}
)


def environment_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The service's other settings (``NECTAR_MAX_QUEUE``, ``NECTAR_RETRIES``...) that the environment sets:
    they reach every benchmark's service and win over the benchmark's own choices."""
    environ = os.environ if environ is None else environ
    return {name: environ[var] for var, name in ENV_VARS.items() if name not in WORLD and environ.get(var)}


def api_size() -> tuple[int, int]:
    """The API's processes and threads every benchmark runs it with, and the hello world it is compared with (like
    with like): the service's defaults (``NECTAR_API_WORKERS``, ``NECTAR_API_THREADS`` unset), those of the
    ``nectar serve`` a benchmark starts, whose environment has no ``NECTAR_`` variable but its settings'
    (:func:`harness.base_env`)."""
    found = GunicornSettings({})
    return found.workers, found.threads


class Cluster:
    """One benchmark's Datanectar: its folder, settings, and the luigid, workers, API and moto it starts."""

    def __init__(self, procs: Processes, folder: Path, **settings: Any) -> None:
        self.procs = procs
        self.dir = folder
        self.dir.mkdir(parents=True, exist_ok=True)
        chains = self.dir / "chains"
        shutil.copytree(BENCH_CHAINS, chains, ignore=shutil.ignore_patterns("__pycache__"))
        self.ledger = self.dir / "ledger.txt"
        self.ledger.touch()
        defaults = {"env": "local", "data_dir": self.dir / "data", "local_targets_dir": self.dir / "targets"}
        self.settings = Settings(**{**defaults, "chains_dir": chains, **settings}).resolved()
        self.tune()
        self.extra_env: dict[str, str] = {LEDGER_VAR: str(self.ledger)}
        self.luigid: subprocess.Popen[bytes] | None = None
        self.apis: dict[str, subprocess.Popen[bytes]] = {}
        #: how many workers each API was started with
        self.api_sizes: dict[str, int] = {}
        self.api_url = ""
        #: the bounds of its waits, sized from what it measured (:mod:`benchmarks.patience`)
        self.patience = Patience()

    def tune(self, **settings: Any) -> Settings:
        """Change settings of the service, except those the environment sets (see :func:`environment_settings`)."""
        self.settings = self.settings.replace(**{**settings, **environment_settings()})
        return self.settings

    def env(self, **extra: str) -> dict[str, str]:
        return {**base_env(), **settings_env(self.settings), **self.extra_env, **extra}

    def start_luigid(self, port: int | None = None, config: Path = LUIGI_CFG) -> str:
        """A luigid with an empty state under ``config`` (on ``port`` and no other, or a free one), replacing this
        cluster's."""
        if self.luigid is not None:
            self.procs.stop(self.luigid)
        state = self.dir / f"luigid-{len(list(self.dir.glob('luigid-*')))}"
        state.mkdir()
        began = time.perf_counter()
        served = self.procs.luigid(port, state, config, fixed=port is not None)
        self.patience.started(time.perf_counter() - began, "luigid")
        self.luigid = served.proc
        url = f"http://127.0.0.1:{served.port}"
        self.settings = self.settings.replace(scheduler_url=url)
        return url

    def start_workers(self, workers: int = 2, **env: str) -> subprocess.Popen[bytes]:
        return self.procs.worker(self.env(**env), self.dir, workers)

    def start_api(self, workers: int | None = None, threads: int | None = None, app: str = APP, **env: str) -> str:
        """gunicorn with the service's configuration (nectar.gunicorn_conf) serving ``app``, with ``workers`` and
        ``threads`` (by default the service's: :func:`api_size`); its URL."""
        size = api_size()
        workers, threads = workers or size[0], threads or size[1]
        began = time.perf_counter()
        served = self.procs.api(None, self.env(**env), app, workers, threads)
        self.patience.started(time.perf_counter() - began, "the API")
        url = f"http://127.0.0.1:{served.port}"
        self.apis[url] = served.proc
        self.api_sizes[url] = workers
        if app == APP:
            self.api_url = url
        return url

    def stop_apis(self) -> None:
        for proc in self.apis.values():
            self.procs.stop(proc)
        self.apis.clear()
        self.api_sizes.clear()

    def api_size(self, url: str) -> int:
        """How many workers the API at ``url`` was started with (gunicorn forks them one after another)."""
        return self.api_sizes[url]

    def api_workers(self, url: str) -> list[int]:
        """The pids of the gunicorn workers of the API at ``url``."""
        return children(self.apis[url].pid)

    def api_cpu(self, url: str) -> float:
        """CPU seconds the gunicorn at ``url`` has used: its master's, its live workers' and those of the workers it
        replaced (a recycled worker's time is in its master's ``cutime``/``cstime`` once reaped)."""
        return tree_cpu(self.apis[url].pid)

    def run_once(self, name: str, argv: list[str], env: dict[str, str], measured: float = 0.0, of: str = "") -> None:
        """Start ``argv`` as ``name`` and wait for it to exit 0 (:meth:`exited`); stop it anyway."""
        proc = self.procs.start(name, argv, env, self.dir)
        try:
            self.exited(proc, name, measured, of)
        finally:
            self.procs.stop(proc)

    def exited(self, proc: subprocess.Popen[bytes], name: str, measured: float = 0.0, of: str = "") -> None:
        """Once ``proc`` (``name``) has exited 0; raises if it exited otherwise, or is still running past the bound
        :attr:`patience` sizes from ``measured`` seconds (``of`` says of what), which the error says."""
        try:
            code = proc.wait(timeout=self.patience.bound(measured))
        except subprocess.TimeoutExpired:
            basis = self.patience.basis(measured, of)
            raise AssertionError(
                f"{name} still running after {self.patience.bound(measured):.1f} s ({basis})"
            ) from None
        if code != 0:
            raise RuntimeError(f"{name} exited with {code}; see {self.procs.logs}")

    def run_ended(self, run_id: str, measured: float = 0.0, of: str = "", interval: float = 0.01) -> Run:
        """The run once it has ended; raises unless it ended DONE, or if it has not past the bound :attr:`patience`
        sizes from ``measured`` seconds (``of`` says of what), which the error says."""
        runs = SQLiteRunStore(self.settings.registry_path)

        def ended() -> Run | None:
            run = runs.get(run_id)
            return run if run is not None and not run.state.active else None

        try:
            run: Run = self.patience.wait(ended, f"run {run_id} to end", measured, of, interval)
        finally:
            runs.close()
        if run.state != RunState.DONE:
            raise RuntimeError(f"run {run_id} of {run.ref} ended {run.state}: {run.error}")
        return run

    def ledger_lines(self, word: str) -> list[list[str]]:
        """The ledger's lines that begin with ``word``, split."""
        return [parts[1:] for line in self.ledger.read_text().splitlines() if (parts := line.split())[:1] == [word]]


def post(base_url: str, path: str) -> tuple[int, dict[str, Any]]:
    """POST ``path`` (parameters in its query) to the API; its status and JSON answer."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
    try:
        conn.request("POST", path)
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        conn.close()


def submit(base_url: str, path: str) -> tuple[str, str]:
    """POST a new run; its (run id, key). Raises unless the API queued it."""
    status, body = post(base_url, path)
    if status != 202:
        raise RuntimeError(f"POST {path} answered {status}: {body}")
    return body["data"]["run_id"], body["data"]["key"]


# --- figures and the table -------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What a figure must reach: ``value`` or ``ratio`` (value / baseline), at most or at least ``limit``."""

    on: str  # "value" or "ratio"
    most: bool
    limit: float
    text: str

    def met(self, value: float, ratio: float | None) -> bool | None:
        subject = value if self.on == "value" else ratio
        if subject is None or math.isnan(subject):
            return None
        return self.reached(subject)

    def reached(self, subject: float) -> bool:
        """Whether ``subject`` (the value or the ratio, as :attr:`on` says) meets the target."""
        return spread.reached(subject, self.limit, self.most)

    def decides(self, found: Interval) -> bool:
        """Whether ``found`` (an interval of what the target judges) is met or missed at both of its ends."""
        return spread.decides(found, self.limit, self.most)


def at_most(limit: float, text: str) -> Target:
    return Target("value", True, limit, text)


def at_least(limit: float, text: str) -> Target:
    return Target("value", False, limit, text)


def ratio_at_most(limit: float, text: str = "") -> Target:
    return Target("ratio", True, limit, text or f"≤ {limit:g}x")


def ratio_at_least(limit: float) -> Target:
    return Target("ratio", False, limit, f"≥ {limit:g}x")


@dataclass(frozen=True)
class Figure:
    benchmark: str
    figure: str
    value: float
    unit: str
    baseline_what: str
    baseline: float | None
    target: Target | None = None
    note: str = ""
    #: the interval of what ``target`` judges (the ratio, or the value), where the figure carries one
    #: (:mod:`benchmarks.spread`): its verdict is then the interval's, undecided where it straddles the target
    spread: Interval | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        """Whether the target is met: the interval's word where it decides, else the point's."""
        if self.target and self.spread and self.target.decides(self.spread):
            return self.target.reached(self.spread.low)
        return self.target.met(self.value, self.ratio) if self.target else None

    @property
    def undecided(self) -> bool:
        """Whether the figure's interval straddles its target: its verdict is its point's alone."""
        return bool(self.target and self.spread and not self.target.decides(self.spread))

    @property
    def verdict(self) -> str:
        """The table's "met?": yes, **NO** or -, with "(undecided)" after it where the interval straddles the target."""
        said = {True: "yes", False: "**NO**", None: "-"}[self.met]
        return f"{said} (undecided)" if self.undecided and self.met is not None else said


def fmt(value: float | None, unit: str) -> str:
    if value is None or math.isnan(value):
        return "-"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit == "ms":
        return f"{value * 1000:.1f} ms"
    if unit == "/s":
        return f"{value:,.1f}/s" if value < 100 else f"{value:,.0f}/s"
    if unit == "%":
        return f"{value:.2f}%"
    if unit == "MB":
        return f"{value / 1024:.1f} MB"  # values are kept in kB, as /proc gives them
    return f"{value:g} {unit}".strip()


def table(figures: Sequence[Figure]) -> str:
    head = ["benchmark", "figure", "value", "baseline (what)", "baseline value", "ratio", "target", "met?"]
    rows = [head, ["---"] * len(head)]
    for f in figures:
        ratio = f"{f.ratio:.3g}x" if f.ratio is not None else "-"
        met = f.verdict
        target = f.target.text if f.target else "-"
        rows.append(
            [f.benchmark, f.figure, fmt(f.value, f.unit), f.baseline_what, fmt(f.baseline, f.unit), ratio, target, met]
        )
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


# --- one benchmark run -----------------------------------------------------------------------


@dataclass
class Context:
    """What a benchmark gets: a folder of its own, how many repeats, and whether sizes are the quick ones."""

    root: Path
    repeats: int = 5
    quick: bool = False

    @contextmanager
    def cluster(self, name: str, **settings: Any) -> Iterator[Cluster]:
        """A fresh :class:`Cluster` in ``<root>/<name>``; every process it started is stopped on the way out."""
        folder = self.root / name
        procs = Processes(folder / "logs")
        try:
            yield Cluster(procs, folder, **settings)
        finally:
            procs.close(grace=5.0)

"""Settings: one object with the defaults, overridden by ``NECTAR_*`` and the seed's own variables.

Nothing here reads the environment at import time: :func:`Settings.from_env` does, when asked,
and :func:`get_settings` caches the answer for the process (workers set theirs explicitly).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nectar.errors import InvalidSetting

#: the chains folder where none is given, relative to the working folder (``./chains``)
DEFAULT_CHAINS = "chains"
#: the project's luigi.cfg where ``NECTAR_LUIGI_CONFIG`` is unset, if it exists: relative to the working directory
DEFAULT_LUIGI_CONFIG = "configuration/luigi.cfg"
#: environment variable -> Settings field; the seed's names (ENV, PROJECT_BUCKET) are kept.
ENV_VARS: dict[str, str] = {
    "ENV": "env",
    "PROJECT_BUCKET": "project_bucket",
    "NECTAR_S3_BUCKET": "s3_bucket",
    "NECTAR_CHAINS_DIR": "chains_dir",
    "NECTAR_LOCAL_TARGETS": "local_targets_dir",
    "NECTAR_DATA_DIR": "data_dir",
    "NECTAR_SCHEDULER_URL": "scheduler_url",
    "NECTAR_URL_EXPIRY": "url_expiry",
    "NECTAR_WORKER_POLL": "worker_poll_interval",
    "NECTAR_SPARE_IDLE": "spare_idle",
    "NECTAR_RUNS_PER_PROCESS": "runs_per_process",
    "NECTAR_PROCESS_MAX_RSS_MB": "process_max_rss_mb",
    "NECTAR_SCHEDULER_TIMEOUT": "scheduler_timeout",
    "NECTAR_SCHEDULER_IDLE_TIMEOUT": "scheduler_idle_timeout",
    "NECTAR_LUIGI_CONFIG": "luigi_config",
    "NECTAR_RETRIES": "retries",
    "NECTAR_RETRY_DELAY": "retry_delay",
    "NECTAR_RETRY_BACKOFF": "retry_backoff",
    "NECTAR_HEARTBEAT": "heartbeat_interval",
    "NECTAR_LEASE": "lease_timeout",
    "NECTAR_MAX_RUNTIME": "max_runtime",
    "NECTAR_WAIT_TIMEOUT": "wait_timeout",
    "NECTAR_WAIT_POLL_MAX": "wait_poll_max",
    "NECTAR_LANDING_ROOTS": "landing_roots",
    "NECTAR_MAX_QUEUE": "max_queue",
    "NECTAR_RETRY_AFTER": "retry_after",
    "NECTAR_DRAIN_GRACE": "drain_grace",
    "NECTAR_STOP_TIMEOUT": "stop_timeout",
    "NECTAR_API_TOKENS": "api_tokens",
    "NECTAR_API_TOKENS_FILE": "api_tokens_file",
    "NECTAR_AUTH_READS": "auth_reads",
    "NECTAR_MAX_BODY": "max_body",
    "NECTAR_MAX_PARAMS": "max_params",
    "NECTAR_MAX_PARAM_LENGTH": "max_param_length",
    "NECTAR_MAX_BATCH": "max_batch",
    "NECTAR_LOG_FORMAT": "log_format",
    "NECTAR_DATABASE_URL": "database_url",
    "NECTAR_DATABASE_POOL": "database_pool",
    "NECTAR_LOG_SYNC": "log_sync_interval",
    "NECTAR_TASK_WORKERS": "task_workers",
    "NECTAR_OUTPUT_ROOTS": "output_roots",
    "NECTAR_PUBLIC_URL": "public_url",
    "NECTAR_SCHEDULER_PUBLIC_URL": "scheduler_public_url",
    "NECTAR_ALLOWED_HOSTS": "allowed_hosts",
}
#: the most a count the run registry keeps may be: PostgreSQL's INTEGER (4 bytes), the type of ``run_counts.pending``
#: (which the queue's bound is compared with) and of ``runs.max_attempts``; SQLite, which binds the queue's bound into
#: its insert, refused one past 8 bytes at the first submission (OverflowError, a 500)
INTEGER_MOST = 2**31 - 1
#: the most seconds an S3 presigned URL may live: SigV4's limit (a week), beyond which S3 refuses it at the download
SIGV4_MOST = 7 * 24 * 3600
#: the most processes or threads one count of them may start: as ``--workers``' (:data:`ROLE_NUMBERS`)
WORKERS_MOST = 1 << 16
#: whole-number fields -> their least value and their most (None: none that is real: a bound compared in Python
#: alone, whose larger values mean no bound), read by the rule gunicorn's variables are read by (:func:`whole_number`:
#: digits alone). 0 where it means something (no retry, no RSS bound, parameters refused); 1 where 0 would only refuse
#: everything (a queue bound of 0 takes no run and skips every fire, a body bound of 0 every submission) or cannot
#: work (no worker, no connection, a URL that expires as it is made). ``url_expiry``'s most is the store's
#: (:func:`url_expiry_most`)
_INTS: dict[str, tuple[int, int | None]] = {
    "url_expiry": (1, INTEGER_MOST),
    "retries": (0, INTEGER_MOST - 1),  # a run's max_attempts is retries + 1
    "max_queue": (1, INTEGER_MOST),
    "max_body": (1, None),
    "max_params": (0, None),
    "max_param_length": (1, None),
    "max_batch": (1, INTEGER_MOST),  # a batch's rows are runs the queue takes; past 8 bytes no listing takes it
    "task_workers": (1, WORKERS_MOST),
    "database_pool": (1, None),
    "runs_per_process": (1, None),
    "process_max_rss_mb": (0, None),
}
_BOOLS = {"auth_reads"}
_PATHS = {"chains_dir", "local_targets_dir", "data_dir", "luigi_config", "api_tokens_file"}
#: the most seconds a duration may be (about 31 years): a lock's or a socket's wait takes at most
#: ``threading.TIMEOUT_MAX`` (~9.2e9 s on Linux), and raises OverflowError beyond, at the first wait
DURATION_MOST = 10**9
#: durations (seconds) -> whether 0 is taken (0 means something: no spare kept, no delay, no limit, no copy until
#: the end) or the least is above 0 (a poll, a timeout or a heartbeat of 0 would spin or fail at once)
_DURATIONS = {
    "worker_poll_interval": False,
    "spare_idle": True,
    "scheduler_timeout": False,
    "scheduler_idle_timeout": False,
    "retry_delay": True,
    "heartbeat_interval": False,
    "lease_timeout": False,
    "max_runtime": True,
    "wait_timeout": True,
    "wait_poll_max": False,
    "drain_grace": True,
    "stop_timeout": False,
    "log_sync_interval": True,
}
#: a plain decimal number: digits, at most one point (``1_0``, ``1e1``, ``inf``, ``nan``, ``-1`` and other scripts'
#: digits are not)
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


@dataclass(frozen=True)
class Settings:
    """Everything configurable about a Datanectar process."""

    #: ``local`` keeps targets in ``local_targets_dir``; anything else means S3.
    env: str = "local"
    #: the seed's bucket is ``<ENV>.<PROJECT_BUCKET>``
    project_bucket: str = "datanectar"
    #: an explicit bucket name wins over ``<ENV>.<PROJECT_BUCKET>``
    s3_bucket: str | None = None
    chains_dir: Path = field(default_factory=lambda: Path(DEFAULT_CHAINS))
    local_targets_dir: Path = field(default_factory=lambda: Path("local_targets"))
    #: the run registry, live logs and luigid's state live here
    data_dir: Path = field(default_factory=lambda: Path("nectar_data"))
    #: luigi central scheduler (``http://localhost:8082``); None runs with luigi's local scheduler
    scheduler_url: str | None = None
    #: seconds a presigned (or signed local) download URL stays valid
    url_expiry: int = 600
    #: seconds between two looks at the queue by an idle worker
    worker_poll_interval: float = 0.05
    #: seconds without a claim after which a worker lets its spare attempt processes go (0: none kept ahead of a run)
    spare_idle: float = 30.0
    #: runs an attempt process executes before it exits (1: one, a fresh process per run); it takes another only
    #: after a clean end (:mod:`nectar.reuse`). A fresh process costs ~19 ms of CPU (its fork, ~3,200 page faults as
    #: it writes the pages it shares with its worker and makes its own, its set-up) and luigid's ~1.3 ms (a new
    #: worker): 0.2 ms a trivial run over 100 runs (~4% of its 4.6 ms), 0.02 over 1,000; what a process may grow by
    #: stays bounded (``process_max_rss_mb``)
    runs_per_process: int = 1000
    #: resident megabytes an attempt process may add after it was first ready (not those it shares with its worker)
    #: before it exits after its run instead of taking another (0: no bound)
    process_max_rss_mb: int = 512
    #: seconds to wait for luigid on a status lookup before answering without it
    scheduler_timeout: float = 2.0
    #: seconds luigid keeps a connection of ours (switched to frames) that sends nothing before closing it: tornado's
    #: wait for an HTTP connection's next request in luigid (:data:`nectar.luigid_server.IDLE_TIMEOUT`)
    scheduler_idle_timeout: float = 3600.0
    #: the project's luigi.cfg, which every process adds to luigi's configuration (``NECTAR_LUIGI_CONFIG``; read from
    #: the environment, :data:`DEFAULT_LUIGI_CONFIG` where it is unset and that file exists; None: luigi's own search)
    luigi_config: Path | None = None
    #: default retry policy of a run (a task's ``retries``/``retry_delay``/``retry_backoff`` win):
    #: attempt n+1 starts ``retry_delay * retry_backoff**(n-1)`` seconds after attempt n failed
    retries: int = 2
    retry_delay: float = 5.0
    retry_backoff: float = 2.0
    #: seconds between two heartbeats of a running run; a run silent for ``lease_timeout`` is lost
    heartbeat_interval: float = 2.0
    lease_timeout: float = 20.0
    #: seconds an attempt may run before its run is FAILED "timed out", not retried (0: no limit);
    #: a requested task's ``max_runtime`` class attribute wins
    max_runtime: float = 86400.0
    #: seconds a run whose external data is missing waits for it (WAITING, holding no worker) before it fails;
    #: a requested task's ``wait_timeout`` class attribute wins
    wait_timeout: float = 3600.0
    #: the longest interval, in seconds, between two checks of what a WAITING run waits for (from 1 s, doubling)
    wait_poll_max: float = 30.0
    #: queued (PENDING) runs accepted at most; beyond, submissions get 503 with Retry-After and a schedule's fire is
    #: skipped (a held fire stays held)
    max_queue: int = 10000
    #: the Retry-After (seconds) of a 503
    retry_after: int = 5
    #: steps of one run that run at once, each in a process of its own beyond one (luigi's ``--workers``);
    #: a requested task's ``workers`` class attribute wins
    task_workers: int = 1
    #: seconds a stopping worker lets its running tasks finish before it interrupts and requeues them
    drain_grace: float = 30.0
    #: seconds ``nectar serve`` gives a part it asked to stop (SIGTERM) before it kills it (the workers: beyond
    #: ``drain_grace``)
    stop_timeout: float = 20.0
    #: seconds between two copies of a running task's logs to S3, where every machine's API reads them
    #: (0: only when it ends)
    log_sync_interval: float = 5.0
    #: API token hashes, ``<sha256 hex>:<read|write>[:<name>]``, comma-separated and/or one per line
    #: in a file (see :mod:`nectar.auth`); none configured: no authentication
    api_tokens: str | None = None
    api_tokens_file: Path | None = None
    #: with tokens configured, whether reading (catalog, statuses, logs, runs) needs one too
    auth_reads: bool = True
    #: request limits: body bytes (413), parameters per submission (413), characters per value (422)
    max_body: int = 1 << 20
    max_params: int = 100
    max_param_length: int = 4096
    #: rows one batch submission may hold
    max_batch: int = 1000
    #: ``text`` or ``json`` (one object a line, with the run id): the logs of workers, the API and ``serve``
    log_format: str = "text"
    #: ``postgresql://user:password@host:5432/db``: the run registry shared by every machine; None: SQLite in data_dir
    database_url: str | None = None
    #: connections to PostgreSQL each process keeps at most (a pool; one stays open)
    database_pool: int = 4
    #: folders (absolute, os.pathsep-separated) besides ``local_targets_dir`` under which a plain luigi task's
    #: ``LocalTarget`` outputs are served by signed URLs; an output elsewhere is listed without a URL
    output_roots: str | None = None
    #: folders (absolute, os.pathsep-separated) besides ``<data_dir>/landing`` that triggers and batches made over
    #: HTTP may list (a trigger declared in a chain file, being code, may watch any folder)
    landing_roots: str | None = None
    #: the URL clients reach the API by (``https://nectar.example.com``): the links the API hands out start
    #: with it, and its host name is one the API answers to
    public_url: str | None = None
    #: host names (comma-separated) the API answers to besides localhost, 127.0.0.1, [::1] and the public URL's
    allowed_hosts: str | None = None
    #: the URL browsers reach luigid's visualiser by (``https://luigid.example.com``, a proxy in front of it), where
    #: it is not ``scheduler_url`` (the address our processes call): the visualiser links the API hands out start with
    #: it, and luigid's guard answers its host name
    scheduler_public_url: str | None = None

    @property
    def visualiser_base(self) -> str | None:
        """Where the visualiser's links start: the scheduler's public URL, else the URL our processes call it by."""
        return self.scheduler_public_url or self.scheduler_url

    @property
    def store_kind(self) -> str:
        """``local`` or ``s3``, as the seed decides it from ``ENV``."""
        return "local" if self.env == "local" else "s3"

    @property
    def bucket(self) -> str:
        return self.s3_bucket or f"{self.env}.{self.project_bucket}"

    @property
    def registry_location(self) -> str:
        """Where the run registry is, for people (no password)."""
        if self.database_url:
            return re.sub(r"//[^@/]*@", "//", self.database_url)
        return str(self.registry_path)

    @property
    def registry_path(self) -> Path:
        return self.data_dir / "runs.sqlite3"

    @functools.cached_property
    def live_logs_dir(self) -> Path:
        """Made once per settings: every step's start asks for it (:func:`nectar.task.live_log_paths`)."""
        return self.data_dir / "live"

    @property
    def output_root_paths(self) -> tuple[Path, ...]:
        """The folders whose files a status may hand out signed URLs for: the local targets folder first."""
        extra = [Path(part).resolve() for part in (self.output_roots or "").split(os.pathsep) if part]
        return (self.local_targets_dir.resolve(), *extra)

    @property
    def landing_root_paths(self) -> tuple[Path, ...]:
        """The folders triggers and batches made over HTTP may list: ``<data_dir>/landing`` first."""
        extra = [Path(part).resolve() for part in (self.landing_roots or "").split(os.pathsep) if part]
        return ((self.data_dir / "landing").resolve(), *extra)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes).resolved()

    def resolved(self) -> Settings:
        """Coerce types and make every path absolute (relative to the working directory)."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "chains_dir" and value is not None:  # named as given: a link kept, its target followed
                value = Path(os.path.abspath(Path(value).expanduser()))  # as each listing opens it (a release swapped)
            elif f.name in _PATHS and value is not None:
                value = Path(value).expanduser().resolve()
            elif f.name in _BOOLS and isinstance(value, str):
                value = value.strip().lower() in {"1", "true", "yes", "on"}
            elif f.name == "retry_after":
                value = _retry_after(value)
            elif f.name in _INTS:
                least, most = _INTS[f.name]
                most = url_expiry_most(self.store_kind) if f.name == "url_expiry" else most
                value = whole_number(_variable(f.name), value, least, most)
            elif f.name in _DURATIONS:
                value = seconds(_variable(f.name), value, zero=_DURATIONS[f.name])
            elif f.name == "retry_backoff":
                value = _factor(value)
            elif f.name == "scheduler_url" and value is not None:
                value = str(value).rstrip("/") or None
                if value is not None and not value.startswith(("http://", "https://")):
                    raise InvalidSetting(f"NECTAR_SCHEDULER_URL must be an http:// or https:// URL, not {value!r}")
            elif f.name in ("output_roots", "landing_roots") and value:
                relative = [part for part in str(value).split(os.pathsep) if part and not os.path.isabs(part)]
                if relative:
                    var = f"NECTAR_{f.name.upper()}"
                    raise InvalidSetting(f"{var} must list absolute folders, not {relative[0]!r}")
            elif f.name in ("public_url", "scheduler_public_url") and value is not None:
                value = checked_public_url(str(value), f"NECTAR_{f.name.upper()}")
            elif f.name == "allowed_hosts" and value is not None:
                value = ",".join(name.strip().lower() for name in str(value).split(",") if name.strip()) or None
            elif f.name == "log_format":
                value = str(value).strip().lower()
                if value not in ("text", "json"):
                    raise InvalidSetting(f"NECTAR_LOG_FORMAT must be text or json, not {value!r}")
            values[f.name] = value
        return dataclasses.replace(self, **values)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then the environment (a variable blank or of spaces alone is unset, as for gunicorn's
        :class:`GunicornSettings` and the roles' flags), then ``overrides`` (None values ignored)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for var, name in ENV_VARS.items():
            raw = environ.get(var)
            if raw is not None and raw.strip():
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "luigi_config" not in values and os.path.isfile(DEFAULT_LUIGI_CONFIG):  # one rule for every process
            values["luigi_config"] = DEFAULT_LUIGI_CONFIG
        return cls(**values).resolved()


def _variable(name: str) -> str:
    """The environment variable that sets the field ``name`` (``max_queue``: ``NECTAR_MAX_QUEUE``)."""
    return next((var for var, field_name in ENV_VARS.items() if field_name == name), f"NECTAR_{name.upper()}")


def url_expiry_most(store_kind: str) -> int:
    """The most seconds ``NECTAR_URL_EXPIRY`` may be with the store ``store_kind``: S3's presigned URLs live a week at
    most (:data:`SIGV4_MOST`); the local store's signed URLs carry their expiry as a unix time of at most 12 digits
    (:mod:`nectar.signing`), which :data:`INTEGER_MOST` seconds from now keeps for millennia."""
    return SIGV4_MOST if store_kind == "s3" else INTEGER_MOST


def _decimal(value: object) -> float | None:
    """``value`` as a finite number, a text one written as a plain decimal number (spaces around it aside); else
    None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        with contextlib.suppress(OverflowError):  # an int past a float's range
            return float(value) if math.isfinite(value) else None
        return None
    text = str(value).strip()
    return float(text) if text.isascii() and _DECIMAL.fullmatch(text) else None


def seconds(var: str, value: object, zero: bool = False) -> float:
    """``value`` of ``var`` as a number of seconds, a plain decimal number (digits, at most one point) above 0 (from 0
    with ``zero``) to :data:`DURATION_MOST`, or :class:`InvalidSetting` naming ``var``, the same line whatever is
    wrong with it."""
    number = _decimal(value)
    if number is None or not (0 <= number if zero else 0 < number) or number > DURATION_MOST:
        least = "≥ 0" if zero else "> 0"
        raise InvalidSetting(
            f"{var} must be a number of seconds {least}, at most {DURATION_MOST} (digits, at most one point), "
            f"not {value!r}"
        )
    return number


def _factor(value: object, name: str = "NECTAR_RETRY_BACKOFF") -> float:
    """``NECTAR_RETRY_BACKOFF``: a plain decimal number from 1 (a run's policy takes one below 1 for 1)."""
    number = _decimal(value)
    if number is None or number < 1:
        raise InvalidSetting(f"{name} must be a number ≥ 1 (digits, at most one point), not {value!r}")
    return number


def setting_text(name: str, value: object) -> str:
    """``value`` of the field ``name`` written as its variable's rule reads it back: a whole number in digits
    (``3.0``: ``3``), a number of seconds or the backoff as a plain decimal (``1e-05``: ``0.00001``), any other by
    ``str``; a value its rule refuses (``3.5`` retries, ``inf``) is written as it is, for the reader to name it."""
    if isinstance(value, float) and (name in _INTS or name == "retry_after") and value.is_integer():
        return str(int(value))
    if isinstance(value, float) and (name in _DURATIONS or name == "retry_backoff") and math.isfinite(value):
        import decimal  # here: what reads the settings never needs it (0.4 MB of nectar serve's supervisor)

        return format(decimal.Decimal(repr(value)), "f")
    return str(value)


def retry_value(field: str, value: object, name: str) -> float:
    """``value`` of the retry setting ``field`` (``retries``, ``retry_delay``, ``retry_backoff``; luigi's
    ``retry_count``, a number of attempts: one more than the retries) given elsewhere than in the environment (a task
    class's own policy), read by that setting's rule, or :class:`InvalidSetting` naming ``name``."""
    if field == "retry_count":
        return whole_number(name, value, 1, INTEGER_MOST)  # retries from 0 to INTEGER_MOST - 1
    if field == "retry_backoff":
        return _factor(value, name)
    if field in _DURATIONS:
        return seconds(name, value, zero=_DURATIONS[field])
    return whole_number(name, value, *_INTS[field])


def whole_number(name: str, value: object, least: int, most: int | None = None) -> int:
    """``value`` of ``name`` (a variable, or a flag and its variable) as a whole number from ``least`` (to ``most``),
    written in digits alone, spaces around it aside (``+5``, ``1_000``, ``5.0`` and other scripts' digits are
    refused, as an HTTP header's number or gunicorn's own reader would refuse them), or :class:`InvalidSetting`
    naming ``name``, the same message whatever is wrong with it."""
    text = str(value).strip()
    number = None
    if text.isascii() and text.isdigit():
        with contextlib.suppress(ValueError):  # past 4300 digits int() refuses it, in a line naming no variable
            number = int(text)
    if number is None or number < least or (most is not None and number > most):
        bound = f"of at least {least}" if most is None else f"from {least} to {most}"
        raise InvalidSetting(f"{name} must be a whole number {bound}, not {value!r}")
    return number


#: the most threads an API process may have: one less than gunicorn's ``worker_connections`` (1,000, its default),
#: from which its gthread worker takes the threads to find the connections it keeps alive: with as many threads, it
#: keeps none (a warning in its log), and a client told to come back after Retry-After finds its connection closed
API_THREADS_MOST = 999
#: gunicorn's whole numbers (:mod:`nectar.gunicorn_conf`): variable -> (default, least, most or None)
GUNICORN_WHOLES: dict[str, tuple[int, int, int | None]] = {
    "NECTAR_API_WORKERS": (2, 1, WORKERS_MOST),
    "NECTAR_API_THREADS": (8, 1, API_THREADS_MOST),
    "NECTAR_API_MAX_REQUESTS": (20000, 0, None),
    "NECTAR_KEEPALIVE_REQUESTS": (20, 0, None),
}
#: seconds a request's line, headers and body may take to arrive (``NECTAR_READ_TIMEOUT``)
READ_TIMEOUT = 10.0
#: the roles that start gunicorn, the only ones that read its variables (``scheduler`` starts luigid alone)
GUNICORN_ROLES = ("serve", "api")
#: gunicorn's log levels (``NECTAR_LOG_LEVEL``); gunicorn takes any other word for ``info``, silently
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
#: the older names Python's logging takes too (``WARN``, ``FATAL``), which gunicorn would take for ``info``: an env
#: file written with them keeps its level, in gunicorn's log and in the service's (the JSON log's ``gunicorn.error``)
LOG_LEVEL_ALIASES = {"warn": "warning", "fatal": "critical"}


def log_level(value: str) -> str:
    """``NECTAR_LOG_LEVEL``'s ``value`` as one of :data:`LOG_LEVELS` (any case, an alias its level; blank:
    ``warning``), or :class:`InvalidSetting` naming the variable."""
    level = value.strip().lower() or "warning"
    level = LOG_LEVEL_ALIASES.get(level, level)
    if level not in LOG_LEVELS:
        raise InvalidSetting(f"NECTAR_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {value.strip()!r}")
    return level


class GunicornSettings:
    """What gunicorn's configuration (:mod:`nectar.gunicorn_conf`) reads from the environment, read by one parser for
    it and for the roles that start it (:func:`check_role_settings`): a blank variable is its default, as in
    :meth:`Settings.from_env`, and a bad value is refused with the same one line wherever it is read.

    A plain class, its parser its constructor: a frozen dataclass's methods, generated as the module is imported,
    took ~2 ms of gunicorn's master's start (5.9 M instructions, callgrind), before it loads the app."""

    __slots__ = (
        "host",
        "port",
        "workers",
        "threads",
        "max_requests",
        "keepalive_requests",
        "retry_after",
        "read_timeout",
        "log_level",
    )
    #: the address the API listens on (``NECTAR_HOST``: ``127.0.0.1``, ``NECTAR_PORT``: 5000)
    host: str
    port: int
    workers: int
    threads: int
    max_requests: int
    #: requests a kept-alive connection carries (0: no bound)
    keepalive_requests: int
    #: the service's Retry-After (``NECTAR_RETRY_AFTER``, read as :class:`Settings` reads it)
    retry_after: int
    read_timeout: float
    log_level: str

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        """Read from ``environ`` (default: this process's environment)."""
        environ = os.environ if environ is None else environ
        wholes = {}
        for var, (default, least, most) in {**GUNICORN_WHOLES, "NECTAR_PORT": (5000, 1, 65535)}.items():
            raw = environ.get(var, "")
            wholes[var] = whole_number(var, raw, least, most) if raw.strip() else default
        self.host = environ.get("NECTAR_HOST", "").strip() or "127.0.0.1"
        self.port = wholes["NECTAR_PORT"]
        self.workers = wholes["NECTAR_API_WORKERS"]
        self.threads = wholes["NECTAR_API_THREADS"]
        self.max_requests = wholes["NECTAR_API_MAX_REQUESTS"]
        self.keepalive_requests = wholes["NECTAR_KEEPALIVE_REQUESTS"]
        retry_after = environ.get("NECTAR_RETRY_AFTER", "")
        self.retry_after = _retry_after(retry_after) if retry_after.strip() else Settings.retry_after
        read_timeout = environ.get("NECTAR_READ_TIMEOUT", "")
        self.read_timeout = seconds("NECTAR_READ_TIMEOUT", read_timeout) if read_timeout.strip() else READ_TIMEOUT
        self.log_level = log_level(environ.get("NECTAR_LOG_LEVEL", ""))

    @property
    def bind(self) -> str:
        """The address as gunicorn reads one."""
        return host_port(self.host, self.port)


def host_port(host: str, port: int | str) -> str:
    """``host:port`` as a URL or gunicorn's bind writes it: an IPv6 host in brackets (``[::1]:5000``; ``::1:5000`` is
    no port)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _retry_after(value: object) -> int:
    """``NECTAR_RETRY_AFTER``: a Retry-After header's seconds (digits alone), for :class:`Settings` and gunicorn; at
    most :data:`INTEGER_MOST`, the most delta-seconds a recipient takes as written (RFC 9111, 1.2.2)."""
    return whole_number("NECTAR_RETRY_AFTER", value, 0, INTEGER_MOST)


#: ``nectar serve``'s (and ``api``'s, ``scheduler``'s) flags that are numbers, given or from their variables:
#: flag -> (its argparse name, its variable, least, most)
ROLE_NUMBERS: dict[str, tuple[str, str, int, int]] = {
    "--port": ("port", "NECTAR_PORT", 1, 65535),
    "--scheduler-port": ("scheduler_port", "NECTAR_SCHEDULER_PORT", 1, 65535),
    "--workers": ("workers", "NECTAR_WORKERS", 1, WORKERS_MOST),
    "--api-workers": ("api_workers", "NECTAR_API_WORKERS", 1, WORKERS_MOST),
}


#: the flags a role hands gunicorn in place of their variables (:func:`nectar.supervisor.api`): name -> variable
ROLE_VARIABLES = {"host": "NECTAR_HOST", "port": "NECTAR_PORT", "api_workers": "NECTAR_API_WORKERS"}


def check_role_settings(flags: object, environ: Mapping[str, str] | None = None) -> None:
    """:class:`InvalidSetting` naming the first value a role reads outside :class:`Settings` that it cannot take:
    ``flags`` (parsed arguments, their defaults from the environment) and gunicorn's own variables, read by the
    parser gunicorn's configuration reads them with (:class:`GunicornSettings`, a flag of :data:`ROLE_VARIABLES` in
    place of its variable, as the role hands it to gunicorn). Checked before the role starts anything, as
    :meth:`Settings.resolved` checks the settings, instead of a part failing as it starts. gunicorn's variables
    only for a role that starts gunicorn (:data:`GUNICORN_ROLES`, by ``flags.command``): a role that never reads
    them starts whatever they hold, as it did before this check."""
    environ = os.environ if environ is None else environ
    for flag, (attribute, var, least, most) in ROLE_NUMBERS.items():
        value = getattr(flags, attribute, None)
        if value is not None:
            whole_number(f"{flag} (env {var})", value, least, most)
    if getattr(flags, "command", None) not in GUNICORN_ROLES:
        return
    given = {var: str(getattr(flags, name)) for name, var in ROLE_VARIABLES.items() if hasattr(flags, name)}
    GunicornSettings({**environ, **given})


#: the commands that never import luigi (a client's, a token's): they start whatever luigi's settings hold
LUIGI_FREE_COMMANDS = frozenset({"token", "submit", "download"})


def check_luigi_parser(flags: object, environ: Mapping[str, str] | None = None) -> None:
    """:class:`InvalidSetting` where ``LUIGI_CONFIG_PARSER`` asks luigi for its toml parser, for a command that
    imports luigi (not one of :data:`LUIGI_FREE_COMMANDS`, by ``flags.command``), before it does (luigi reads its
    configuration as it is imported): the parser needs the ``toml`` package, which Datanectar
    does not ship (luigi's own ``ImportError`` was a traceback from any command), and where it is installed the parser
    keeps its settings apart from ``configparser``'s, where Datanectar reads and puts back luigi's (luigi.cfg's
    ``[scheduler] retry_count``, a reused attempt process's put-back). luigi takes another value it does not know as
    ``cfg`` (with a warning), as before."""
    if getattr(flags, "command", None) in LUIGI_FREE_COMMANDS:
        return
    environ = os.environ if environ is None else environ
    if environ.get("LUIGI_CONFIG_PARSER") == "toml":  # as luigi reads it: the exact value
        raise InvalidSetting(
            "LUIGI_CONFIG_PARSER=toml is not supported: luigi's toml parser needs the toml package, which Datanectar "
            "does not ship, and Datanectar reads luigi's settings from luigi.cfg (NECTAR_LUIGI_CONFIG); unset it or "
            "set it to cfg"
        )


#: the commands that read the chains folder: every one that takes ``--chains-dir``, and ``api`` (from its variable)
CHAINS_COMMANDS = frozenset(
    {"chains", "run", "status", "cancel", "worker", "schedules", "backfill", "triggers", "clock", "serve", "api"}
)


def check_chains_dir(flags: object, environ: Mapping[str, str] | None = None) -> None:
    """:class:`InvalidSetting` naming the chains folder a command of :data:`CHAINS_COMMANDS` would read (``flags``'
    ``--chains-dir``, else ``NECTAR_CHAINS_DIR``, else ``./chains``, as :class:`Settings` reads it) and what is wrong
    with it, where it is no folder this process can list: refused before anything starts, in one line, instead of a
    ``NotADirectoryError`` traceback from each request's catalog, or a service that quietly serves no chain from a
    folder that is not there. ``./chains`` taken by default and absent is no chain, as before: a project that has
    none yet, a machine that only serves the API over another's registry."""
    if getattr(flags, "command", None) not in CHAINS_COMMANDS:
        return
    environ = os.environ if environ is None else environ
    given = getattr(flags, "chains_dir", None) or environ.get("NECTAR_CHAINS_DIR", "").strip() or DEFAULT_CHAINS
    path = Path(os.path.abspath(Path(given).expanduser()))  # named as given: a link is not replaced by its target
    try:
        with os.scandir(path):  # opened as the catalog opens it (os.scandir), then closed unread
            pass
        if os.access(path, os.R_OK | os.X_OK):  # its chains' folders and files can be reached too
            return
        raise chains_dir_refused(path, "cannot be read (permission denied)")
    except FileNotFoundError:
        dangling = link_to_nothing(path)
        if dangling is not None:
            raise dangling from None
        if path.resolve() == Path(DEFAULT_CHAINS).resolve():  # the default (serve's flag hands it on resolved)
            return
        raise chains_dir_refused(path, "does not exist") from None
    except OSError as exc:
        raise chains_dir_refused(path, exc) from None


def link_to_nothing(path: Path) -> InvalidSetting | None:
    """The refusal of the chains folder ``path``, not there, where it is a link that leads nowhere: someone made it,
    so it is said even where a folder not there is no chain (the default's, a catalog's), named as given with its
    target beside it; None where ``path`` is no link."""
    if not path.is_symlink():
        return None
    return chains_dir_refused(path, f"does not exist (a link to {path.resolve()})")


def chains_dir_refused(path: Path, problem: str | OSError, inside: Path | None = None) -> InvalidSetting:
    """The one line that refuses the chains folder ``path``, saying what is wrong with it (``problem``, or the error
    its listing raised): for a command's start (:func:`check_chains_dir`) and a catalog's listing of a folder that
    became no folder since, or was never checked (an app made by ``gunicorn 'app:create_app()'``); or, ``inside``
    it, the folder of a chain type it cannot list."""
    if inside is not None:
        return InvalidSetting(type_folder_said(path, inside, problem))
    return InvalidSetting(f"the chains folder {path} (--chains-dir, env NECTAR_CHAINS_DIR) {folder_problem(problem)}")


def type_folder_said(path: Path, inside: Path, problem: str | OSError) -> str:
    """What is wrong with the folder of a chain type ``inside`` the chains folder ``path``, in one line."""
    return f"the chain type folder {inside} in the chains folder {path} {folder_problem(problem)}"


def folder_problem(problem: str | OSError) -> str:
    """``problem`` as the words that follow a folder's name: the error a listing of it raised, said for people."""
    if isinstance(problem, NotADirectoryError):
        return "is not a folder"
    if isinstance(problem, FileNotFoundError):
        return "does not exist"
    if isinstance(problem, OSError):
        return f"cannot be read ({problem.strerror})"
    return problem


#: not a setting: the variable by which ``nectar serve`` names to its API's gunicorn master the pipe the master tells
#: its opening of the registry by (:func:`nectar.gunicorn_conf.pre_fork`, read by
#: :func:`nectar.supervisor.refuse_a_newer_registry`): here, as both import this module already
REGISTRY_VERDICT_FD = "NECTAR_REGISTRY_VERDICT_FD"
#: what the master writes to it: the registry opened (its schema checked, brought to this release's); or refused, then
#: why. Nothing (the pipe closed) where it opened none (PostgreSQL's is left to each worker) or met another error
OPENED, REFUSED = b"opened", b"refused:"


def checked_public_url(value: str, variable: str = "NECTAR_PUBLIC_URL") -> str | None:
    """A public URL (``variable``'s) without its trailing ``/``: an http(s) URL with a host, no query or fragment."""
    value = value.strip().rstrip("/")
    if not value:
        return None
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        parts = parts._replace(netloc="")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise InvalidSetting(f"{variable} must be an http:// or https:// URL with a host, not {value!r}")
    return value


_current: Settings | None = None


def get_settings() -> Settings:
    """The process's settings, read from the environment on first use."""
    global _current
    if _current is None:
        _current = Settings.from_env()
    return _current


def configure(settings: Settings | None) -> None:
    """Set (or with None, forget) the process's settings."""
    global _current
    _current = settings


#: the luigi.cfg paths :func:`load_luigi_config` added to luigi's configuration in this process
_luigi_configs_loaded: set[str] = set()


def load_luigi_config(path: Path | None) -> None:
    """Add the project's luigi.cfg at ``path`` (``NECTAR_LUIGI_CONFIG``) to luigi's configuration, once a process, as
    ``python -m luigi`` reads ``LUIGI_CONFIG_PATH``: a task's ``[<TaskFamily>]`` values are its parameters' there, in
    the API, the clock, ``nectar run`` and the worker alike. Nothing where None, or where luigi read it at its import
    (``LUIGI_CONFIG_PATH``, as ``nectar serve`` sets it for its parts)."""
    if path is None:
        return
    key = os.path.abspath(path)
    given = os.environ.get("LUIGI_CONFIG_PATH")
    if key in _luigi_configs_loaded or (given and os.path.abspath(given) == key):
        return
    import luigi.configuration  # here: the supervisor and `nectar api` before its exec do not load luigi

    luigi.configuration.add_config_path(key)
    _luigi_configs_loaded.add(key)

"""gunicorn's configuration (:mod:`nectar.gunicorn_conf`) takes a blank variable as unset, as the settings do: an env
file's ``NECTAR_API_THREADS=`` starts the API with its default, not with ``invalid literal for int()``."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import sys

import pytest

from harness import Processes, base_env, children, lifeline_env, settings_env, waitfor
from nectar.cli import build_parser
from nectar.config import GunicornSettings, Settings, check_role_settings
from nectar.errors import InvalidSetting

BLANK_ONES = (
    "NECTAR_HOST",
    "NECTAR_PORT",
    "NECTAR_API_WORKERS",
    "NECTAR_API_THREADS",
    "NECTAR_RETRY_AFTER",
    "NECTAR_API_MAX_REQUESTS",
    "NECTAR_LOG_LEVEL",
    "NECTAR_READ_TIMEOUT",
    "NECTAR_KEEPALIVE_REQUESTS",
)
READ = (
    "import json, nectar.gunicorn_conf as c; print(json.dumps([c.bind, c.workers, c.threads, c.keepalive, "
    "c.max_requests, c.loglevel, c.READ_TIMEOUT, c.KEEPALIVE_REQUESTS]))"
)


def read_conf(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """gunicorn's configuration read as gunicorn's master reads it, in a fresh interpreter, with ``env`` alone set of
    its variables."""
    clean = {k: v for k, v in os.environ.items() if k not in BLANK_ONES}
    return subprocess.run(
        [sys.executable, "-c", READ],
        env={**clean, **env, **lifeline_env()},
        capture_output=True,
        text=True,
        timeout=120,
    )


def configured(env: dict[str, str]) -> list[object]:
    return list(_configured(tuple(sorted(env.items()))))


@functools.cache
def _configured(env: tuple[tuple[str, str], ...]) -> tuple[object, ...]:
    """:func:`read_conf`'s values, read once a module for each environment (the same every time: ``configured({})``
    is asked by four tests)."""
    result = read_conf(dict(env))
    assert result.returncode == 0, result.stderr
    return tuple(json.loads(result.stdout))


@pytest.mark.parametrize("blank", ["", " ", "\t"])
def test_a_blank_variable_is_gunicorns_default(blank: str) -> None:
    """``NECTAR_HOST=`` too: the API listens on 127.0.0.1, not on every address (``:5000``)."""
    assert configured({name: blank for name in BLANK_ONES}) == configured({})
    assert configured({}) == ["127.0.0.1:5000", 2, 8, 10, 20000, "warning", 10.0, 20]


@pytest.mark.parametrize(("value", "level"), [("warn", "warning"), ("WARN", "warning"), ("fatal", "critical")])
def test_an_old_log_level_name_is_its_level_for_gunicorn(value: str, level: str) -> None:
    """Python's logging takes ``WARN`` and ``FATAL``, gunicorn's ``--log-level`` does not (it would log at ``info``):
    an env file's ``NECTAR_LOG_LEVEL=warn`` was refused since it was checked; it is gunicorn's ``warning`` now, and
    the level of gunicorn's logger in the JSON log (Python's name for it)."""
    assert configured({"NECTAR_LOG_LEVEL": value})[5] == level
    probe = "import nectar.gunicorn_conf as c; print(c.logconfig_dict['loggers']['gunicorn.error']['level'])"
    env = {k: v for k, v in os.environ.items() if k not in BLANK_ONES} | lifeline_env()
    env |= {"NECTAR_LOG_LEVEL": value, "NECTAR_LOG_FORMAT": "json"}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == level.upper()


def test_a_set_variable_is_taken() -> None:
    values = {
        "NECTAR_HOST": "0.0.0.0",
        "NECTAR_PORT": " 5001 ",
        "NECTAR_API_WORKERS": "3",
        "NECTAR_API_THREADS": "4",
        "NECTAR_RETRY_AFTER": "7",
        "NECTAR_API_MAX_REQUESTS": "100",
        "NECTAR_LOG_LEVEL": "ERROR",
        "NECTAR_READ_TIMEOUT": "2.5",
        "NECTAR_KEEPALIVE_REQUESTS": "0",
    }
    assert configured(values) == ["0.0.0.0:5001", 3, 4, 12, 100, "error", 2.5, 0]


@pytest.mark.parametrize(("host", "address"), [("::1", ("::1", 5000)), ("::", ("::", 5000)), ("[::1]", ("::1", 5000))])
def test_an_ipv6_host_is_an_address_gunicorn_binds(host: str, address: tuple[str, int]) -> None:
    """``NECTAR_HOST=::`` (every address, as ``nectar serve`` takes it) or ``::1``: gunicorn read ``::1:5000`` as a host
    without a port and stopped (``'' is not a valid port number``); the port checks before it bind such hosts."""
    from gunicorn.util import parse_address

    bind = configured({"NECTAR_HOST": host})[0]
    assert parse_address(bind) == address
    assert parse_address(GunicornSettings({"NECTAR_HOST": host}).bind) == address


#: more digits than Python's ``int()`` reads (4300): refused in its own line, not in one naming no variable
TOO_MANY_DIGITS = "9" * 5000
RETRY_AFTER_REFUSED = "NECTAR_RETRY_AFTER must be a whole number from 0 to 2147483647, not "
READ_TIMEOUT_REFUSED = (
    "NECTAR_READ_TIMEOUT must be a number of seconds > 0, at most 1000000000 (digits, at most one point), not "
)
#: values of gunicorn's variables it cannot take, each with the one line that refuses it
REFUSED = [
    ("NECTAR_PORT", "70000", "NECTAR_PORT must be a whole number from 1 to 65535, not '70000'"),
    ("NECTAR_API_WORKERS", "x", "NECTAR_API_WORKERS must be a whole number from 1 to 65536, not 'x'"),
    ("NECTAR_API_THREADS", "x", "NECTAR_API_THREADS must be a whole number from 1 to 999, not 'x'"),
    ("NECTAR_API_THREADS", "0", "NECTAR_API_THREADS must be a whole number from 1 to 999, not '0'"),
    ("NECTAR_API_THREADS", "+5", "NECTAR_API_THREADS must be a whole number from 1 to 999, not '+5'"),
    ("NECTAR_API_THREADS", "\u0663", "NECTAR_API_THREADS must be a whole number from 1 to 999, not '\u0663'"),
    (
        "NECTAR_API_THREADS",
        TOO_MANY_DIGITS,
        f"NECTAR_API_THREADS must be a whole number from 1 to 999, not '{TOO_MANY_DIGITS}'",
    ),
    # gunicorn's gthread worker keeps alive what its 1,000 worker_connections leave beside its threads: none at 1,000
    ("NECTAR_API_THREADS", "1000", "NECTAR_API_THREADS must be a whole number from 1 to 999, not '1000'"),
    ("NECTAR_API_MAX_REQUESTS", "1_000", "NECTAR_API_MAX_REQUESTS must be a whole number of at least 0, not '1_000'"),
    ("NECTAR_API_MAX_REQUESTS", "-1", "NECTAR_API_MAX_REQUESTS must be a whole number of at least 0, not '-1'"),
    ("NECTAR_KEEPALIVE_REQUESTS", "+5", "NECTAR_KEEPALIVE_REQUESTS must be a whole number of at least 0, not '+5'"),
    ("NECTAR_KEEPALIVE_REQUESTS", "2.5", "NECTAR_KEEPALIVE_REQUESTS must be a whole number of at least 0, not '2.5'"),
    ("NECTAR_RETRY_AFTER", "-1", "NECTAR_RETRY_AFTER must be a whole number from 0 to 2147483647, not '-1'"),
    ("NECTAR_RETRY_AFTER", "soon", "NECTAR_RETRY_AFTER must be a whole number from 0 to 2147483647, not 'soon'"),
    ("NECTAR_RETRY_AFTER", "2147483648", f"{RETRY_AFTER_REFUSED}'2147483648'"),  # RFC 9111's most delta-seconds
    *[
        ("NECTAR_READ_TIMEOUT", value, f"{READ_TIMEOUT_REFUSED}{value!r}")
        for value in ("0", "nan", "inf", "1e1", "1_0")
    ],
    ("NECTAR_READ_TIMEOUT", "1000000001", f"{READ_TIMEOUT_REFUSED}'1000000001'"),  # past what a socket's wait takes
    ("NECTAR_LOG_LEVEL", "loud", "NECTAR_LOG_LEVEL must be one of debug, info, warning, error, critical, not 'loud'"),
]


#: gunicorn's configuration read for each environment of a JSON list on stdin, in one interpreter, as gunicorn's master
#: reads it (the module's code run, ``runpy``); for each, the last line of the traceback that stopped it (as the
#: interpreter prints it), or null. A refused value stops the module at its first statement that reads the settings,
#: before it sets anything up, so each is read as a fresh interpreter reads it
READ_REFUSED = """
import json, os, runpy, sys, traceback
base = dict(os.environ)
said = []
for env in json.load(sys.stdin):
    os.environ.clear()
    os.environ.update({**base, **env})
    try:
        runpy.run_module("nectar.gunicorn_conf")
    except BaseException as exc:
        said.append(traceback.format_exception_only(exc)[-1].strip())
    else:
        said.append(None)
print(json.dumps(said))
"""


@pytest.fixture(scope="module")
def refusals() -> dict[tuple[str, str], str | None]:
    """What stopped gunicorn's configuration for each value of :data:`REFUSED`, read in one interpreter
    (:data:`READ_REFUSED`: one process for the module, not one a value)."""
    clean = {k: v for k, v in os.environ.items() if k not in BLANK_ONES}
    cases = [{var: value} for var, value, _ in REFUSED]
    result = subprocess.run(
        [sys.executable, "-c", READ_REFUSED],
        input=json.dumps(cases),
        env={**clean, **lifeline_env()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return dict(zip([(var, value) for var, value, _ in REFUSED], json.loads(result.stdout), strict=True))


def test_a_refused_value_stops_a_fresh_interpreter_reading_gunicorns_configuration() -> None:
    """:data:`READ_REFUSED`'s reading, end to end: an interpreter of its own that reads the configuration as gunicorn
    does stops on the value, exit status not 0, the refusal the last line of its traceback."""
    var, value, message = REFUSED[0]
    refused = read_conf({var: value})
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines()[-1] == f"nectar.errors.InvalidSetting: {message}", refused.stderr


@pytest.mark.parametrize(("var", "value", "message"), REFUSED)
def test_gunicorn_and_the_roles_that_start_it_refuse_a_bad_value_with_the_same_line(
    refusals: dict[tuple[str, str], str | None], var: str, value: str, message: str
) -> None:
    """One parser for both (:class:`nectar.config.GunicornSettings`): gunicorn's configuration, read by a gunicorn
    started without ``nectar`` (a process manager's unit), stops on the same line as ``nectar api`` checking the
    variable before it starts gunicorn; gunicorn took a sign, ``0`` threads, another script's digits or an unknown
    log level, and named other values otherwise than the check did."""
    assert refusals[(var, value)] == f"nectar.errors.InvalidSetting: {message}"
    if var in ("NECTAR_PORT", "NECTAR_API_WORKERS"):  # a role's flags, checked in their place (the next test)
        return
    with pytest.raises(InvalidSetting) as checked:
        check_role_settings(build_parser(roles_only=True).parse_args(["api"]), {var: value})
    assert str(checked.value) == message


@pytest.mark.parametrize(("flag", "var"), [("--port", "NECTAR_PORT"), ("--api-workers", "NECTAR_API_WORKERS")])
def test_a_flag_a_role_hands_gunicorn_is_refused_as_its_variable_is(flag: str, var: str) -> None:
    """``nectar api --port 70000`` and ``NECTAR_PORT=70000`` are one value refused by one rule, the flag named."""
    parser = build_parser(roles_only=True)
    value = next(value for name, value, _ in REFUSED if name == var)
    line = next(message for name, _, message in REFUSED if name == var).removeprefix(var)
    args = ["api", "--port", "5000", "--api-workers", "2"]
    args[args.index(flag) + 1] = value
    with pytest.raises(InvalidSetting) as checked:
        check_role_settings(parser.parse_args(args), {})
    assert str(checked.value) == f"{flag} (env {var}){line}"


def test_a_blank_variable_of_a_roles_flag_is_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """``NECTAR_API_WORKERS=`` (an env file's) is ``nectar api``'s default, as gunicorn's configuration takes it, not a
    number refused."""
    for var in ("NECTAR_HOST", "NECTAR_PORT", "NECTAR_API_WORKERS"):
        monkeypatch.setenv(var, " ")
    args = build_parser(roles_only=True).parse_args(["api"])
    check_role_settings(args, {})
    assert (args.host, args.port, args.api_workers) == ("127.0.0.1", "5000", "2")


def test_a_hangup_gunicorn_queued_before_its_ready_hook_stops_the_api_instead_of_reloading_it() -> None:
    """gunicorn listens on its port, then calls ``when_ready``: a SIGHUP in between (a closed terminal, or a
    readiness check that saw the port held) is already queued for gunicorn's loop as a reload; it is a stop now, and
    the other queued signals keep their order (read in a fresh interpreter: the module defers imports). Through the
    hook itself, given gunicorn's queue as its master holds it (``SIG_QUEUE``)."""
    probe = (
        "import queue, types, signal as s, nectar.gunicorn_conf as c; q = queue.SimpleQueue(); "
        "[q.put_nowait(n) for n in (s.SIGCHLD, s.SIGHUP, s.SIGTTIN)]; "
        "c.when_ready(types.SimpleNamespace(SIG_QUEUE=q, LISTENERS=[])); "
        "print([s.Signals(q.get_nowait()).name for _ in range(q.qsize())], q.empty())"
    )
    env = {k: v for k, v in os.environ.items() if k not in BLANK_ONES} | lifeline_env()
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['SIGCHLD', 'SIGTERM', 'SIGTTIN'] True"


#: gunicorn's master handing ``nectar serve``'s supervisor its word on the registry (``pre_fork``), in a fresh
#: interpreter: what it did with the pipe's end it was named, and whether the variable is still there for its children
TELL = (
    "import os, nectar.gunicorn_conf as c; fd = int(os.environ['NECTAR_REGISTRY_VERDICT_FD']); "
    "loaded = os.get_inheritable(fd); c._tell_supervisor(b'opened'); "
    "print(loaded, os.get_inheritable(fd) if os.path.exists(f'/proc/self/fd/{fd}') else 'closed', "
    "'NECTAR_REGISTRY_VERDICT_FD' in os.environ)"
)


@pytest.mark.parametrize("started_by", ["serve", "another"])
def test_the_master_tells_the_supervisor_that_started_it_and_closes_no_descriptor_of_anyone_elses(
    started_by: str,
) -> None:
    """Started by ``serve`` (its supervisor its parent): the master keeps the pipe from what it runs as it loads the
    app (not inheritable), writes its word, closes the pipe before it forks a worker (none inherits it) and drops the
    variable. Started otherwise (by hand, a unit, a process ``serve``
    started), the variable names no pipe of ours: the descriptor is left open, whatever it is (its stderr, say)."""
    reader, writer = os.pipe()
    supervisor = os.getpid() if started_by == "serve" else os.getppid()
    env = {
        **{k: v for k, v in os.environ.items() if k not in BLANK_ONES},
        **lifeline_env(),
        "NECTAR_REGISTRY_VERDICT_FD": str(writer),
        "NECTAR_SUPERVISOR_PID": str(supervisor),
    }
    try:
        master = subprocess.Popen(
            [sys.executable, "-c", TELL], env=env, pass_fds=(writer,), stdout=subprocess.PIPE, text=True
        )
        os.close(writer)
        out, _ = master.communicate()
        with open(reader, "rb", closefd=False) as said:
            word = said.read()  # the pipe's end: the master's copy closed (or gone with it)
    finally:
        os.close(reader)
    assert master.returncode == 0
    if started_by == "serve":  # not inheritable once the configuration is read: no command run meanwhile gets it
        assert (out.split(), word) == (["False", "closed", "False"], b"opened")
    else:
        assert (out.split(), word) == (["True", "True", "False"], b"")


WORKER_AFTER_FORK = (
    "import os, queue, signal as s, types, nectar.gunicorn_conf as c; q = queue.SimpleQueue(); "
    "[q.put_nowait(getattr(s, n)) for n in {queued}]; "
    "c.post_fork(types.SimpleNamespace(SIG_QUEUE=q), None); print('went on', flush=True); "
    "os.kill(os.getpid(), s.{sent}); print('not stopped', flush=True)"
)


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGQUIT", "SIGINT"])
def test_a_worker_stopped_between_its_fork_and_its_own_handlers_stops_then(stop: str) -> None:
    """gunicorn's master stops a worker it just forked (a stop right after a start or a recycle): a stop queued by
    the master's handler copied into the child, before ``post_fork``, ends the worker there (it was lost: the master
    waited ``graceful_timeout`` and killed it), and one sent after ``post_fork``, before the worker sets its own
    handlers, ends it too, with status 0 (read in a fresh interpreter: the module defers imports)."""
    env = {k: v for k, v in os.environ.items() if k not in BLANK_ONES} | lifeline_env()

    def worker(queued: tuple[str, ...], sent: str) -> subprocess.CompletedProcess[str]:
        probe = WORKER_AFTER_FORK.format(queued=queued, sent=sent)
        return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)

    queued_before = worker(("SIGCHLD", stop), "SIGCHLD")
    assert (queued_before.returncode, queued_before.stdout) == (0, ""), queued_before.stderr

    sent_after = worker(("SIGCHLD",), stop)
    assert (sent_after.returncode, sent_after.stdout) == (0, "went on\n"), sent_after.stderr


def opened_by(pid: int) -> list[str]:
    """What the descriptors of process ``pid`` are open on (one closed meanwhile left out)."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            found.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return found


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no memory file system at /dev/shm here")
def test_a_workers_heartbeat_file_is_in_memory(settings: Settings, processes: Processes) -> None:
    """A gunicorn worker touches its heartbeat file at each pass of its loop (about twice a request): the file is in
    /dev/shm, not on the disk, where each touch dirtied an inode to write back."""
    served = processes.api(None, base_env() | settings_env(settings), workers=1)
    (worker,) = waitfor(lambda: children(served.proc.pid) or None, 60, "the API's worker")

    heartbeats = [path for path in opened_by(worker) if "/wgunicorn-" in path]

    assert heartbeats and all(path.startswith("/dev/shm/wgunicorn-") for path in heartbeats), heartbeats

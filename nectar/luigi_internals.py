"""The one module that touches luigi's private names; everything else calls it.

luigi is pinned to the minor version tested (``pyproject.toml``), and ``tests/nectar/test_luigi_internals.py``
fails loudly, naming the name, when a release changes one of them under us:

- ``RemoteScheduler._request``, through which every RPC of luigi's scheduler client goes, and its ``_fetch``: the
  one hook that puts luigi's RPC methods over our own transport (:class:`RemoteScheduler`), which hands it an
  answer already decoded as it is (one read from a batch's); its ``__init__`` run with its module's ``HAS_REQUESTS``
  false, so that it makes no transport of its own (:data:`_init_without_requests`);
- ``luigi.worker.Worker`` made and run as ``luigi.interface._schedule_and_run`` does (:func:`new_worker`,
  :func:`schedule_and_run`), its ``_add_worker`` told after its first ``_get_work``, its ``KeepAliveThread``
  (made as its ``__enter__`` makes it, from its ``_scheduler``, ``_id``, ``_config`` and ``_handle_rpc_message``,
  kept as ``_keep_alive_thread``) run by a standby thread (:class:`_KeepAlive`), its last ``_get_work`` not
  asked of luigid once every task it scheduled is DONE (its ``_add_task``, ``_add_task_history``,
  ``_get_work_response_history``, ``_scheduled_tasks``, ``_running_tasks``), a step luigid grants it not run if
  another worker made it since it was found undone (its ``_run_task``, ``_batch_running_tasks``), its
  ``_task_result_queue`` in memory when its steps run in its own process (:class:`Worker`), else carrying a step's
  uncounted mark from the step's process (:class:`_MarkedResults`: a result's 5 items), its ``[worker]``
  settings given ready-made: its ``__init__`` reads the names ``worker`` and ``multiprocessing`` of ``luigi.worker``
  (:func:`_worker_made_with`), its ``__init__`` and ``_generate_worker_info`` the names ``getpass`` and ``socket``,
  its ``__init__`` the name ``signal`` (its SIGUSR1 handler, ``handle_interrupt``) (:func:`_described_once`), and
  ``execution_summary._summary_dict`` (:attr:`RunResult.tasks_by_outcome`), its ``_add_task_history`` read as that
  summary reads it for its DONE tasks (:func:`done_in_build`),
  ``_summary_format``, ``_summary_wrap``, ``_tasks_status`` and ``_create_one_line_summary`` (:class:`RunResult`);
- ``Parameter._is_batchable``, whether a parameter batches (:func:`batched_params`);
- ``Worker._purge_children``, not run where no step's process is started, and ``Worker._log_remote_tasks``, not run
  where luigi's logger does not show DEBUG (:class:`Worker`);
- ``worker._is_external`` (:func:`is_external`), ``worker._get_retry_policy_dict``, a task's retry policy as luigi's
  worker sends it (:func:`retry_policy_of`), the choices a parameter keeps (:func:`choices_of`),
  ``ParameterVisibility.has_value``, which every parameter made asks (:func:`_has_visibility`);
- the registry of task classes, ``Register._reg`` and ``Register._get_reg`` (:func:`forget_task_classes`,
  :func:`extend_task_registry`), ``Register._get_namespace``, which each class made asks, and its ``_module_parents``
  (:func:`_namespace_of`), and the instance cache ``Register.__call__`` keeps (:func:`uncached_task`);
- ``Parameter._counter``, the order of a task class's parameters, and ``Task.get_params``'s walk, answered without it
  (:func:`task_params`);
- ``Task._unconsumed_params``, which luigi adds to a task class as it makes its first task (:func:`hold_class_shape`);
- ``Task.__init__``'s work, its private ``_Task__hash`` included, done as it does it but with the task_id handed in
  (:func:`make_as_luigi_does`), and ``task_id_str``'s format of an id from its hash (:func:`luigi_task_id`), its
  ``_warn_on_wrong_param_types`` made only where a parameter's ``_warn_on_wrong_param_type`` may warn
  (:func:`warn_on_wrong_param_types`), and ``luigi.configuration.core``'s choice of its parser, which
  ``get_config`` reads from the environment at each call (:func:`configured`);
- ``Register.__call__``, which reads a task's parameter values for its instance cache before ``Task.__init__`` reads
  them again (:class:`ReadOnceRegister`, :func:`param_values_once`);
- ``luigi.server.app``, the application each luigid socket serves (:func:`wrap_luigid_app`, :func:`route_luigid_app`),
  ``luigi.server.RPCHandler``, its handler of RPCs, and ``luigi.scheduler.RPC_METHODS``, the methods it serves
  (:func:`luigid_rpc_handler`, :func:`luigid_rpc_methods`), ``luigi.server.cors``, the settings that handler
  reads per call (:func:`luigid_reads_cors_once`), and ``Scheduler._prune_tasks`` and
  ``SimpleTaskState._remove_workers_from_tasks``, the walks of every task its prune makes (:func:`luigid_prunes_lean`),
  and ``SimpleTaskState._status_tasks``, each status's tasks in the order they took it, the oldest finished of which
  luigid forgets beyond those it keeps (:func:`luigid_prunes_lean`),
  and ``Scheduler._state``, whose count of DISABLED tasks tells whether any is (:func:`holds_disabled`), and whose
  tasks its ``add_task`` and ``get_work`` mark and answer reopened (:func:`luigid_marks_reopened`), and
  ``SimpleTaskState.dump``, which saves luigid's state in place, its ``_state_path`` and ``get_state``
  (:func:`luigid_saves_whole`), and ``Scheduler._make_task`` and ``_generate_retry_policy``, which its
  ``add_task`` asks for a task it may know and for its policy, and ``SimpleTaskState._tasks``
  (:func:`luigid_makes_once`), and a task's ``add_failure``, which its
  ``add_task`` makes count nothing for a cancel's FAILED and a failure told again (:func:`luigid_counts_no_cancel`);
- ``S3Client._path_to_bucket_and_key`` (:func:`s3_bucket_and_key`);
- ``MockFileSystem._data``, the dict every ``luigi.mock.MockTarget`` of a process keeps its data in, made in a
  ``multiprocessing.Manager()`` process that luigi never stops, its proxy's ``_manager`` and that manager's
  ``_process`` (:func:`stop_mock_filesystem`);
- ``InterfaceLogging._configured``, whether luigi's logging was set up in the process (:func:`luigi_logging_set_up`);
- ``_config_paths`` of luigi's configuration parser's class, the files it reads as it reloads, which
  ``luigi.configuration.add_config_path`` appends to (:func:`config_paths`);
- ``ExternalProgramRunError.__str__`` of ``luigi.contrib.external_program``, whose text ends in every variable of the
  environment the program ran with (:func:`program_errors_keep_environment`);
- ``RunAnywayTarget.unique`` of ``luigi.contrib.simulate``, one value an execution of a pipeline
  (:func:`runs_anyway_anew`).
"""

from __future__ import annotations

import abc
import contextlib
import functools
import getpass
import heapq
import itertools
import json
import logging
import multiprocessing
import operator
import os
import pickle
import pwd
import queue
import secrets
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
import types
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from typing import Any, ClassVar, NamedTuple, TypeVar

import luigi
import luigi.configuration
import luigi.interface
import luigi.metrics
import luigi.mock
import luigi.rpc
import luigi.scheduler
import luigi.worker
from luigi.configuration.cfg_parser import LuigiConfigParser
from luigi.execution_summary import (
    LuigiRunResult,
    LuigiStatusCode,
    _create_one_line_summary,
    _summary_dict,
    _summary_format,
    _summary_wrap,
    _tasks_status,
)
from luigi.parameter import Parameter, ParameterVisibility
from luigi.parameter import _no_value as _NO_VALUE
from luigi.scheduler import WORKER_STATE_ACTIVE
from luigi.setup_logging import InterfaceLogging
from luigi.task import (
    TASK_ID_INCLUDE_PARAMS,
    TASK_ID_INVALID_CHAR_REGEX,
    TASK_ID_TRUNCATE_HASH,
    TASK_ID_TRUNCATE_PARAMS,
)
from luigi.task_register import Register
from luigi.task_status import DISABLED, DONE, FAILED, PENDING

from nectar import forks, standby
from nectar.pings import PINGS, Pinged
from nectar.retry_count import kept_count
from nectar.stdlib_internals import environ_data, new_event, raw_handler
from nectar.stops import FLUSHING, SAVING

logger = logging.getLogger(__name__)
#: luigi's worker's logger (``luigi.worker``'s ``logger``)
_LUIGI_LOG = logging.getLogger("luigi-interface")
#: what marks luigi's registry as extended (once per process)
_EXTENDED = "_nectar_extended"
#: the set luigi's ``Task.get_param_values`` gives a task class as it makes its first task (:func:`hold_class_shape`)
_UNCONSUMED = "_unconsumed_params"
#: luigi's ``Task``'s private hash of its task id (``self.__hash`` in its class: mangled)
_TASK_HASH = "_Task__hash"
#: luigi's ``RemoteScheduler.get_work``: luigi sets its RPC methods on the class on the fly (``luigi.rpc``, from
#: ``luigi.scheduler.RPC_METHODS``), so no type names them; read once, as ``super().get_work`` would find it
_rpc_get_work: Callable[..., Any] = vars(luigi.rpc.RemoteScheduler)["get_work"]
#: luigi's ``RemoteScheduler.__init__`` run where its module's ``HAS_REQUESTS`` is false: it reads its settings as
#: luigi's does, and makes urllib's fetcher (one object, nothing imported) instead of requests' (a ``requests.Session``,
#: whose import is ~10 MB and ~0.1 s of CPU in each process that makes a client): :class:`RemoteScheduler` sends every
#: RPC through ``post``, never through luigi's fetcher
_init_without_requests: Callable[..., None] = types.FunctionType(
    luigi.rpc.RemoteScheduler.__init__.__code__,
    {**vars(luigi.rpc), "HAS_REQUESTS": False},
    "__init__",
    luigi.rpc.RemoteScheduler.__init__.__defaults__,
)


def _replace(owner: object, name: str, value: object) -> None:
    """Set ``name`` of luigi's ``owner`` (a class's method, a module's name, an object's attribute) to ``value``, which
    is not of the type luigi gives it (a function of ours for a method, our queue for its ``multiprocessing.Queue``):
    the one place this module replaces a name of luigi's. ``tests/nectar/test_luigi_internals.py`` names each one."""
    setattr(owner, name, value)


#: the key of luigid's answer to ``get_work`` that says whether a worker's PENDING took the granted step back from
#: DONE since it was last granted (:func:`luigid_marks_reopened`)
REOPENED = "nectar_reopened"
#: the key of luigid's answer to ``get_work`` that says whether it held a task it DISABLED then
#: (:mod:`nectar.luigid_server`)
HOLDS_DISABLED = "nectar_holds_disabled"
#: the argument of an ``add_task`` of a cancelled run's step that has luigid count no failure of it
#: (:func:`luigid_counts_no_cancel`)
UNCOUNTED = "nectar_uncounted"
#: the argument of an ``add_task`` FAILED that names its failure, one name a failure (:func:`failure_named`): luigid
#: counts it once however many times it is sent (:func:`luigid_counts_no_cancel`)
FAILURE = "nectar_failure"
#: what luigid answers an RPC sent ahead (:attr:`RemoteScheduler.held_back`): luigi's worker reads no answer of it
HELD_ANSWER = '{"response": null}'
#: the name of the thread of its own that runs luigi's keep-alive loop when no standby is idle (:class:`_KeepAlive`)
KEEP_ALIVE_THREAD = "luigi-keep-alive"
#: luigi's keep-alive loop (``KeepAliveThread.run``), which reads only the attributes :class:`_KeepAlive` sets
_LUIGI_KEEP_ALIVE_LOOP: Callable[[object], None] = vars(luigi.worker.KeepAliveThread)["run"]
#: what a call through luigi's retry loop answers (:meth:`RemoteScheduler._retried`)
_Answered = TypeVar("_Answered")


class RemoteScheduler(luigi.rpc.RemoteScheduler):
    """luigi's scheduler client (the RPC methods a luigi worker calls) over a transport of ours.

    Every RPC is ``post(path, form)`` (``path`` under luigid's URL: ``/api/add_task``), once; only a call
    that raised one of ``raises`` goes through luigi's own retry loop (``[core] rpc-retry-attempts``,
    ``rpc-retry-wait``, its log lines), and fails as luigi's does (``luigi.rpc.RPCError``).

    An RPC in :attr:`held_back` (luigi's worker reads no answer of it) is ``send``: sent at once, or held and sent in
    one request with the thread's next RPC when the transport :attr:`batches`; its answer read by the transport with
    that next RPC (which fails if it did); luigid gets the same calls in the same order. :meth:`send_held` reads what
    is unread (a worker's run ends so).
    """

    #: sends one RPC, after the answers of what this thread sent ahead; its answer: the body, or its JSON already
    #: decoded (an object with luigid's ``response``): a subclass sets it (an attribute, not a method: no extra call
    #: on the way)
    post: Callable[[str, dict[str, str]], bytes | dict[str, Any]]
    #: sends one RPC ahead, its answer read with the thread's next; None: no RPC is sent ahead
    send: Callable[[str, dict[str, str]], None] | None = None
    #: reads the answers of what this thread sent ahead: a subclass that sets ``send`` sets it
    flush: Callable[[], None]
    #: what a failed ``post`` raises
    raises: tuple[type[BaseException], ...] = ()
    #: the paths of the RPCs sent ahead, by a subclass that sets ``send``
    held_back: frozenset[str] = frozenset()
    #: ``meanwhile(work)`` runs ``work`` on this thread once its next RPC is sent, before its answer is read; None:
    #: not offered (:class:`_KeepAlive` starts at once)
    meanwhile: Callable[[Callable[[], object]], None] | None = None

    #: luigi's RPC methods this service calls (beside ``get_work``, below): luigi sets them on its class on the fly
    #: (``luigi.rpc``, from ``luigi.scheduler.RPC_METHODS``), so no type names them; each sends its keyword arguments
    #: to luigid's method of that name and answers luigid's JSON answer
    add_task: Callable[..., Any]
    add_worker: Callable[..., Any]
    ping: Callable[..., Any]

    #: luigid's answer to this client's last ``get_work``: what the step it granted was granted with
    granted: dict[str, Any] | None = None
    #: whether luigid held a task it DISABLED when it answered this client's last ``get_work`` (None: not said)
    holds_disabled: bool | None = None

    def __init__(self, url: str = "http://localhost:8082/", connect_timeout: float | None = None) -> None:
        _init_without_requests(self, url, connect_timeout)

    def get_work(self, *args: Any, **kwargs: Any) -> Any:
        answer = _rpc_get_work(self, *args, **kwargs)
        self.granted = answer if isinstance(answer, dict) else None
        said = answer.get(HOLDS_DISABLED) if isinstance(answer, dict) else None
        self.holds_disabled = said if isinstance(said, bool) else None
        return answer

    @property
    def batches(self) -> bool:
        """Whether what is sent ahead is held, and sent in one request with the next RPC (a subclass may say so)."""
        return False

    @property
    def url(self) -> str:
        """luigid's URL, without its trailing slash."""
        return str(self._url)

    @property
    def connect_timeout(self) -> float:
        """The timeout given, else luigi's ``[core] rpc-connect-timeout``."""
        return float(self._connect_timeout)

    def _request(self, url: str, data: Any, attempts: int = 3, allow_null: bool = True) -> Any:
        """luigi's ``RemoteScheduler._request``, through which every RPC method of its client goes: luigid's
        ``response`` to the call, read from :attr:`post`'s answer as it comes (luigi's reads a text's JSON: an answer
        already decoded was written back to JSON for it, and read again). A call sent ahead answers
        :data:`HELD_ANSWER`'s ``response`` (None) without a read of that text each time: three of a trivial run's
        calls, ~100 bytecodes each."""
        failed = data.get("status") == FAILED and url.endswith("/add_task")  # a failure: named, sent again alike
        body = {"data": json.dumps(failure_named(data) if failed else data)}
        for _ in range(attempts):
            answer = self._answer(url, body)
            if answer is HELD_ANSWER:
                response = None
            else:
                response = (json.loads(answer) if isinstance(answer, str | bytes) else answer)["response"]
            if allow_null or response is not None:
                return response
        raise luigi.rpc.RPCError(f"Received null response from remote scheduler {self._url!r}")

    def _fetch(self, url_suffix: str, body: dict[str, str]) -> str:
        answer = self._answer(url_suffix, body)
        if isinstance(answer, str):
            return answer
        return answer.decode() if isinstance(answer, bytes) else json.dumps(answer)

    def _answer(self, url_suffix: str, body: dict[str, str]) -> str | bytes | dict[str, Any]:
        path = "/" + url_suffix.lstrip("/")
        try:
            if self.send is not None and path in self.held_back:
                self.send(path, body)
                return HELD_ANSWER
            return self.post(path, body)
        except self.raises:
            return self._retried(lambda: self.post(path, body))

    def send_held(self) -> None:
        """Read the answers of what this thread sent ahead (through luigi's retry loop if that fails, as any call)."""
        if self.send is None:
            return
        try:
            self.flush()
        except self.raises:
            self._retried(self._flushed)

    def _flushed(self) -> str:
        self.flush()
        return HELD_ANSWER

    def _retried(self, call: Callable[[], _Answered]) -> _Answered:
        try:
            answer: _Answered = self._get_retryer()(call)
            return answer
        except self.raises as exc:
            why = f"Errors ({self._rpc_retry_attempts} attempts) when connecting to remote scheduler {self._url!r}"
            raise luigi.rpc.RPCError(why, exc) from exc


#: what each step of this process's last luigi worker yielded (luigi's dynamic dependencies), by the yielding step's
#: task id: each yielded task's family and its parameters as text, as luigi's task process reports them with its
#: result (``(task_id, status, expl, missing, new_deps)``); made anew with each :class:`Worker`
_YIELDED: dict[str, set[tuple[str, tuple[tuple[str, str], ...]]]] = {}


def _note_yielded(result: tuple[Any, ...]) -> None:
    """Note the tasks the step of ``result`` (luigi's task process's) yielded, if any."""
    if len(result) > 4 and result[4]:
        _YIELDED.setdefault(result[0], set()).update(
            (family, tuple(sorted(params.items()))) for _, family, params in result[4]
        )


def yielded(task_id: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """The tasks the step ``task_id`` yielded in this process's last luigi worker, each as :func:`task_ident` says."""
    return _YIELDED.get(task_id, set())


def task_ident(task: luigi.Task) -> tuple[str, tuple[tuple[str, str], ...]]:
    """``task``'s family and its parameters as text, as luigi's worker names a task a step yielded."""
    return task.task_family, tuple(sorted(task.to_str_params().items()))


class _InProcessResults(queue.SimpleQueue[Any]):
    """The results of steps run in the worker's own process: handed over in memory, not through a pipe and the
    feeder thread of luigi's ``multiprocessing.Queue`` (a thread switch per step, under the GIL); what a step yielded
    noted as it is put (:func:`yielded`)."""

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        _note_yielded(item)
        super().put(item, block, timeout)

    def close(self) -> None:
        """Nothing to release (luigi closes its queue as the worker ends)."""


class _MarkedResults:
    """luigi's ``multiprocessing.Queue`` of a worker's step results (``Worker._task_result_queue``, the
    ``result_queue`` of the ``TaskProcess`` it forks per step), through which the mark of a step interrupted in a
    process of its own (:func:`uncounted`, set on that process's copy of the task) reaches the worker that tells
    luigid: put with the result in the step's process (a sixth item), taken off as the worker gets it, which marks
    its own copy of the task (``Worker._scheduled_tasks``) for its ``_add_task`` of that result, next."""

    def __init__(self, results: Any, tasks: dict[str, luigi.Task]) -> None:
        self.results, self.tasks = results, tasks

    def put(self, result: tuple[Any, ...]) -> None:
        task = self.tasks.get(result[0])
        marked = result[1] == FAILED and task is not None and task.__dict__.get(UNCOUNTED, False)
        self.results.put((*result, UNCOUNTED) if marked else result)

    def get(self, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        result: tuple[Any, ...] = self.results.get(*args, **kwargs)
        if result[5:] == (UNCOUNTED,):
            result = result[:5]
            task = self.tasks.get(result[0])
            if task is not None:
                uncounted(task)
        _note_yielded(result)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.results, name)


class _InMemoryQueues:
    """``multiprocessing`` as luigi's worker sees it while it is made to run its steps in its own process: its
    ``Queue()`` is :class:`_InProcessResults` (no pipe, no semaphores: 0.7 ms of a fresh attempt's CPU)."""

    Queue = _InProcessResults

    def __getattr__(self, name: str) -> Any:
        return getattr(multiprocessing, name)


#: the variables ``getpass.getuser`` reads the user's name from, in its order, before it asks the password database
_USER_VARIABLES = ("LOGNAME", "USER", "LNAME", "USERNAME")
#: those names as ``os.environ`` keeps them (:func:`~nectar.stdlib_internals.environ_data`)
_USER_KEYS = tuple(map(os.fsencode, _USER_VARIABLES))


def worker_user() -> str:
    """The user's name as ``getpass.getuser()`` finds it (luigi names a worker's user so: luigid's workers view), the
    password database read once per process and uid, not once per worker made (a worker run with neither
    ``LOGNAME`` nor ``USER`` set read ``/etc/passwd`` for each run); a process forked after inherits what it found.
    The variables are read in the environment's own dictionary: a variable not set is a dictionary's miss, where
    ``os.environ.get`` raises and catches a ``KeyError`` (~3.6k instructions more than a variable set, callgrind),
    four for each worker made where none is set (the image's ``USER nectar`` sets none of them)."""
    environ = environ_data()
    for key in _USER_KEYS:
        user = environ.get(key)
        if user:
            return os.fsdecode(user)
    return _account_name(os.getuid())


@functools.cache
def _account_name(uid: int) -> str:
    return pwd.getpwuid(uid).pw_name  # KeyError when there is none: luigi leaves the user out, as getuser's error


class _UserOnce:
    """``getpass`` as luigi's worker sees it while it describes itself: its ``getuser`` is :func:`worker_user`."""

    getuser = staticmethod(worker_user)

    def __getattr__(self, name: str) -> Any:
        return getattr(getpass, name)


@functools.cache
def host_name() -> str:
    """This host's name (``socket.gethostname``), asked once per process; a process forked after inherits it."""
    return socket.gethostname()


class _HostOnce:
    """``socket`` as luigi's worker sees it while it is made: its ``gethostname`` is :func:`host_name`. luigi's
    ``Worker.__init__`` asks it twice (its ``host``, then its worker info's), a ``uname`` system call each, for the
    worker every run makes."""

    gethostname = staticmethod(host_name)

    def __getattr__(self, name: str) -> Any:
        return getattr(socket, name)


#: the luigi worker made last in this process, whose ``handle_interrupt`` SIGUSR1 calls (:func:`_interrupt`): held
#: weakly, as a bound method (luigi's handler held it strongly, until the next worker's replaced it)
_interrupted: weakref.WeakMethod[Callable[[int, types.FrameType | None], None]] | None = None


def _interrupt(signum: int, frame: types.FrameType | None) -> None:
    """SIGUSR1's handler in a process that made a luigi worker (:class:`_InterruptHandledOnce`): the last worker made
    stops asking for work, as luigi's own handler, set by each worker for itself, had it."""
    handler = _interrupted() if _interrupted is not None else None
    if handler is not None:
        handler(signum, frame)


class _InterruptHandledOnce:
    """``signal`` as luigi's worker sees it while it is made: its SIGUSR1 handler (``handle_interrupt``, a bound method
    of the worker) is the one :func:`_interrupt` calls, set once per process, where luigi's ``Worker.__init__`` set
    a handler of its own and asked ``siginterrupt`` for each worker (each run makes one): 3 ``rt_sigaction`` system
    calls a run, now none once the handler is set (it stays set: :func:`nectar.reuse.put_back` puts back a handler
    a run changed, to what it was before the run). Any other signal, and a worker made off the main thread (where
    ``signal.signal`` raises, as luigi expects), as ``signal`` itself."""

    def __init__(self) -> None:
        #: whether :func:`_interrupt` was found set already: luigi's ``siginterrupt`` that follows is then not repeated
        self._was_set = False

    def signal(self, signum: int, handler: Any) -> Any:
        global _interrupted
        is_main = threading.current_thread() is threading.main_thread()
        if signum != signal.SIGUSR1 or not is_main or not isinstance(handler, types.MethodType):
            return signal.signal(signum, handler)
        self._was_set = raw_handler(signum) is _interrupt  # (signal.getsignal's enum lookup of a function raises)
        if not self._was_set:
            signal.signal(signum, _interrupt)
        _interrupted = weakref.WeakMethod(handler)
        return _interrupt

    def siginterrupt(self, signum: int, flag: bool) -> None:
        if not (self._was_set and signum == signal.SIGUSR1):
            signal.siginterrupt(signum, flag)

    def __getattr__(self, name: str) -> Any:
        return getattr(signal, name)


@contextlib.contextmanager
def _described_once() -> Iterator[None]:
    """While luigi's worker is made and describes itself: the user's name and the host's, each found once per process
    (:class:`_UserOnce`, :class:`_HostOnce`), and its SIGUSR1 handler set once per process
    (:class:`_InterruptHandledOnce`). luigi's worker is made on one thread."""
    module = vars(luigi.worker)
    saved = module["getpass"], module["socket"], module["signal"]
    module["getpass"], module["socket"], module["signal"] = _UserOnce(), _HostOnce(), _InterruptHandledOnce()
    try:
        yield
    finally:
        module["getpass"], module["socket"], module["signal"] = saved


@contextlib.contextmanager
def _worker_made_with(config: luigi.worker.worker, in_memory: bool) -> Iterator[None]:
    """While luigi's ``Worker.__init__`` runs: its ``[worker]`` settings are ``config`` (not read again from luigi's
    configuration), and its results queue in memory if ``in_memory``. luigi's worker is made on one thread."""
    module = vars(luigi.worker)
    saved = module["worker"], module["multiprocessing"]
    module["worker"] = lambda **_: config
    if in_memory:
        module["multiprocessing"] = _InMemoryQueues()
    try:
        yield
    finally:
        module["worker"], module["multiprocessing"] = saved


class _KeepAlive:
    """luigi's keep-alive for one worker. In a process that keeps standby threads (a spare, then a reused attempt
    process: :mod:`nectar.standby`), the worker is registered with the process's one loop of pings
    (:data:`~nectar.pings.PINGS`), which lives with the process: no thread handed the loop, woken or stopped on a
    run's way unless that loop has ended (idle for an interval). Otherwise luigi's keep-alive thread (its loop,
    luigi's ``KeepAliveThread.run``), run by a standby thread if one is idle, else by a daemon thread of its own,
    as luigi's. Not itself a thread: a ``threading.Thread`` made for each attempt and never started (a standby runs
    the loop) was its name, its events and its entry in ``threading``'s dangling threads, each run.

    With luigid, a loop not running yet starts while the worker waits for luigid's answer to its next RPC (its first
    ``get_work``: :attr:`RemoteScheduler.meanwhile`), at the latest as its first step runs (:meth:`begin`): a thread
    woken while the worker holds the GIL stalled it for 1-24 ms in 8 % of attempts on 2 loaded cores (the woken
    thread took the core, then waited for the GIL). Its first ping is a ``ping_interval`` away either way; a worker
    stopped before it started never starts it.
    """

    def run(self) -> None:
        """luigi's loop: pings every ``_ping_interval`` until stopped, hands luigid's messages to the callback."""
        _LUIGI_KEEP_ALIVE_LOOP(self)

    def __init__(
        self,
        scheduler: Any,
        worker_id: str,
        ping_interval: float,
        rpc_message_callback: Callable[[dict[str, Any]], object],
    ) -> None:
        self._should_stop = new_event()  # luigi's names: its loop reads them (threading's Event, made leaner)
        self._scheduler = scheduler
        self._worker_id = worker_id
        self._ping_interval = ping_interval
        self._rpc_message_callback = rpc_message_callback
        self._started: standby.Started | None = None
        #: whether its loop was started, or will never be (stopped first)
        self._begun = False
        #: its place in the process's loop of pings (None: luigi's loop of its own)
        self._pinged: Pinged | None = None

    def ping(self) -> None:
        """One turn of luigi's loop: a ping under luigi's ``fork_lock``, luigid's messages handed to the callback; a
        failed ping is logged as luigi's loop logs it."""
        with luigi.worker.fork_lock:
            response = None
            try:
                response = self._scheduler.ping(worker=self._worker_id)
            except BaseException:  # as luigi's: httplib.BadStatusLine
                _LUIGI_LOG.warning("Failed pinging scheduler")
            if response:
                for message in response["rpc_messages"]:
                    self._rpc_message_callback(message)

    def stop(self) -> None:
        self._should_stop.set()
        if self._pinged is not None:
            PINGS.unregister(self._pinged)
            if _LUIGI_LOG.isEnabledFor(logging.INFO):  # luigi's loop's last record
                _LUIGI_LOG.info("Worker %s was stopped. Shutting down Keep-Alive thread", self._worker_id)

    def start(self) -> None:
        pinged = Pinged(self.ping, self._ping_interval)  # its first ping due a ping_interval from now, as luigi's
        if PINGS.register(pinged):
            self._pinged, self._begun = pinged, True  # the process's loop runs: no hand-over, no wake-up
            return
        if standby.has_idle():
            self._pinged = pinged  # the loop, stopped since the last run, to be started (:meth:`begin`)
        else:
            PINGS.unregister(pinged)
        meanwhile = getattr(self._scheduler, "meanwhile", None)
        if meanwhile is None:
            self.begin()
        else:
            meanwhile(self.begin)

    def begin(self) -> None:
        """Start the loop now, unless it was started, or stopped first."""
        if self._begun or self._should_stop.is_set():
            return
        self._begun = True
        if self._pinged is not None:
            PINGS.serve()
        else:
            self._started = standby.start(self.run, KEEP_ALIVE_THREAD)

    def join(self, timeout: float | None = None) -> None:
        """luigi's worker joins its keep-alive as it exits, once stopped. A loop on a thread of its own is waited for,
        as luigi's; one on a standby thread is not: stopped, it starts no ping more, and it ends on that thread (its
        last record written) while the attempt goes on to record its run's end. Waited for, that thread had to get
        a core and the GIL first, on the attempt's path from ``run()`` to DONE: 0.5-0.6 ms mean a run (1.5-2.1 ms
        at p90) on 2 loaded cores. The thread is not handed other work before it ends (:func:`~nectar.standby.hand`).
        A worker of the process's loop of pings was unregistered as it stopped (a ping under way waited for)."""
        if not self._begun:
            self._begun = True  # stopped before it started: it never will
        elif self._started is not None and self._started.own:
            self._started.join(timeout)

    def is_alive(self) -> bool:
        if self._pinged is not None:
            return PINGS.is_pinged(self._pinged)
        return self._started is not None and self._started.is_alive()


class Worker(luigi.worker.Worker):
    """luigi's worker, whose ``add_worker`` (who it is, and its first task: luigid's workers view) is told luigid
    right after its first ``get_work`` when it is sent ahead, on its own (:attr:`RemoteScheduler.held_back`, not
    :attr:`RemoteScheduler.batches`): luigid grants the first step without waiting behind it (luigid knows a worker
    from its first ``add_task``; its description is what ``add_worker`` adds), and the answer is read before the
    worker's run ends; held for a batch, it goes before that ``get_work``, in its request, as luigi orders them.
    Once every task it scheduled it told luigid DONE, luigid is not asked for more work (:meth:`_all_done`): luigid
    would grant it none, and luigi's worker would end on that answer. A worker that runs its steps in its own process
    (one process, no ``force_multiprocessing``) gets their results in memory (:class:`_InProcessResults`).
    ``config``: its ``[worker]`` settings, made ahead (:func:`worker_config`), when no setting is given here."""

    def __init__(
        self,
        scheduler: luigi.scheduler.Scheduler | RemoteScheduler | None = None,
        worker_id: str | None = None,
        worker_processes: int = 1,
        assistant: bool = False,
        config: luigi.worker.worker | None = None,
        **kwargs: Any,
    ) -> None:
        _YIELDED.clear()  # an attempt's luigi worker: what its steps yield
        with _described_once():
            if config is not None and not kwargs:
                in_memory = not (config.force_multiprocessing or int(worker_processes) > 1)
                with _worker_made_with(config, in_memory):
                    super().__init__(scheduler, worker_id, worker_processes, assistant)
            else:
                super().__init__(scheduler, worker_id, worker_processes, assistant, **kwargs)
        self._add_worker_due = False
        #: with luigid, the ids of the tasks this worker told luigid a status of, and of those whose last was not DONE
        self._told: set[str] = set()
        self._undone: set[str] | None = set() if isinstance(scheduler, RemoteScheduler) else None
        #: a task and luigi's task process of it made ahead (:meth:`task_process_ahead`), handed out once
        self._process_ahead: tuple[luigi.Task, Any] | None = None
        #: called as a step is to run in a process of its own (a ``worker_timeout``'s, where this worker runs its
        #: steps in its own process): the ``task_process_context`` (a dotted name) that step runs in
        self.forking: Callable[[], str] | None = None
        if not isinstance(self._task_result_queue, _InProcessResults) and not (
            self._config.force_multiprocessing or self.worker_processes > 1  # luigi's _create_task_process's test
        ):
            self._task_result_queue.close()  # luigi calls put, get (with a timeout) and close of it
            _replace(self, "_task_result_queue", _InProcessResults())
        elif not isinstance(self._task_result_queue, _InProcessResults):  # steps run in processes of their own
            _replace(self, "_task_result_queue", _MarkedResults(self._task_result_queue, self._scheduled_tasks))

    def _generate_worker_info(self) -> list[tuple[str, Any]]:
        """luigi's, the user's name found as ``getpass.getuser`` finds it and the host's, once per process
        (:func:`_described_once`)."""
        with _described_once():
            info: list[tuple[str, Any]] = super()._generate_worker_info()
        return info

    def __enter__(self) -> Worker:
        """luigi's ``Worker.__enter__``, its keep-alive loop on a standby thread if this process has one idle
        (:class:`_KeepAlive`)."""
        keep_alive = _KeepAlive(self._scheduler, self._id, self._config.ping_interval, self._handle_rpc_message)
        _replace(self, "_keep_alive_thread", keep_alive)  # luigi's worker calls its stop and join
        keep_alive.start()
        return self

    def _add_worker(self) -> None:
        held = isinstance(self._scheduler, RemoteScheduler) and "/api/add_worker" in self._scheduler.held_back
        if held and not self._scheduler.batches:
            self._add_worker_due = True  # told after the first get_work (sent without waiting for its answer)
        else:
            super()._add_worker()

    def _add(self, task: luigi.Task, is_complete: Any) -> Any:
        """luigi's, what ``task``'s ``complete()`` raised (luigi's text of it) noted on the task first
        (:func:`complete_error`): asked in a process of luigi's scheduling pool, that text is all that comes back."""
        _noted_as_added(task, is_complete)
        return super()._add(task, is_complete)

    def _add_task(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("status") == FAILED:  # of a task interrupted: whoever interrupted it tells luigid what counts
            task = self._scheduled_tasks.get(kwargs.get("task_id", ""))
            if task is not None and task.__dict__.pop(UNCOUNTED, False):
                kwargs[UNCOUNTED] = True
        told = len(self._add_task_history)
        super()._add_task(*args, **kwargs)
        if self._undone is not None:  # the task's status, and a batch's tasks' (luigi notes them in its history)
            statuses = [(kwargs["task_id"], kwargs["status"])]
            statuses += [(task.task_id, status) for task, status, _ in self._add_task_history[told:]]
            for task_id, status in statuses:
                self._told.add(task_id)
                (self._undone.discard if status == DONE else self._undone.add)(task_id)

    def only_step(self) -> luigi.Task | None:
        """The one task this worker told luigid it will run, when it told that of exactly one (its last status told
        PENDING, runnable, and every other task it told luigid DONE): the step luigid grants its first ``get_work``,
        unless another worker runs it; None otherwise, and with luigi's local scheduler."""
        if self._undone is None or len(self._undone) != 1:
            return None
        (task_id,) = self._undone
        last = None
        for told in reversed(self._add_task_history):  # (a generator left by ``next``: a GeneratorExit thrown in it)
            if told[0].task_id == task_id:
                last = told
                break
        if last is None or last[1] != PENDING or not last[2] or is_external(last[0]):
            return None
        task: luigi.Task = last[0]
        return task

    def task_process_ahead(self, task: luigi.Task) -> None:
        """Make luigi's task process of ``task`` now (its status reporter, its ``multiprocessing.Process`` base: ~320
        bytecodes), while luigid answers the ``get_work`` that may grant it, for :meth:`_create_task_process` to hand
        out if the task it is asked for next is this one; not for a task luigi would run in a process of its own, nor
        for one that takes messages (its queue is a pipe, which a process not granted the step would hold)."""
        self._process_ahead = None
        if task.accepts_messages:
            return
        process = super()._create_task_process(task)
        if not process.use_multiprocessing:
            self._process_ahead = (task, process)

    def _create_task_process(self, task: luigi.Task) -> Any:
        """luigi's, or the one made ahead of this very task (:meth:`task_process_ahead`), once. A step luigi runs in a
        process of its own though this worker runs its steps in its own (a ``worker_timeout``: luigi's
        ``TaskProcess`` forks for it, to end it past that time) turns the results queue into luigi's
        ``multiprocessing.Queue`` from then on (:meth:`_results_across_processes`), and such a step is run in the
        ``task_process_context`` :attr:`forking` answers, if set."""
        ahead, self._process_ahead = self._process_ahead, None
        if ahead is not None and ahead[0] is task:
            return ahead[1]
        process = super()._create_task_process(task)
        if process.use_multiprocessing and isinstance(self._task_result_queue, _InProcessResults):
            process.result_queue = self._results_across_processes()
        if process.use_multiprocessing and self.forking is not None:
            process.context = self.forking()
        return process

    def _results_across_processes(self) -> _MarkedResults:
        """luigi's results queue of a worker whose steps run in processes of their own, in place of the one in memory
        (:class:`_InProcessResults`), what it held moved to it: a step's process puts its result there, and luigi's
        ``_purge_children`` ends a step past its ``worker_timeout``. Before, the step's result was put in its own
        process's memory and no one ended it: the run waited for ever."""
        held = self._task_result_queue
        results = _MarkedResults(multiprocessing.Queue(), self._scheduled_tasks)
        while not held.empty():
            results.results.put(held.get())
        _replace(self, "_task_result_queue", results)
        return results

    def _run_task(self, task_id: str) -> None:
        """Run a step luigid granted, unless another worker made it since this one found it undone
        (:meth:`_made_by_another`)."""
        task = self._scheduled_tasks.get(task_id)
        if task is not None and self._made_by_another(task):
            return
        keep_alive = getattr(self, "_keep_alive_thread", None)
        if isinstance(keep_alive, _KeepAlive):
            keep_alive.begin()  # started as luigid answered, unless that RPC failed first
        super()._run_task(task_id)

    def _made_by_another(self, task: luigi.Task) -> bool:
        """Whether ``task``, granted by luigid, is complete now: told luigid DONE, as luigi's ``_add`` tells a
        complete one, and not run.

        luigi's worker checks a step's ``complete()`` and then tells luigid it is PENDING. Another worker may make the
        step in between and tell luigid DONE first; with ``stable_done_cooldown_secs = 0`` (luigi.cfg: a deleted
        output may be rebuilt at once) luigid takes the late PENDING as the step to be run again, and grants it: two
        runs sharing a step would run it twice. A step is granted here only once it is not RUNNING elsewhere, so its
        output, if another worker made it, exists by then. Only with luigid (the local scheduler has one worker), for a
        step run alone (not a batch's) and not external; a ``complete()`` that raises is left to the run, as before.
        A luigid that runs :func:`luigid_marks_reopened` says whether a PENDING took the step back from DONE since it
        was last granted (:data:`REOPENED`): only such a step is checked again (a HEAD on S3: ~3 ms of CPU).
        """
        if self._undone is None or task.task_id in self._batch_running_tasks or is_external(task):
            return False
        granted = getattr(self._scheduler, "granted", None)
        if isinstance(granted, dict) and granted.get("task_id") == task.task_id and granted.get(REOPENED) is False:
            return False  # luigid says no PENDING took it back from DONE since it was last granted: none made it since
        try:
            if task.complete() is not True:
                return False
        except Exception:
            return False
        logger.info("%s was made by another worker since it was scheduled here: not run again", task)
        task.trigger_event(luigi.Event.DEPENDENCY_PRESENT, task)
        self._add_task(
            worker=self._id,
            task_id=task.task_id,
            status=DONE,
            runnable=False,
            priority=task.priority,
            resources=task.process_resources(),
            params=task.to_str_params(),
            family=task.task_family,
            module=task.task_module,
            retry_policy_dict=retry_policy_of(task),  # as luigi's ``_add`` tells a complete task: luigi's luigid
            accepts_messages=task.accepts_messages,  # sets a task's policy from every add_task, its defaults if none
        )
        return True

    def policies(self) -> dict[str, dict[str, Any]]:
        """The retry policy of each task this worker scheduled, by task id, as luigi's worker sends it to luigid
        (:func:`retry_policy_of`)."""
        return {task_id: retry_policy_of(task) for task_id, task in self._scheduled_tasks.items() if task is not None}

    def _get_work(self) -> Any:
        if self._all_done():
            return self._nothing_left()
        work = super()._get_work()
        if self._add_worker_due:
            self._add_worker_due = False
            super()._add_worker()
        return work

    def _purge_children(self) -> None:
        """luigi's look for a step's process dead or past its timeout, before each result it waits for; none where this
        worker runs its steps in its own process (:class:`_InProcessResults`: no step's process is started, and
        luigi's finds each not alive, with no exit code)."""
        if not isinstance(self._task_result_queue, _InProcessResults):
            super()._purge_children()

    def _log_remote_tasks(self, get_work_response: Any) -> None:
        """luigi's DEBUG lines of a ``get_work`` that granted nothing, made only where luigi's logger shows DEBUG."""
        if _LUIGI_LOG.isEnabledFor(logging.DEBUG):
            super()._log_remote_tasks(get_work_response)

    def _all_done(self) -> bool:
        """Whether luigid can only answer this worker's ``get_work`` with nothing: it asked once already, runs no
        step, assists no one, and every task it scheduled it told luigid DONE last (luigid grants a worker only the
        PENDING tasks it added)."""
        return (
            self._undone is not None
            and not self._undone
            and bool(self._get_work_response_history)
            and not self._add_worker_due
            and not self._running_tasks
            and not self._assistant
            and not self._config.keep_alive
            and not self._stop_requesting_work
            and self.worker_processes > 0
            and self._scheduled_tasks.keys() <= self._told
        )

    def _nothing_left(self) -> Any:
        """What luigid answers :meth:`_all_done`'s worker, as luigi's ``_get_work`` notes and returns it."""
        self._get_work_response_history.append({"task_id": None, "running_tasks": []})
        return luigi.worker.GetWorkResponse(None, [], 0, 0, 0, WORKER_STATE_ACTIVE)

    def run(self) -> bool:
        ran = bool(super().run())
        if isinstance(self._scheduler, RemoteScheduler):
            self._scheduler.send_held()  # what was told last (add_task DONE, add_worker) is answered before it ends
        return ran


def retry_policy_of(task: luigi.Task) -> dict[str, Any]:
    """``task``'s retry policy (``retry_count``, ``disable_hard_timeout``, ``disable_window``) as luigi's worker sends
    it with an ``add_task`` (``retry_policy_dict``, luigi's ``_get_retry_policy_dict``): luigid judges the task's
    failures by it, its ``[scheduler]`` defaults where a value is None."""
    policy: dict[str, Any] = luigi.worker._get_retry_policy_dict(task)
    return policy


def luigi_logging_set_up() -> bool:
    """Whether luigi's ``InterfaceLogging.setup`` has set up logging in this process (its ``_configured``): a call of
    it after that only makes an INFO record, "logging already configured", and answers False."""
    return bool(InterfaceLogging._configured)


def worker_config() -> luigi.worker.worker:
    """luigi's ``[worker]`` settings, as a luigi worker reads them from luigi's configuration (about 1.6 ms of a fresh
    process's CPU: made once, ahead, they are given to :func:`new_worker`)."""
    return luigi.worker.worker()


def new_worker(
    scheduler: luigi.scheduler.Scheduler | RemoteScheduler,
    worker_id: str,
    processes: int,
    settings: luigi.worker.worker | None = None,
    **config: Any,
) -> luigi.worker.Worker:
    """A luigi worker, as ``luigi.build`` makes one (:class:`Worker`); ``config`` overrides its ``[worker]`` settings,
    else they are ``settings`` if given (:func:`worker_config`), else read now."""
    made = settings if not config else None
    return Worker(scheduler, worker_id, processes, config=made, **config)


class RunResult(LuigiRunResult):
    """luigi's ``LuigiRunResult``, its summary made when first read, not as the run ends: an attempt reads it only
    to tell why its task is not complete (making it took about 0.9 ms of an attempt's ~10 for one trivial step)."""

    def __init__(self, worker: luigi.worker.Worker, worker_add_run_status: bool = True) -> None:
        self.worker = worker
        self.scheduling_succeeded = worker_add_run_status

    @functools.cached_property
    def tasks_by_outcome(self) -> dict[str, set[luigi.Task]]:
        """The tasks of the build by what came of them, as luigi's summary groups them (``completed``,
        ``already_done``, ``failed``, ``run_by_other_worker``, ``not_run``...): made once, as luigi makes its summary
        once a build (its walk of each still pending task's ``requires()`` with it), whatever reads it."""
        return tasks_by_outcome(self.worker)

    @functools.cached_property
    def summary_text(self) -> str:
        return str(_summary_wrap(_summary_format(self.tasks_by_outcome, self.worker)))

    @functools.cached_property
    def status(self) -> LuigiStatusCode:
        status: LuigiStatusCode = _tasks_status(self.tasks_by_outcome)
        return status

    @functools.cached_property
    def one_line_summary(self) -> str:
        return str(_create_one_line_summary(self.status))


def schedule_and_run(
    worker: luigi.worker.Worker,
    task: luigi.Task,
    env: luigi.interface.core,
    scheduled: Callable[[luigi.worker.Worker], object] | None = None,
) -> RunResult:
    """What is left of ``luigi.interface._schedule_and_run`` once its worker is made: add ``task`` (and what it
    requires), then ``scheduled(worker)`` if given, then run what is not done; luigi's summary of it is made if it
    is read (:class:`RunResult`)."""
    with worker:
        added = worker.add(task, env.parallel_scheduling, env.parallel_scheduling_processes)
        if scheduled is not None:
            scheduled(worker)
        ran = worker.run()
    return RunResult(worker, added and ran)


def tasks_by_outcome(worker: luigi.worker.Worker) -> dict[str, set[luigi.Task]]:
    """The tasks of a worker's build by what came of them, as luigi's summary groups them (``completed``,
    ``already_done``, ``failed``, ``run_by_other_worker``, ``not_run``...)."""
    tasks: dict[str, set[luigi.Task]] = _summary_dict(worker)
    return tasks


def batched_params(params: Iterable[tuple[str, luigi.Parameter]]) -> tuple[str, ...]:
    """The names of ``params`` (a task class's, as ``get_params`` lists them) that batch: luigi's
    ``Task.batch_param_names`` of that class (its ``Parameter._is_batchable``)."""
    return tuple(name for name, param in params if param._is_batchable())


def done_in_build(worker: luigi.worker.Worker, task: luigi.Task) -> bool:
    """Whether luigi's summary of ``worker``'s build has ``task`` in ``completed`` or ``already_done`` (it ran without
    error, or was found complete): a DONE the worker told of it (its ``_add_task_history``), as that summary reads
    them, without the summary's other groups (its ``_summary_dict``: ~440 bytecodes of each attempt after ``run()``,
    for this one answer). Compared as a set's member is: the same task, or one equal to it."""
    for told, status, _ in reversed(worker._add_task_history):
        if status == DONE and (told is task or told == task):
            return True
    return False


def disabled_in_build(worker: luigi.worker.Worker) -> luigi.Task | None:
    """The first task ``worker``'s build told luigid DISABLED: one whose class says luigi must not run it (luigi's
    ``Task.disabled``, read as the worker adds it); luigi runs neither it nor a task needing it. None if none."""
    return next((told for told, status, _ in worker._add_task_history if status == DISABLED), None)


def is_external(task: luigi.Task) -> bool:
    """Whether luigi takes ``task`` as external (data nobody here makes): it has no ``run``."""
    return bool(luigi.worker._is_external(task))


def choices_of(param: luigi.Parameter) -> list[str] | None:
    """What a choice parameter (``ChoiceParameter``, ``ChoiceListParameter``) or an enum parameter (``EnumParameter``,
    ``EnumListParameter``) allows, as names; None for any other parameter."""
    choices = getattr(param, "_choices", None)
    if isinstance(choices, set | frozenset):  # luigi keeps choices in a set: sorted, so stable across processes
        return sorted(str(c) for c in choices)
    if choices is not None:
        return [str(c) for c in choices]
    enum_cls = getattr(param, "_enum", None)
    if enum_cls is not None:
        return [member.name for member in enum_cls]
    return None


#: luigi's own ``ParameterVisibility.has_value`` (the function under its classmethod): a loop over the enum's members
_luigi_has_visibility = ParameterVisibility.__dict__["has_value"].__func__
#: the values of luigi's parameter visibilities, as ints: what :func:`_has_visibility` looks an int up in
_VISIBILITIES = frozenset(int(member.value) for member in ParameterVisibility)


def _has_visibility(cls: type[ParameterVisibility], value: object) -> bool:
    """luigi's ``ParameterVisibility.has_value(value)``, which every ``Parameter.__init__`` asks (each parameter of a
    chain file, each time it is executed: a run's fresh module), without its loop over the enum (~1.3 of a
    parameter's ~3.5 µs): a member is one, an int is one if one has its value; anything else as luigi answers."""
    kind = value.__class__
    if kind is ParameterVisibility:
        return True
    if kind is int:
        return value in _VISIBILITIES
    return bool(_luigi_has_visibility(cls, value))


_replace(ParameterVisibility, "has_value", classmethod(_has_visibility))


#: luigi's ``Task.get_params`` (the function under its classmethod): what :func:`task_params` answers as
luigi_get_params = vars(luigi.Task)["get_params"].__func__
#: kinds of attribute whose value a class answers for as it is, or as what no parameter is (a function, a method bound
#: to the class, a property, C methods and slots, plain values): :func:`task_params` passes them by without asking
#: the class (asking a plain value's kind whether it has ``__get__`` raised and formatted an AttributeError each time)
_NO_PARAMETER = frozenset(
    {
        types.FunctionType,
        classmethod,
        property,
        types.BuiltinFunctionType,
        types.MethodDescriptorType,
        types.WrapperDescriptorType,
        types.GetSetDescriptorType,
        types.MemberDescriptorType,
        types.ClassMethodDescriptorType,
        type(None),
        bool,
        int,
        float,
        str,
        bytes,
        tuple,
        list,
        dict,
        set,
        frozenset,
    }
)
#: metaclasses whose data descriptors answer a task class's lookups with no parameter: ``type``'s (its name, its
#: dict...), and luigi's ``Register.task_family`` (a text), which luigi's walk computes at each call
_PLAIN_METACLASSES = frozenset({type, object, abc.ABCMeta, Register})


@functools.lru_cache(maxsize=16)
def _answered_by_metaclass(meta: type) -> frozenset[str]:
    """The names a class of metaclass ``meta`` answers from ``meta``'s data descriptors, before its own attributes
    (but those of :data:`_PLAIN_METACLASSES`)."""
    return frozenset(
        name
        for kind in meta.__mro__
        if kind not in _PLAIN_METACLASSES
        for name, value in vars(kind).items()
        if hasattr(type(value), "__set__") or hasattr(type(value), "__delete__")
    )


#: the name, in a task class's own dict, under which :func:`task_params` keeps what the classes after it in a
#: subclass's MRO give that subclass (:class:`Inherited`): only where the class holds it from its making on (None
#: until then: :class:`~nectar.task.NectarTask` and its subclasses), so that keeping it leaves the dict's shape alone
INHERITED = "_nectar_inherited"


class Inherited(NamedTuple):
    """What a task class's bases (its MRO but itself) give it toward :func:`task_params`, for its metaclass ``meta``,
    while they are those ``bases`` and their dicts hold as many names as ``shape`` says (``luigi.util.inherits`` adds
    parameters to a class already made): the parameters found in their dicts as they are (``fixed``), and the names
    whose value the class itself is asked for (``asked``: a descriptor, or a name a data descriptor of the metaclass
    answers)."""

    meta: type
    bases: tuple[type, ...]
    shape: tuple[int, ...]
    fixed: tuple[tuple[str, luigi.Parameter], ...]
    asked: tuple[str, ...]


def _params_in(
    cls: type, found: Mapping[str, Any], by_metaclass: frozenset[str], params: list[Any], asked: list[str] | None
) -> None:
    """Append to ``params`` each ``(name, parameter)`` of ``found`` (names and values, as a lookup on ``cls`` finds
    them first): a value of a kind that may answer a lookup with something else (a parameter: a descriptor), or that
    a data descriptor of the metaclass answers for, asked of ``cls`` as luigi asks, or its name appended to ``asked``
    (given one: a class's bases classified for the classes made of them)."""
    for name, value in found.items():
        kind = type(value)
        if kind in _NO_PARAMETER and name not in by_metaclass:
            continue
        if hasattr(kind, "__get__") or name in by_metaclass:
            if asked is not None:
                asked.append(name)
                continue
            value = getattr(cls, name)
        if isinstance(value, luigi.Parameter):
            params.append((name, value))


def _merged(classes: Iterable[type]) -> dict[str, Any]:
    """The names of ``classes`` (an MRO's, reversed), each with the value the last of them that has it holds."""
    found: dict[str, Any] = {}
    for kind in classes:
        found.update(vars(kind).copy())  # a dict: merged in C, where a mapping proxy's items are each looked up
    return found


def as_given_to_luigi(cls: type[luigi.Task], params: Mapping[str, str]) -> dict[str, str]:
    """The text of a task's parameters, ``params`` (its ``to_str_params``, its defaults written too), to make a task
    of ``cls`` of (``from_str_params``) with the values luigi gives it: each parameter whose text is what luigi would
    give it without it (``Parameter.task_value``: luigi.cfg's ``[<family>] <name>``, else its default) left out, so
    that it takes that value itself, as under ``python -m luigi``. Parsed, that text is not always the value: None is
    written ``'None'`` (parsed, the string ``'None'``, or no int at all), a ``FloatParameter``'s default 1 ``'1'``
    (parsed, 1.0, which writes ``'1.0'``: another output), a ``Parameter``'s default 5 ``'5'`` (parsed, the string).
    A value given as what luigi would give it anyway is that value so: the text tells the two apart no more."""
    given = dict(params)
    for name, text in params.items():
        param = getattr(cls, name, None)  # luigi's parameters are the class's attributes: no walk of them all
        if not isinstance(param, Parameter) or param._default is _NO_VALUE:
            continue
        try:
            if text != param.serialize(param._default):  # not its code's default: luigi parses luigi.cfg's alike
                continue
            family = cls.get_task_family()  # luigi.cfg's own value for it, if it sets one (~60k instructions: asked
            if (configured(family) or param._config_path) and text != param.serialize(param.task_value(family, name)):
                continue  # only where the class has a section, or the parameter a section of its own)
        except Exception:  # a value it cannot write: parsed
            continue
        del given[name]
    return given


def task_params(cls: type[luigi.Task]) -> list[tuple[str, luigi.Parameter]]:
    """luigi's ``Task.get_params()`` of ``cls`` (its parameters, by name, in the order they were made), without
    luigi's ``getattr`` of each name ``dir(cls)`` lists (~150 for a task class: ~340,000 instructions a class made
    anew, as each run's chain module makes its classes). The names of the classes of its MRO, each with the value
    the first of them that has it holds (as a lookup finds it), classified (:func:`_params_in`); sorted by the
    ``_counter`` luigi sorts by, then by name (as ``dir`` sorts them). What its bases give it is classified once for
    every class made of the same bases while they are unchanged (:class:`Inherited`, kept by its first base where
    that base has room for it): a chain's class made anew at each run reads only its own names and those its bases
    ask of it (~1,900 bytecodes a class for the whole walk, ~400 so). A class whose metaclass looks up or lists
    attributes its own way gets luigi's walk (``test_luigi_internals`` checks that luigi's ``get_params`` is the walk
    this answers as)."""
    meta: type = type(cls)
    if meta.__getattribute__ is not type.__getattribute__ or meta.__dir__ is not type.__dir__:
        return list(luigi_get_params(cls))
    by_metaclass = _answered_by_metaclass(meta)
    params: list[tuple[str, luigi.Parameter]] = []
    bases = cls.__mro__[1:]
    kept = vars(bases[0]).get(INHERITED, False) if bases else False
    if kept is False:  # no room to keep it in: every name walked
        _params_in(cls, _merged(reversed(cls.__mro__)), by_metaclass, params, None)
    else:
        shape = tuple(len(vars(base)) for base in bases)
        if not isinstance(kept, Inherited) or kept.meta is not meta or kept.bases != bases or kept.shape != shape:
            fixed: list[tuple[str, luigi.Parameter]] = []
            asked: list[str] = []
            _params_in(cls, _merged(reversed(bases)), by_metaclass, fixed, asked)
            kept = Inherited(meta, bases, shape, tuple(fixed), tuple(asked))
            type.__setattr__(bases[0], INHERITED, kept)  # in place of what it held: the dict's shape as it was
        own = vars(cls).copy()
        params.extend(named for named in kept.fixed if named[0] not in own)
        for name in kept.asked:
            if name not in own and isinstance(value := getattr(cls, name), luigi.Parameter):
                params.append((name, value))
        _params_in(cls, own, by_metaclass, params, None)
    params.sort(key=lambda named: (named[1]._counter, named[0]))  # luigi's: dir's names, sorted, then by _counter
    return params


#: one forgetting at a time (:func:`forget_task_classes`): what one removes does not move what another reads
_forgetting = forks.lock_made_anew_in_children(globals(), "_forgetting")

#: luigi's own ``Register._get_reg`` (the function under its classmethod): family -> class, from the class's ``_reg``
_luigi_families = Register.__dict__["_get_reg"].__func__


class _Taken:
    """The class luigi's ``_get_reg`` is handed by :func:`_families`: ``_reg`` a copy of the class's list, anything
    else read from the class itself."""

    __slots__ = ("_cls", "_reg")

    def __init__(self, cls: Any) -> None:  # luigi's Register or a class of it: untyped, as luigi is
        self._cls = cls
        self._reg = tuple(cls._reg)  # one C-level copy under the GIL

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cls, name)


def _families(cls: type) -> dict[str, Any]:
    """luigi's ``_get_reg`` (its ambiguous classes and ``_visible_in_registry`` as they are), read from a copy of
    luigi's list of classes taken in one step: a class :func:`forget_task_classes` deletes below where it reads moves
    nothing under its loop (an iteration of the list itself skipped the class after the one it stood at). The copy
    costs no instruction that shows: ~3.71M a lookup on 500 classes, luigi's own over the list ~3.72M (callgrind)."""
    families: dict[str, Any] = _luigi_families(_Taken(cls))
    return families


#: from the start, before any class is forgotten: a lookup under way in luigi's own then would iterate the list itself
_replace(Register, "_get_reg", classmethod(_families))


#: luigi's own ``Register._get_namespace`` (the function under its classmethod) and ``Register._module_parents``
_luigi_get_namespace = Register.__dict__["_get_namespace"].__func__
_luigi_module_parents = Register._module_parents


@functools.lru_cache(maxsize=256)
def _parents(module: str) -> tuple[str, ...]:
    """luigi's ``_module_parents(module)`` (``a.b``: ``a.b``, ``a``, ``""``), made once per module name: it is the
    name's alone."""
    return tuple(_luigi_module_parents(module))


def _namespace_of(mcs: Any, module: str) -> str:  # luigi's Register or a subclass of it: untyped, as luigi is
    """luigi's ``Register._get_namespace(module)``, which ``Register.__new__`` asks for each class made (each class of
    a chain file, each time a run executes it): the first namespace set (``luigi.namespace``, read as it is now) for
    the module or a parent of it, from the parents luigi lists for its name (:func:`_parents`; a metaclass that lists
    them its own way gets luigi's), looked up in C: luigi's generator and loop were ~120 bytecodes a class."""
    if mcs._module_parents is not _luigi_module_parents:
        return str(_luigi_get_namespace(mcs, module))
    return next(filter(None, map(mcs._default_namespace_dict.get, _parents(module))), "")


_replace(Register, "_get_namespace", classmethod(_namespace_of))


def task_classes() -> tuple[type[luigi.Task], ...]:
    """Every task class luigi holds now (a copy of its registry's list, which :func:`forget_task_classes` trims)."""
    return tuple(Register._reg)


#: a class's module, read in C
_module_of = operator.attrgetter("__module__")


def task_classes_of(module: str) -> tuple[type[luigi.Task], ...]:
    """The task classes luigi holds now that were made in the module named ``module``, in the order it made them
    (each class's module read in C)."""
    registry = tuple(Register._reg)
    return tuple(itertools.compress(registry, map(module.__eq__, map(_module_of, registry))))


def forget_task_classes(module: str) -> None:
    """Drop the task classes defined in ``module`` from luigi's registry (it keeps every class ever defined), so
    that a reloaded module's classes do not make their families ambiguous.

    Removed in place from the one list luigi appends each new class to (``Register.__new__``: ``_reg.append``),
    each ``del`` one step under the GIL, from its end down: a class another thread defines meanwhile lands past what
    is left to read, every index below stays where it was, and the list is never rebuilt and put back (which dropped
    a class appended between its copy and its return). A lookup by name meanwhile reads a copy of the list
    (:func:`_families`, luigi's ``_get_reg`` in every process that imports this module), not the list a ``del``
    shifts. The classes' modules are read in C, and only from the first class of ``module`` on is one deleted."""
    with _forgetting:
        registry = Register._reg
        modules = list(map(_module_of, registry))  # in C: a prefix of the list, which others only append to meanwhile
        if module not in modules:
            return
        first, at = modules.index(module), len(modules)  # a chain's classes are the last made, most often
        while at > first:
            at -= 1
            if modules[at] == module:
                del registry[at]


def hold_class_shape(cls: type[luigi.Task]) -> None:
    """Give a task class now what luigi's ``Task.get_param_values`` gives it as it makes its first task (an empty
    ``_unconsumed_params``, unless a base has one), so that its attributes stay as they are from its making on."""
    if not hasattr(cls, _UNCONSUMED):
        type.__setattr__(cls, _UNCONSUMED, set())


class _Making(threading.local):
    """The task being made in this thread by :class:`ReadOnceRegister`: its class, the positional and keyword
    arguments its parameter values were read from, and those values (None until read)."""

    def __init__(self) -> None:
        self.made: tuple[type, tuple[Any, ...], dict[str, Any], list[tuple[str, Any]] | None] | None = None


_making = _Making()


#: luigi's parameter class, a global of this module's: read at each name set on a task class (:class:`ReadOnceRegister`)
_Parameter = luigi.Parameter
#: luigi's attribute that names a class's namespace: its family, kept with its parameters, is made of it
NAMESPACE = "task_namespace"
#: the names under which a task class keeps what was read of its parameters (:data:`INHERITED`, and
#: :class:`~nectar.task.NectarTask`'s own), forgotten when a parameter changes (:func:`params_changed`)
KEPT_PARAMS = (INHERITED, "_nectar_class_params")


def params_changed(cls: type) -> None:
    """What is kept of the parameters of ``cls`` and of every class made of it (:data:`KEPT_PARAMS`) forgotten, read
    again at the next ask: a parameter of ``cls`` was set, replaced or deleted after ``cls`` was made. None again, in
    place: each dict's shape as it was."""
    classes = [cls]
    while classes:
        kind = classes.pop()
        for name in KEPT_PARAMS:
            if vars(kind).get(name) is not None:
                type.__setattr__(kind, name, None)
        classes.extend(type.__subclasses__(kind))


class ReadOnceRegister(Register):
    """luigi's metaclass of tasks, whose ``__call__`` reads a task's parameter values (``get_param_values``: each
    parameter normalized, each default looked up in luigi's configuration) for its instance cache, then makes the task,
    whose ``__init__`` read them again from the same arguments: both reads are one (:func:`param_values_once`), for
    the time of one call; luigi's errors and its cache are as they were.

    A parameter (or its namespace) set on a class after it was made, replaced or deleted (``MyTask.day =
    Other.day``, luigi's ``inherits`` and ``requires`` decorators, a test's ``setattr``) makes the class
    and those made of it read their parameters and family again (:func:`params_changed`): what they kept was checked
    against the number of names in each class's dict only, which a replacement leaves as it was. Nothing is asked at
    a read of the parameters; a name set costs a call here (the service's own names are set with
    ``type.__setattr__``, not through it). Not seen: a parameter replaced on a base that is no class of this
    metaclass (a plain ``luigi.Task`` or a mixin)."""

    def __setattr__(cls, name: str, value: Any) -> None:
        was = cls.__dict__.get(name)
        type.__setattr__(cls, name, value)
        if isinstance(value, _Parameter) or isinstance(was, _Parameter) or name == NAMESPACE:
            params_changed(cls)

    def __delattr__(cls, name: str) -> None:
        was = cls.__dict__.get(name)
        type.__delattr__(cls, name)
        if isinstance(was, _Parameter) or name == NAMESPACE:
            params_changed(cls)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        outer = _making.made
        _making.made = (cls, args, kwargs, None)
        try:
            return super().__call__(*args, **kwargs)
        finally:
            _making.made = outer


def param_values_once(
    cls: type,
    params: list[tuple[str, Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    read: Callable[[list[tuple[str, Any]], tuple[Any, ...], dict[str, Any]], list[tuple[str, Any]]],
) -> list[tuple[str, Any]]:
    """``read(params, args, kwargs)`` (luigi's ``get_param_values``), read once while :class:`ReadOnceRegister` makes
    a task of ``cls`` from these very arguments (the same objects): its cache's read and ``__init__``'s are one."""
    made = _making.made
    if made is None or made[0] is not cls or not _same_arguments(made[1], made[2], args, kwargs):
        return given_param_values(cls, params, args, kwargs, read)
    values = made[3]
    if values is None:
        values = given_param_values(cls, params, args, kwargs, read)
        _making.made = (cls, args, kwargs, values)
    return list(values)


#: the attribute luigi's ``get_param_values`` gives a task class: the configured names it warned the class consumes not
_UNCONSUMED = "_unconsumed_params"


def given_param_values(
    cls: type[luigi.Task],
    params: list[tuple[str, Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    read: Callable[[list[tuple[str, Any]], tuple[Any, ...], dict[str, Any]], list[tuple[str, Any]]],
) -> list[tuple[str, Any]]:
    """``read(params, args, kwargs)`` (luigi's ``get_param_values``) where the task is made of every parameter given
    by name and its family has no section in luigi's configuration (a submission's task): each value normalized, in
    the order given, and a list or set made a tuple, as luigi's, without what luigi's does for the other cases (the
    description of the call its errors would name, the arguments' repr made at each call; the positional ones; the
    look for defaults): ~3.5 -> ~1.7 µs a one-parameter task. Any other call is luigi's own: its errors, its
    defaults and its warning of a configured parameter the task does not consume (tests/nectar/test_luigi_internals.py
    holds the two to the same answers)."""
    if args or len(kwargs) != len(params):
        return read(params, args, kwargs)
    if configured(cls.get_task_family()):
        return read(params, args, kwargs)
    found = dict(params)
    normalized: dict[str, Any] = {}
    for name, value in kwargs.items():
        param = found.get(name)
        if param is None:  # an unknown name (with another left out): luigi's error
            return read(params, args, kwargs)
        value = param.normalize(value)
        normalized[name] = tuple(value) if isinstance(value, list | set) else value
    if not hasattr(cls, _UNCONSUMED):  # as luigi's (a set of the configured names it warned of)
        setattr(cls, _UNCONSUMED, set())
    return [(name, normalized[name]) for name, _ in params]


#: luigi's check of a parameter's value that returns at once for every subclass that has none of its own, and its
#: task's check of every parameter (:func:`warn_on_wrong_param_types`)
_NO_WARNING = Parameter._warn_on_wrong_param_type
_LUIGI_WARN_TYPES = luigi.Task._warn_on_wrong_param_types
#: the environment variable that names luigi's configuration parser (``luigi.configuration.core``), as
#: ``os.environ``'s own dictionary keys it
_PARSER_VARIABLE = b"LUIGI_CONFIG_PARSER"


def configured(family: str) -> bool:
    """luigi's ``family in luigi.configuration.get_config().sections()``: whether its configuration has a section
    named ``family``. Where the environment names no parser (luigi's default, ``cfg``), asked of that parser's one
    instance, ``get_config``'s answer then (tests/nectar/test_luigi_internals.py pins ``get_config``): luigi's
    ``os.environ.get`` of the unset variable raised and caught a KeyError, and its ``sections()`` listed every section,
    ~21k instructions at each submission, ~2k here (callgrind). Else luigi's own, which reads the variable."""
    if _PARSER_VARIABLE in environ_data():
        return family in luigi.configuration.get_config().sections()
    return bool(LuigiConfigParser.instance().has_section(family))


def _may_warn(param: Any) -> bool:
    """Whether luigi's check of a value of ``param`` (its ``_warn_on_wrong_param_type``) may warn: its class has a
    check of its own, or is luigi's ``Parameter`` itself (its check warns of a value that is not a str); for any other
    it returns at once."""
    kind = type(param)
    return kind is Parameter or kind._warn_on_wrong_param_type is not _NO_WARNING


def warn_on_wrong_param_types(task: luigi.Task, params: list[tuple[str, Any]]) -> None:
    """luigi's ``task._warn_on_wrong_param_types()`` (``params``: the task's own), made only where one of ``params``
    may warn (:func:`_may_warn`), or the task's class has its own: it read the class's parameters again to call each
    one's check, ~12.5k instructions at each submission of a task of ``IntParameter``, whose checks return at once."""
    if type(task)._warn_on_wrong_param_types is not _LUIGI_WARN_TYPES:
        task._warn_on_wrong_param_types()
        return
    for _, param in params:
        if _may_warn(param):
            task._warn_on_wrong_param_types()
            return


def _same_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any], other: tuple[Any, ...], others: dict[str, Any]
) -> bool:
    """Whether two calls were given the same objects, in the same places."""
    if len(args) != len(other) or len(kwargs) != len(others):
        return False
    for arg, given in zip(args, other, strict=True):
        if arg is not given:
            return False
    for name, arg in kwargs.items():
        if others.get(name, others) is not arg:
            return False
    return True


def uncached_task(cls: type[luigi.Task], params: Mapping[str, Any]) -> luigi.Task:
    """``cls(**params)``, made as luigi's ``Register.__call__`` makes one it has not cached, without its cache: luigi
    keeps every task made in the process, by its parameters, for the process's life (an API worker kept one for
    each distinct submission, and looked each one's parameters up twice)."""
    task_class: Register = cls  # an instance of luigi's metaclass, as every task class
    return super(Register, task_class).__call__(**params)


def luigi_task_id(family: str, str_params: Mapping[str, str], digest: str) -> str:
    """luigi's ``task_id_str(family, str_params)`` made from ``digest``, the full hex MD5 of the canonical JSON of
    ``str_params`` (:func:`nectar.keys.canonical_params`): luigi hashes the same JSON and keeps the first characters."""
    summary = "_".join(
        str_params[name][:TASK_ID_TRUNCATE_PARAMS] for name in sorted(str_params)[:TASK_ID_INCLUDE_PARAMS]
    )
    summary = TASK_ID_INVALID_CHAR_REGEX.sub("_", summary)
    return f"{family}_{summary}_{digest[:TASK_ID_TRUNCATE_HASH]}"


#: the names luigi's ``Task.__init__`` reads, as of the luigi tested: :func:`make_as_luigi_does` does what it does
LUIGI_TASK_INIT_NAMES = (
    "get_params",
    "get_param_values",
    "setattr",
    "dict",
    "param_kwargs",
    "_warn_on_wrong_param_types",
    "task_id_str",
    "get_task_family",
    "to_str_params",
    "task_id",
    "hash",
    "_Task__hash",
    "set_tracking_url",
    "set_status_message",
    "set_progress_percentage",
)


def make_as_luigi_does(
    task: luigi.Task, args: tuple[Any, ...], kwargs: dict[str, Any], identify: Callable[[str, dict[str, str]], str]
) -> None:
    """Do to ``task`` what luigi's ``Task.__init__(*args, **kwargs)`` does, its task_id ``identify(family,
    str_params)`` (luigi's ``task_id_str`` of them, made by the caller: a NectarTask keeps the MD5 for its key, which
    luigi made and dropped, and its key made again from the same JSON)."""
    params = task.get_params()
    param_values = task.get_param_values(params, args, kwargs)
    for key, value in param_values:
        setattr(task, key, value)
    task.param_kwargs = dict(param_values)
    warn_on_wrong_param_types(task, params)
    task.task_id = identify(task.get_task_family(), task.to_str_params(only_significant=True, only_public=True))
    setattr(task, _TASK_HASH, hash(task.task_id))
    task.set_tracking_url = None
    task.set_status_message = None
    task.set_progress_percentage = None


def extend_task_registry(extend: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Make luigi's registry of task classes (name -> class) answer ``extend(names)`` wherever it looks a class up
    (``luigi --module ... <Task>``, ``Register.get_task_cls``), luigi's own answer read from a copy of its list
    (:func:`_families`); once per process."""
    if getattr(Register._get_reg, _EXTENDED, False):
        return

    def _get_reg(cls: type) -> dict[str, Any]:
        return extend(_families(cls))

    setattr(_get_reg, _EXTENDED, True)
    _replace(Register, "_get_reg", classmethod(_get_reg))


def wrap_luigid_app(wrap: Callable[[Any], Any]) -> None:
    """Every socket luigid serves from now on in this process serves ``wrap(application)``: ``application`` is the
    tornado application luigi makes for its scheduler, ``wrap``'s answer a tornado router or application."""
    import luigi.server  # luigid's own process only: tornado is not imported elsewhere

    app = luigi.server.app
    luigi.server.app = lambda scheduler: wrap(app(scheduler))


def route_luigid_app(route: Callable[[Any, Any], Any]) -> None:
    """Every socket luigid serves from now on in this process serves ``route(application, scheduler)``: the tornado
    application luigi makes for its scheduler, and that scheduler (whose RPC methods luigi's handler calls)."""
    import luigi.server  # luigid's own process only: tornado is not imported elsewhere

    app = luigi.server.app
    luigi.server.app = lambda scheduler: route(app(scheduler), scheduler)


def luigid_rpc_methods() -> frozenset[str]:
    """The scheduler methods luigid's RPC handler serves (``/api/<method>``): luigi's ``RPC_METHODS``."""
    return frozenset(luigi.scheduler.RPC_METHODS)


def holds_disabled(scheduler: luigi.scheduler.Scheduler) -> bool:
    """Whether luigid's scheduler holds a task it DISABLED (its index of tasks by status: no walk, no prune)."""
    return bool(scheduler._state.get_active_task_count_for_status(luigi.scheduler.DISABLED))


def luigid_rpc_handler() -> type[Any]:
    """luigi's tornado handler of luigid's RPCs (``luigi.server.RPCHandler``, made with ``scheduler=``)."""
    import luigi.server  # luigid's own process only: tornado is not imported elsewhere

    handler: type[Any] = luigi.server.RPCHandler
    return handler


#: the statuses in which none of the checks of luigi's prune changes a task that has a stakeholder or a removal time
_QUIET = frozenset({luigi.scheduler.PENDING, luigi.scheduler.DONE})
#: the statuses of a finished task: luigid keeps :data:`FINISHED_TASKS_KEPT` of them (:func:`_forget_oldest_finished`)
_FINISHED = (luigi.scheduler.DONE, luigi.scheduler.FAILED, luigi.scheduler.DISABLED)
#: luigi.cfg's section of Datanectar's own luigid settings (luigi warns of a name it does not know in ``[scheduler]``)
_SECTION = "nectar_scheduler"
#: finished tasks luigid keeps unless ``[nectar_scheduler] finished_tasks_kept`` says otherwise: ~5.6 KB each
#: (measured: a run's one step and its worker), ~17 MB. The budget it fits: an idle ``nectar serve`` weighs ~124 MB
#: PSS at rest (195 MB RSS); luigid, keeping 50 finished tasks, grew by ~54 MB more over a 25,000-run soak at 69 runs/s
#: (a run's worker and tasks held 30 s after it left, then the allocator's pages, which it keeps): ~200 MB PSS then
FINISHED_TASKS_KEPT = 3_000
#: luigid hands the pages its forgotten tasks freed back to the system once this many were forgotten since it last
#: did (:class:`_FreedPages`): ~5.6 MB of tasks, one ``malloc_trim`` per 1,000 runs
TRIM_EVERY = 1_000


def read_past_request(stream: Any) -> bytes:
    """What luigid's tornado ``IOStream`` ``stream`` (detached from its HTTP connection) has read and not yet handed
    to a request: the bytes a client sent after its request's end (tornado's own read buffer: no API gives it)."""
    return bytes(stream._read_buffer[: stream._read_buffer_size])


def has_control_chars(payload: str) -> bool:
    """Whether ``payload`` holds a character tornado's ``get_argument`` strips from an argument (its
    ``RequestHandler._remove_control_chars_regex``): one luigid's handler would not read as sent."""
    import tornado.web  # luigid's own process only: tornado is not imported elsewhere

    return tornado.web.RequestHandler._remove_control_chars_regex.search(payload) is not None


def luigid_prunes_lean() -> None:
    """luigid's prune walks every task it holds (``remove_delay``: a day of them), every 60 s and first thing in each
    ``dep_graph``, ``task_list``, ``worker_list``, ``resource_list``, ``task_search`` and ``graph`` RPC (an attempt
    asks a ``dep_graph``): about 0.4 µs per task, a 20,000-task luigid ~13 ms of CPU per such RPC. Two walks are
    cut, each changing nothing:

    - the one that drops the workers that stopped pinging from every task
      (``SimpleTaskState._remove_workers_from_tasks``), when no worker stopped (35-40 % of a prune); when some did, it
      looks at each task's own workers and stakeholders (one or two), not at every worker that stopped: luigi's
      discards each of those from each task, and as each run is a worker of its own, a prune after a minute of 67
      runs/s over the day of tasks kept (45,000 after a 10-minute soak) discarded 4,000 workers from each of 45,000
      tasks, ~180 million discards: luigid answered nothing for up to 50 s each minute, and no run was claimed;
    - in luigi's ``Scheduler._prune_tasks``, the three checks of a task (``fail_dead_worker_task``, ``update_status``,
      ``may_prune``) for a PENDING or DONE task that has a stakeholder or a removal time not reached: none of them
      changes such a task (a RUNNING, BATCH_RUNNING, FAILED, DISABLED... task is checked as luigi checks it).

    And one bound is added: after luigi's prune, the oldest finished tasks beyond ``[nectar_scheduler]
    finished_tasks_kept`` are forgotten (:func:`_forget_oldest_finished`): luigid kept every run's task a day, ~5.6 MB
    per 1,000 runs (50 → 300 MB over a 48,000-run soak), tens of GB a day at 67 runs/s.
    """
    state = luigi.scheduler.SimpleTaskState

    def _remove_workers_from_tasks(self: Any, workers: Any, remove_stakeholders: bool = True) -> None:
        if not workers:  # a set or a list, as luigi passes them (a generator is always true: walked)
            return
        gone = set(workers)
        for task in self.get_active_tasks():
            if remove_stakeholders and task.stakeholders:
                task.stakeholders -= task.stakeholders & gone  # a set's & walks the smaller one: the task's
            for worker in [worker for worker in task.workers if worker in gone]:  # its OrderedSet, order kept
                task.workers.discard(worker)

    _replace(state, "_remove_workers_from_tasks", _remove_workers_from_tasks)
    kept = finished_tasks_kept(luigi.configuration.get_config())
    trim = _FreedPages(TRIM_EVERY)

    def _prune_tasks_kept(self: luigi.scheduler.Scheduler) -> None:
        _prune_tasks(self)
        trim.after(_forget_oldest_finished(self._state, kept, self._config))

    _replace(luigi.scheduler.Scheduler, "_prune_tasks", _prune_tasks_kept)


def finished_tasks_kept(config: luigi.configuration.LuigiConfigParser) -> int:
    """How many finished tasks luigid keeps: ``[nectar_scheduler] finished_tasks_kept`` of luigi's configuration
    ``config``, a whole number from 0, :data:`FINISHED_TASKS_KEPT` where it is not set; ValueError naming it else."""
    value = config.get(_SECTION, "finished_tasks_kept", "").strip()
    return kept_count(value, f"luigi.cfg [{_SECTION}] finished_tasks_kept") if value else FINISHED_TASKS_KEPT


def _forget_oldest_finished(state: luigi.scheduler.SimpleTaskState, kept: int, config: Any) -> int:
    """Forget the oldest finished (DONE, FAILED, DISABLED) tasks of luigid's ``state`` beyond ``kept`` of them, the
    oldest first (the time each took its status: luigi's ``Task.updated``), that no live worker holds (none of its
    stakeholders: a step a live worker's next step needs, DONE, is its dependency's, kept) and whose forgetting
    changes nothing luigi decides (:func:`_still_counts`). luigi keeps each of its statuses' tasks in the order they
    took it (``SimpleTaskState.set_status`` puts a task last in its new status's dict as it sets ``updated``; a task
    made anew is put last): the oldest are first in each, and the three are merged by ``updated``, walked only as far
    as the tasks to forget and those kept before them (no walk within the bound, as at most prunes: an attempt's
    ``dep_graph`` prunes, and finishes about one task more). Tasks loaded from a saved state are in the order they
    were first made, within a status: the first forgotten then may be a little younger than the oldest. Each
    forgotten task's ``workers`` is unlinked (:func:`_unlink_workers`), so that its memory is freed at once. Answers
    how many it forgot."""
    by_status = state._status_tasks
    excess = sum(len(by_status[status]) for status in _FINISHED) - kept
    if excess <= 0:
        return 0
    now = time.time()
    oldest = heapq.merge(*(by_status[status].values() for status in _FINISHED), key=lambda task: task.updated)
    forgettable = (task.id for task in oldest if not task.stakeholders and not _still_counts(task, config, now))
    forgotten = list(itertools.islice(forgettable, excess))
    for task_id in forgotten:
        _unlink_workers(state.get_task(task_id))
    state.inactivate_tasks(forgotten)
    if forgotten:
        luigi.scheduler.logger.info("Forgot the %d oldest finished tasks (keeping %d)", len(forgotten), kept)
    return len(forgotten)


def _unlink_workers(task: luigi.scheduler.Task) -> None:
    """Break the ring of ``task``'s ``workers`` (luigi's ``OrderedSet``: its sentinel, a list, refers to itself) when
    it holds no worker, as luigid forgets the task: nothing else refers to the task then, and its memory is freed at
    once, not at the cyclic collector's next full pass (a forgotten task's sentinel left in each of the allocator's
    pools kept them from being handed back meanwhile). One that still holds a worker (an assistant's: that worker's
    ``tasks`` may still refer to it) is left as it is."""
    if not task.workers:
        task.workers.end.clear()


class _FreedPages:
    """Hands the free pages of luigid's heap back to the system (glibc's ``malloc_trim``) once ``every`` tasks were
    forgotten since it last did. A task's larger blocks (its ``__dict__``, ~1.4 KB, and its ``failures`` deque,
    ~0.7 KB, of its ~5.6 KB: tracemalloc over a soak) come from the C allocator, which gives back only the free memory
    at its heap's top: a forgotten task's pages, between those of tasks kept, stayed in luigid's RSS. Measured in one
    process: 20,000 tasks forgotten at once, RSS 40 -> 124 -> 82 MB, 42 MB after a trim. Nothing is done where the C
    library has no ``malloc_trim`` (not glibc)."""

    def __init__(self, every: int) -> None:
        import ctypes  # luigid's own process only

        self.every, self.forgotten = every, 0
        self.trim: Callable[[int], int] | None = getattr(ctypes.CDLL(None), "malloc_trim", None)

    def after(self, forgotten: int) -> None:
        """Count ``forgotten`` tasks more; trim when they reach :attr:`every`."""
        self.forgotten += forgotten
        if self.forgotten >= self.every and self.trim is not None:
            self.forgotten = 0
            self.trim(0)


def _still_counts(task: luigi.scheduler.Task, config: Any, now: float) -> bool:
    """Whether luigid, forgetting the finished ``task``, would decide otherwise than luigi: a task luigid DISABLED
    (``scheduler_disable_time``) until its ``disable_persist`` ends (luigi's ``update_status`` re-enables it then;
    a task made anew would run at once), and a FAILED one while failures count within its ``disable_window``
    (``Task.num_failures``: a retry's failure must bring luigi's count to ``retry_count``, as the run's registry
    reckons, :func:`nectar.retry_count.attempts_used_up`). A DISABLED task that nothing re-enables (a cancelled
    run's step, ``disable``) is forgotten: a new submission re-enables it, clearing its failures, as one made anew."""
    if task.status == luigi.scheduler.DISABLED:
        disabled = task.scheduler_disable_time
        return disabled is not None and now - disabled <= config.disable_persist
    return task.status == luigi.scheduler.FAILED and task.num_failures() > 0


def _prune_tasks(self: luigi.scheduler.Scheduler) -> None:
    """luigi's ``Scheduler._prune_tasks``, over a task that none of its checks would change without checking it."""
    state, config = self._state, self._config
    assistant_ids = {w.id for w in state.get_assistants()}
    remove_tasks = []
    for task in state.get_active_tasks():
        if (
            task.status in _QUIET
            and (task.stakeholders or task.remove is not None)
            and not (task.remove and time.time() >= task.remove)
        ):
            continue
        state.fail_dead_worker_task(task, config, assistant_ids)
        state.update_status(task, config)
        if state.may_prune(task):
            luigi.scheduler.logger.info("Removing task %r", task.id)
            remove_tasks.append(task.id)
    state.inactivate_tasks(remove_tasks)


def luigid_marks_reopened() -> None:
    """luigid says, in its answer to the ``get_work`` that grants a step, whether a worker's PENDING took that step
    back from DONE since it was last granted (:data:`REOPENED`): only then may another worker have made it after the
    granted worker found it undone (:meth:`Worker._made_by_another`), and the worker checks it again. A deleted
    output taken back so is checked once more too (and rebuilt); any other step is run without a second check."""
    scheduler = luigi.scheduler.Scheduler
    add_task, get_work = scheduler.add_task, scheduler.get_work

    def marking_add_task(self: luigi.scheduler.Scheduler, *args: Any, **kwargs: Any) -> Any:
        task = self._state.get_task(kwargs.get("task_id")) if not args else None
        was_done = task is not None and task.status == DONE
        answer = add_task(self, *args, **kwargs)
        if was_done and task is not None and task.status == PENDING:
            task.__dict__[REOPENED] = True
        return answer

    def marking_get_work(self: luigi.scheduler.Scheduler, *args: Any, **kwargs: Any) -> Any:
        answer = get_work(self, *args, **kwargs)
        task = self._state.get_task(answer.get("task_id")) if answer.get("task_id") is not None else None
        if task is not None:
            answer[REOPENED] = bool(task.__dict__.pop(REOPENED, False))
        return answer

    _replace(scheduler, "add_task", marking_add_task)
    _replace(scheduler, "get_work", marking_get_work)


def luigid_finds_workers_once() -> None:
    """luigid's scheduler finds a worker it knows without making one: luigi's ``SimpleTaskState.get_worker`` is
    ``self._active_workers.setdefault(worker_id, Worker(worker_id))``, a ``Worker`` made (two ``time.time()``, a set,
    a dict, a list) and dropped at each of the 6 lookups of an attempt's frame ([add_task, add_worker, get_work]), of
    which every one but the first finds it: ~270 of the frame's ~3,500 bytecodes. A worker it does not know is made
    and kept as luigi makes it."""
    worker_class = luigi.scheduler.Worker

    def get_worker(self: luigi.scheduler.SimpleTaskState, worker_id: str) -> Any:
        workers = self._active_workers
        worker = workers.get(worker_id)
        if worker is None:
            worker = workers[worker_id] = worker_class(worker_id)
        return worker

    _replace(luigi.scheduler.SimpleTaskState, "get_worker", get_worker)


def luigid_makes_once(scheduler: luigi.scheduler.Scheduler) -> None:
    """``scheduler`` (luigid's) makes a task only for an id it does not know, and a retry policy once for each policy
    a worker sends. Once a scheduler, however many of luigid's sockets serve it.

    luigi's ``add_task`` makes a task (its ``_make_task``: a ``Task`` with its sets, deque and parameters split by
    visibility) at each call and for each of the call's deps, as the default of ``SimpleTaskState.get_task(task_id,
    setdefault=...)``, which drops it when it knows the id: a step's DONE (a run's second ``add_task``, of the task
    its PENDING added) made one for nothing, ~30 k of its ~138 k instructions. For an id it knows, what
    ``get_task``'s ``setdefault`` does with the task it holds (the task noted again under its status) is done here
    and no task is made: ``get_task``, given none, answers the task it holds, as before. The tasks are read from the
    scheduler's state at each call (luigid's ``load`` of its state file replaces them).

    And each ``add_task`` made its task's policy anew (``_generate_retry_policy``: luigid's ``[scheduler]`` policy
    made, as a dict, updated with the call's, made again): a ``RetryPolicy`` is a named tuple, never changed once
    made, and luigid's ``[scheduler]`` settings are read once at its start, so the same policy sent (the same names
    with the same values, of the same types) is answered with the one made for it first. At most
    :data:`POLICIES_KEPT` are kept; a policy beyond them, or with a value that has no hash, is made as luigi makes
    it."""
    make, generate = scheduler._make_task, scheduler._generate_retry_policy
    if make in _MAKES_ONCE:
        return

    def make_unless_known(*args: Any, **kwargs: Any) -> Any:
        state = scheduler._state
        task = state._tasks.get(kwargs.get("task_id"))
        if task is None:
            return make(*args, **kwargs)
        state._status_tasks[task.status][task.id] = task
        return None

    policies: dict[tuple[tuple[Any, ...], tuple[type, ...]], Any] = {}

    def policy_made_once(sent: dict[str, Any]) -> Any:
        try:
            key = (tuple(sent.items()), tuple(map(type, sent.values())))
            return policies[key]
        except KeyError:
            made = generate(sent)
            if len(policies) < POLICIES_KEPT:
                policies[key] = made
            return made
        except TypeError:  # a value with no hash
            return generate(sent)

    _MAKES_ONCE.add(make_unless_known)
    _replace(scheduler, "_make_task", make_unless_known)
    _replace(scheduler, "_generate_retry_policy", policy_made_once)


#: the ``_make_task`` of luigid's schedulers, each set by :func:`luigid_makes_once`
_MAKES_ONCE: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()
#: the retry policies a luigid keeps, each made once (:func:`luigid_makes_once`): the service's workers send a few
POLICIES_KEPT = 64


def uncounted(task: luigi.Task) -> None:
    """The failure of ``task`` that this process's luigi worker tells luigid next is counted by none
    (:data:`UNCOUNTED`): the task was interrupted (its run cancelled or reclaimed, its worker stopping), and whoever
    interrupted it tells luigid how it ended (a cancel's DISABLED, a reclaim's FAILED). A step run in a process of
    its own (:mod:`nectar.parallel`) marks that process's copy of the task: the mark reaches the worker with the
    step's result (:class:`_MarkedResults`)."""
    task.__dict__[UNCOUNTED] = True


def luigid_counts_no_cancel() -> None:
    """luigid counts no failure of an ``add_task`` that says :data:`UNCOUNTED`: a cancelled run's step, which its
    worker ends FAILED (the one status that ends a RUNNING task, and a PENDING one is ended so too) and then
    DISABLED (:meth:`nectar.luigid.SchedulerClient.disable`). luigi counts each FAILED toward the step's
    ``retry_count`` (``Task.add_failure``, called by ``SimpleTaskState.set_status``): a step cancelled
    ``retry_count`` times was disabled by luigid at its next real failure, and that run ended without its retries.

    Nor a second time a failure told again: an ``add_task`` FAILED of ours names its failure (:data:`FAILURE`,
    :func:`failure_named`), and one whose name is the last its task was told is a failure counted already, sent again
    because its answer was lost with its connection (by :class:`~nectar.luigid.Connections` or luigi's retry loop):
    it ends the task FAILED as before, uncounted. A luigid without this takes both arguments as ones ``add_task``
    ignores, and counts.

    luigi's count is left as it is by the task's ``add_failure`` made to do nothing for the call: a FAILED that
    luigi would count toward ``retry_count`` disables the task (``has_excessive_failures``) only if the failures
    counted before it already do.

    And an ``add_task`` that sends no retry policy (``retry_policy_dict``) leaves the task's as luigid holds it: the
    service's FAILED and DISABLED (:class:`~nectar.luigid.SchedulerClient`), a DONE of ``_made_by_another``, and
    luigi's worker's own RUNNING of a step that sets its tracking URL, of a batch's grant, and FAILED of a step it
    could not load. luigi sets it from every ``add_task``, to luigid's ``[scheduler]`` defaults where none is sent:
    the call's own failure is judged by the policy held before it, but each after it by luigid's defaults until a
    worker adds the task again with its own (a step with ``retry_count`` 1 that set its tracking URL and failed was
    not disabled: luigi's 999; one with 2, failed by a reclaim, then granted to a run waiting for it once
    ``retry_delay`` ran out and failed there, neither). The calls that send one (luigi's worker's PENDING, DONE and
    results, ``_get_retry_policy_dict``) are left as they are: one lookup more each."""
    scheduler = luigi.scheduler.Scheduler
    add_task = scheduler.add_task

    def uncounted_add_task(self: luigi.scheduler.Scheduler, *args: Any, **kwargs: Any) -> Any:
        uncounted, failure = kwargs.pop(UNCOUNTED, False), kwargs.pop(FAILURE, None)
        task = None if args else self._state.get_task(kwargs.get("task_id"))
        if task is not None and kwargs.get("retry_policy_dict") is None:  # none sent: the task's kept
            kwargs["retry_policy_dict"] = task.retry_policy._asdict()
        if task is None or not (uncounted or (failure is not None and task.__dict__.get(FAILURE) == failure)):
            answer = add_task(self, *args, **kwargs)
        else:
            task.__dict__["add_failure"] = _count_nothing  # the instance's, over its class's, for this call
            try:
                answer = add_task(self, **kwargs)
            finally:
                del task.__dict__["add_failure"]
        if failure is not None and not args and (told := self._state.get_task(kwargs.get("task_id"))) is not None:
            told.__dict__[FAILURE] = failure
        return answer

    _replace(scheduler, "add_task", uncounted_add_task)
    _counts_no_cancel_checked()


def _count_nothing() -> None:
    """A task's ``add_failure`` while luigid is told a failure it does not count (:func:`luigid_counts_no_cancel`)."""


def failure_named(data: dict[str, Any]) -> dict[str, Any]:
    """``data``, the arguments of an ``add_task``, with a name of its own (:data:`FAILURE`) when it tells luigid a
    failure that counts (FAILED, not :data:`UNCOUNTED`): luigid counts it once, however many times it is sent."""
    if data.get("status") != FAILED or data.get(UNCOUNTED) or FAILURE in data:
        return data
    return {**data, FAILURE: os.urandom(12).hex()}


def _counts_no_cancel_checked() -> None:
    """Check, as luigid starts, that :func:`luigid_counts_no_cancel` still does what it says in the luigi loaded, on a
    scheduler of its own (no state file, no history): a FAILED that says :data:`UNCOUNTED` ends the task and counts no
    failure, and one failure told twice (:data:`FAILURE`) counts once. A luigi that counts a failure elsewhere than
    through ``Task.add_failure`` would have counted a cancel's failures and those sent again in silence (or failed
    luigid's ``add_task`` at the first cancel): it fails luigid's start now, naming what changed (RuntimeError)."""
    # every setting the probe's counting reads given here, none taken from the operator's [scheduler]: a
    # disable_hard_timeout of 0 disabled its task at its one failure (luigid refused to start), and its metrics
    # collector and error e-mails were told of a task T
    probe = luigi.scheduler.Scheduler(
        record_task_history=False,
        retry_count=2,
        disable_window=3600,
        disable_hard_timeout=3600,
        metrics_collector=luigi.metrics.MetricsCollectors.none,
        batch_emails=False,
    )
    try:
        probe.add_task(worker="nectar-check", task_id="T", status=PENDING, retry_policy_dict={"retry_count": 5})
        probe.get_work(worker="nectar-check")
        probe.add_task(worker="nectar-check", task_id="T", status=FAILED, **{UNCOUNTED: True})
        task = probe._state.get_task("T")
        uncounted = (task.status, task.num_failures(), task.first_failure_time)
        for _ in range(2):  # one failure, told twice
            probe.add_task(worker="nectar-check", task_id="T", status=FAILED, **{FAILURE: "once"})
        counted = (task.status, task.num_failures())
        kept = task.retry_policy.retry_count
    except Exception as exc:
        raise RuntimeError(f"luigi changed what luigid_counts_no_cancel relies on: {exc!r}") from exc
    if uncounted != (FAILED, 0, None) or counted != (FAILED, 1) or kept != 5:
        raise RuntimeError(
            "luigi changed how luigid counts a task's failures (luigid_counts_no_cancel): a cancel's FAILED left "
            f"(status, failures, first failure) {uncounted}, expected ('FAILED', 0, None); a failure then left "
            f"(status, failures) {counted}, expected ('FAILED', 1); the task's retry_count {kept}, expected 5 (kept "
            "by the calls that sent none)"
        )


def luigid_saves_whole() -> None:
    """luigid saves its state whole or not at all. luigi's ``SimpleTaskState.dump`` pickles the state into its file in
    place (``open(path, "wb")``, which empties the file first): a luigid killed mid-save (at ``nectar serve``'s stop
    timeout, by the OOM killer) or a save that fails midway (a full disk) left a cut file, and the next luigid said
    "Error when loading state. Starting from empty state": every task's history lost. Here the state is pickled into
    a new file in the same folder, flushed to the disk, then put in the state file's place in one rename (and the
    folder's entry flushed): the file holds the last whole state, the new one or the one before. A save a kill cut
    leaves its new file, which the next whole save removes (one luigid saves in a folder: ``hold_luigid_state``).
    Its data all written, the new file is renamed :data:`~nectar.stops.FLUSHING` before it is flushed: ``nectar
    serve`` waits for that flush however long the disk takes (:func:`nectar.stops.await_stop`), where it saw no
    progress in it and killed luigid, the state written and lost.

    And it saves once as it stops, not twice: luigi's ``luigi.server.run`` saves in its SIGTERM handler, then exits,
    and saves the same state again at exit (the same handler, registered with ``atexit``), doubling the stop's longest
    part (5,000 tasks: two renames of a new state file, ~1 s of a loaded machine). luigid saves only as it ends, so a
    save that succeeded is its last: a later call is skipped (one that failed is tried again). A stop signal that
    comes while it saves is ignored (:func:`_stops_ignored`): the save under way is that stop's too."""
    saved: list[bool] = []

    def dump_once(self: luigi.scheduler.SimpleTaskState) -> None:
        if saved:
            return
        with _stops_ignored():
            if _dump_whole(self):
                saved.append(True)

    _replace(luigi.scheduler.SimpleTaskState, "dump", dump_once)


#: the signals luigi's ``luigi.server.run`` stops luigid at (its ``shutdown_handler``: a save, then the exit)
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


@contextlib.contextmanager
def _stops_ignored() -> Iterator[None]:
    """luigid's stop signals ignored while the block runs (its save), their handlers put back after. luigi's handler
    saves then exits: a second SIGTERM during the save (a stop asked twice: serve's, then the kernel's as serve dies)
    ran it again between two bytecodes of the first save, which began a second save, whole, before its exit cut the
    first: the stop's longest part twice. Only the main thread sets handlers; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {signum: signal.signal(signum, signal.SIG_IGN) for signum in _STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def _dump_whole(self: luigi.scheduler.SimpleTaskState) -> bool:
    """luigi's ``SimpleTaskState.dump`` (its ``_state_path`` and ``get_state``, its log lines), whole or nothing:
    whether it saved."""
    path = self._state_path
    folder, prefix = os.path.dirname(os.path.abspath(path)), f".{os.path.basename(path)}."
    try:
        fd, saving = tempfile.mkstemp(prefix=prefix, suffix=SAVING, dir=folder)
    except OSError:
        luigi.scheduler.logger.warning("Failed saving scheduler state", exc_info=True)
        return False
    try:
        os.fchmod(fd, _mode_of(path))  # as luigi's open leaves it (mkstemp makes it 0o600)
        with open(fd, "wb") as fobj:
            pickle.dump(self.get_state(), fobj)
            fobj.flush()
            flushing = saving.removesuffix(SAVING) + FLUSHING  # all written: only the disk's flush is left
            os.rename(saving, flushing)
            saving = flushing
            os.fsync(fobj.fileno())
        os.replace(saving, path)
    except BaseException as exc:  # the state file untouched: the new file goes, whatever stopped the save
        with contextlib.suppress(OSError):
            os.unlink(saving)
        if not isinstance(exc, OSError):
            raise
        luigi.scheduler.logger.warning("Failed saving scheduler state", exc_info=True)
        return False
    with contextlib.suppress(OSError):  # the rename itself on the disk (a folder that cannot be opened: as luigi)
        entry = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(entry)
        finally:
            os.close(entry)
    luigi.scheduler.logger.info("Saved state in %s", path)
    for name in os.listdir(folder):  # a save a kill cut (at serve's stop timeout): the state's size each, never read
        if name.startswith(prefix) and name.endswith((SAVING, FLUSHING)):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))
    return True


def _mode_of(path: str) -> int:
    """The permissions luigi's ``open(path, "wb")`` leaves the state file with: its own where it exists, else the
    default for a new file (0o666 less the umask)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        umask = os.umask(0)  # read, then put back: luigid saves once, as it stops
        os.umask(umask)
        return 0o666 & ~umask


def luigid_reads_cors_once() -> None:
    """luigid's RPC handler reads its ``[cors]`` settings from luigi's configuration anew for every call it serves
    (``RPCHandler.__init__`` makes a ``cors()``): measured here, 150-560 µs of luigid's CPU per call on a loaded
    machine, as much as the scheduler's own work for an ``add_task``. luigi reads its configuration once, at start,
    so the settings cannot change under a running luigid: read once, they are the same for every call."""
    import luigi.server  # luigid's own process only: tornado is not imported elsewhere

    settings = luigi.server.cors()
    _replace(luigi.server, "cors", lambda: settings)


def s3_bucket_and_key(path: str) -> tuple[str, str]:
    """The bucket and key of an ``s3://bucket/key`` path, as luigi's S3 client splits it."""
    from luigi.contrib.s3 import S3Client  # imports boto3's exceptions: S3 stores only

    bucket, key = S3Client._path_to_bucket_and_key(path)
    return str(bucket), str(key)


def stop_mock_filesystem() -> None:
    """Stop the process luigi's ``MockTarget``s keep their data in, if this process started one; their data starts
    empty again at the next use (as in a new ``luigi`` command).

    luigi starts it (a ``multiprocessing.Manager()``) at a ``MockTarget``'s first use and never stops it; only a
    normal interpreter exit would, and our processes end with ``os._exit`` (a spare, an API worker). Left running,
    it outlives its process and keeps the descriptors it inherited (a socket, a lock). One started by a process this
    one was forked from is that process's to stop: this process only forgets it.
    """
    data = luigi.mock.MockFileSystem._data
    if data is None:
        return
    luigi.mock.MockFileSystem._data = None
    manager = data._manager
    process = getattr(manager, "_process", None)
    if process is not None and process._parent_pid == os.getpid():
        manager.shutdown()


def config_paths(config: luigi.configuration.LuigiConfigParser) -> list[str]:
    """The files luigi's configuration ``config`` reads as it (re)loads, in order: its class's list, to which
    ``luigi.configuration.add_config_path`` appends (the list itself, which a caller may put back as it was)."""
    paths: list[str] = type(config)._config_paths
    return paths


def forget_event_handlers(module: str) -> None:
    """Drop from luigi's task event handlers (``Task._event_callbacks``: by class, by event, a set of callables, kept
    for the process) those of the module named ``module``: each handler made in it (its ``__module__``), and every
    handler registered on a class of it. luigi registers a handler as the ``@X.event_handler(...)`` under which it is
    defined is executed, and a module executed anew (a chain module for a reused process's next run) registers its
    handlers again: its last execution's stayed, and each event was handled once per execution of the module in the
    process. The dict is replaced, not changed: a ``trigger_event`` going down the one it holds meanwhile is not cut."""
    handlers: dict[type, dict[str, set[Callable[..., Any]]]] = luigi.Task._event_callbacks
    theirs = [
        cls
        for cls, events in handlers.items()
        if cls.__module__ == module or any(getattr(handler, "__module__", None) == module for handler in _all(events))
    ]
    if not theirs:
        return
    kept = {cls: events for cls, events in handlers.items() if cls not in theirs}
    for cls in theirs:
        if cls.__module__ != module:
            kept[cls] = {
                event: {handler for handler in called if getattr(handler, "__module__", None) != module}
                for event, called in handlers[cls].items()
            }
    luigi.Task._event_callbacks = kept


#: a task event handler luigi holds: the class it is registered on, the event, the handler
Handler = tuple[type, str, Callable[..., Any]]


def hide_event_handlers(modules: AbstractSet[str]) -> list[Handler]:
    """Take off luigi's task event handlers (``Task._event_callbacks``) each one made in one of ``modules`` (its
    ``__module__``); those taken off, for :func:`show_event_handlers`. The dict is replaced, as by
    :func:`forget_event_handlers`."""
    handlers: dict[type, dict[str, set[Callable[..., Any]]]] = luigi.Task._event_callbacks
    hidden = [
        (cls, event, handler)
        for cls, events in handlers.items()
        for event, called in events.items()
        for handler in called
        if getattr(handler, "__module__", None) in modules
    ]
    if hidden:
        luigi.Task._event_callbacks = {
            cls: {
                event: {handler for handler in called if getattr(handler, "__module__", None) not in modules}
                for event, called in events.items()
            }
            for cls, events in handlers.items()
        }
    return hidden


def show_event_handlers(hidden: Iterable[Handler]) -> None:
    """Give luigi back the task event handlers :func:`hide_event_handlers` took off (the dict replaced)."""
    handlers: dict[type, dict[str, set[Callable[..., Any]]]] = luigi.Task._event_callbacks
    shown = {cls: {event: set(called) for event, called in events.items()} for cls, events in handlers.items()}
    for cls, event, handler in hidden:
        shown.setdefault(cls, {}).setdefault(event, set()).add(handler)
    luigi.Task._event_callbacks = shown


def _all(events: dict[str, set[Callable[..., Any]]]) -> Iterator[Callable[..., Any]]:
    return itertools.chain.from_iterable(events.values())


def task_namespaces() -> dict[str, str]:
    """luigi's task namespaces by scope (a module's name, or ``""`` for every module), as ``luigi.namespace(...,
    scope=...)`` sets them for the classes made after it (``Register._default_namespace_dict``: the dict itself)."""
    namespaces: dict[str, str] = Register._default_namespace_dict
    return namespaces


def without_own_frame(exc: BaseException) -> BaseException:
    """``exc``, caught in a frame of ours that luigi calls through (or that calls a task's own code for luigi), without
    that frame at the head of its traceback: re-raised bare (which adds no frame), it reaches luigi's worker, its
    ``on_failure`` and luigid as it would under luigi, with the task's frames alone."""
    held = exc.__traceback__
    if held is not None and held.tb_next is not None:
        exc.__traceback__ = held.tb_next
    return exc


#: the name under which a task holds what its ``complete()`` raised as luigi's worker last asked it
#: (:func:`complete_error`)
_COMPLETE_ERROR = "_nectar_complete_error"


class CompleteError:
    """What a task's ``complete()`` raised as luigi's worker last asked it (or the answer that was no boolean): the
    exception, where it was asked in this process (None: in a process of luigi's scheduling pool), and luigi's text of
    it (its traceback, as luigi's ``check_complete`` formats it; empty until luigi's worker read the answer).

    Held on the task, it never crosses to another process: a task asked in a process of luigi's scheduling pool goes
    back to luigi's worker pickled, through a queue, and an exception may not pickle, or not unpickle (one whose
    ``__init__`` takes other arguments than its ``args``): the queue's ``put`` then raised in the pool's process, which
    luigi ignores, and its worker waited for that answer for ever. Pickled, it is one with neither."""

    __slots__ = ("error", "trace", "retryable")

    #: whether trying again may cure what ``complete()`` raised (a store's outage): asked as one is pickled, the
    #: verdict all that crosses (set where the attempt's recorder is installed, :mod:`nectar.steps`)
    retry_cures: ClassVar[Callable[[BaseException], bool] | None] = None

    def __init__(self, error: Exception | None = None, trace: str = "", retryable: bool = False) -> None:
        self.error = error
        self.trace = trace
        self.retryable = retryable

    def __reduce__(self) -> tuple[type[CompleteError], tuple[None, str, bool]]:
        judge, error = CompleteError.retry_cures, self.error
        return (CompleteError, (None, "", self.retryable or (error is not None and judge is not None and judge(error))))


#: luigi's ``luigi.worker.check_complete_cached``, through which its worker asks a task's ``complete()`` (as it adds
#: the task, and each dependency's before a step runs)
_luigi_check_complete_cached: Callable[..., Any] = luigi.worker.check_complete_cached


#: what is done before luigi's worker asks a task's ``complete()`` (its answer passed to ``after``), and after it
#: answered (whether it said True): :func:`around_complete_asks`
_around_ask: tuple[Callable[[luigi.Task], Any], Callable[[luigi.Task, Any, bool], None]] | None = None


def around_complete_asks(
    around: tuple[Callable[[luigi.Task], Any], Callable[[luigi.Task, Any, bool], None]] | None,
) -> tuple[Callable[[luigi.Task], Any], Callable[[luigi.Task, Any, bool], None]] | None:
    """From now on in this process (until set again), with ``around`` as ``(before, after)``: ``before(task)`` called
    as luigi's worker is about to ask ``task``'s ``complete()``, and ``after(task, what before answered, whether
    complete() said True)`` once it answered (or raised: False); no frame of theirs is in a traceback of what
    ``complete()`` raised. None: nothing done around the asks. What was set before."""
    global _around_ask
    was, _around_ask = _around_ask, around
    return was


def _check_complete_noted(task: luigi.Task, completion_cache: Any = None) -> Any:
    """luigi's ``check_complete_cached``, the exception a task's ``complete()`` raised kept on the task
    (:func:`complete_error`) and raised on without this frame (luigi's text of its traceback is luigi's own); what
    :func:`around_complete_asks` set done around it."""
    around = _around_ask
    held = around[0](task) if around is not None else None
    answer: Any = False
    try:
        answer = _luigi_check_complete_cached(task, completion_cache)
    except Exception as exc:
        without_own_frame(exc)
        task.__dict__[_COMPLETE_ERROR] = CompleteError(exc)
        raise
    finally:
        if around is not None:
            around[1](task, held, answer is True)
    if _COMPLETE_ERROR in task.__dict__:
        del task.__dict__[_COMPLETE_ERROR]
    return answer


_replace(luigi.worker, "check_complete_cached", _check_complete_noted)


def _noted_as_added(task: luigi.Task, is_complete: Any) -> None:
    """luigi's worker is adding ``task`` whose ``complete()`` answered ``is_complete`` (in this process or in one of
    its scheduling pool): if that is no boolean (what it raised, as text; or another value), luigi's text of it noted
    on the task (:func:`complete_error`), as luigi's ``_add`` makes it for its log."""
    if is_complete is True or is_complete is False:
        return
    if isinstance(is_complete, luigi.worker.TracebackWrapper):
        trace = str(is_complete.trace)
    else:
        trace = f"Exception: Return value of Task.complete() must be boolean (was {is_complete!r})"
    noted = task.__dict__.get(_COMPLETE_ERROR)
    if not isinstance(noted, CompleteError):
        noted = task.__dict__[_COMPLETE_ERROR] = CompleteError()
    noted.trace = trace


def complete_error(task: luigi.Task) -> CompleteError | None:
    """What ``task``'s ``complete()`` raised as luigi's worker last asked it (or the answer that was no boolean); None
    if it answered True or False. luigi's worker keeps only the text of its traceback (``check_complete``), and tells
    of it by ``DEPENDENCY_MISSING`` alone: the error itself, where it was asked in this process, to tell a store's
    failure from the code's, and luigi's text of it wherever it was asked, without asking ``complete()`` again."""
    noted = task.__dict__.get(_COMPLETE_ERROR)
    return noted if isinstance(noted, CompleteError) and (noted.error is not None or noted.trace) else None


#: luigi's text of a failed program (``ExternalProgramRunError.__str__``), before
#: :func:`program_errors_keep_environment` replaces it
_luigi_program_text: Callable[[Any], str] | None = None


def program_errors_keep_environment() -> None:
    """A failed ``ExternalProgramTask``'s text (luigi's ``ExternalProgramRunError``) names the variables of the
    program's environment that its task set, values not shown, where luigi's lists every variable with its value.

    luigi's text is what the service keeps as the step's and the run's error, sends luigid as its explanation and logs
    in the task's log: ``program_environment()`` is the worker's whole ``os.environ`` by default, so it held the
    service's secrets (``NECTAR_SCHEDULER_SECRET``, ``NECTAR_SECRET_KEY``, ``AWS_SECRET_ACCESS_KEY``) for any holder of
    a read token to see; under ``python -m luigi`` it is the user's own environment printed to the user's own terminal.
    The command, its return code, stdout and stderr are told as luigi tells them. Once per process (a worker, before it
    forks its attempts)."""
    global _luigi_program_text
    from luigi.contrib.external_program import ExternalProgramRunError

    if vars(ExternalProgramRunError).get("__str__") is _program_text:
        return
    _luigi_program_text = ExternalProgramRunError.__str__
    _replace(ExternalProgramRunError, "__str__", _program_text)


def _program_text(error: Any) -> str:
    """luigi's text of a failed program (``error``, an ``ExternalProgramRunError``), its environment told by the names
    its task set beyond this process's own (:func:`program_errors_keep_environment`)."""
    assert _luigi_program_text is not None
    env = error.env
    if not env:  # luigi's own "[empty]": a program given no environment
        return _luigi_program_text(error)
    # luigi's text of the same error without its environment, read from a copy of what that text reads: the error
    # itself is left as it is (another thread may be formatting it: its log record, the step's error)
    bare = types.SimpleNamespace(message=error.message, args=error.args, out=error.out, err=error.err, env=None)
    text = _luigi_program_text(bare)
    set_by_task = sorted(name for name, value in env.items() if os.environ.get(name) != value)
    told = "the worker's own" + (f", and {', '.join(set_by_task)} set by the task" if set_by_task else "")
    return text.replace("\nENVIRONMENT: [empty]", f"\nENVIRONMENT: {told} (values not shown)", 1)


def runs_anyway_anew() -> None:
    """Each run is an execution of its pipeline for ``luigi.contrib.simulate``'s ``RunAnywayTarget`` ("a target that
    never exists before the task runs"), as each ``python -m luigi`` is.

    The target's file is ``<tmp>/luigi-simulate/<unique>/<md5 of the task id>``, ``unique`` a shared
    ``multiprocessing.Value`` luigi makes as the module is imported and sets to the pid of the first process that makes
    such a target: one value a ``python -m luigi``, its task processes sharing it. A worker that executed the chain
    before it forked (its clock, a spare) held one value for every attempt, so the first run set it for good and each
    later run found its file and ended DONE without ``run()``. Called as a run begins, in its attempt process: a value
    of the run's own, made anew, above any pid (luigi deletes a folder of them after ``temp_time``); nothing where no
    chain imported the module."""
    simulate = sys.modules.get("luigi.contrib.simulate")
    target = getattr(simulate, "RunAnywayTarget", None)
    if target is not None:
        _replace(target, "unique", multiprocessing.Value("i", _PID_MAX + secrets.randbelow(2**31 - _PID_MAX)))


#: above any pid Linux hands out (``/proc/sys/kernel/pid_max`` is at most 2**22)
_PID_MAX = 2**22

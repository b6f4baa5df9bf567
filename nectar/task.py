"""The task base classes chains build on: outputs keyed by parameters, params.txt and logs beside them.

``NectarTask`` picks its store from the settings (local when ``ENV=local``, S3 otherwise);
``NectarS3Task`` and ``NectarLocalTask`` force one. Every ``run()`` a subclass defines is wrapped
so that ``params.txt`` is written when it starts and ``log/stdout.log``/``log/stderr.log`` are
saved when it finishes or fails. In a run's attempt (:func:`record_every_task`), the ``run()`` of
a plain luigi task of a chain is wrapped the same way, in the same folder its key names.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import json
import logging
import os
import sys
import threading
import traceback
import types
import weakref
from collections import deque
from collections.abc import Callable, Generator, Mapping
from itertools import repeat
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, TextIO

import luigi
from luigi.event import Event
from luigi.parameter import ParameterVisibility
from luigi.target import FileSystemTarget

from nectar import luigi_names, step_locks
from nectar.config import get_settings
from nectar.errors import ChainImportError, Interrupted, LeaseLost
from nectar.keys import PARAMS_FILE, STDERR_FILE, STDOUT_FILE, TargetKey, is_name, param_digest, task_key
from nectar.logs import ahead
from nectar.logs.capture import open_log, redirect_output
from nectar.luigi_internals import (
    Inherited,
    ReadOnceRegister,
    batched_params,
    hold_class_shape,
    luigi_get_params,
    luigi_task_id,
    make_as_luigi_does,
    param_values_once,
    task_params,
    without_own_frame,
)
from nectar.stdlib_internals import child_path
from nectar.stores import TargetStore, get_store

logger = logging.getLogger(__name__)


def chain_of_file(path: str | Path) -> tuple[str, str]:
    """``(type, chain)`` for ``.../chains/<type>/<chain>.py``; raises if the path is not a chain. Read from the path's
    text alone, once per text (each class of a chain file asks, each time a run executes it: two ``Path`` parsings)."""
    return _chain_of_text(os.fspath(path))


@functools.lru_cache(maxsize=256)
def _chain_of_text(text: str) -> tuple[str, str]:
    path = Path(text)
    chain_type, chain = path.parent.name, path.stem
    if path.suffix != ".py" or not chain.endswith("_chain") or not (is_name(chain_type) and is_name(chain)):
        raise ChainImportError(f"{path} is not a chain file (<chains>/<type>/<name>_chain.py)")
    return chain_type, chain


def chain_namespace(chain_type: str, chain: str) -> str:
    """The luigi namespace of a chain's tasks, ``<type>.<chain>``: families never collide, and luigi's
    visualiser, which folds families on their first dot, shows one folder per chain type."""
    return f"{chain_type}.{chain}"


def chain_module(chain_type: str, chain: str) -> str:
    """The module a chain file is imported as, ``chains.<type>.<chain>`` (``luigi --module`` takes it)."""
    return f"chains.{chain_type}.{chain}"


def live_log_paths(key: TargetKey) -> tuple[Path, Path]:
    """Where a running task's stdout and stderr are written before they reach the store: two files of the live logs
    folder itself, named after the task's folder (``chains.<type>.<chain>.<Task>.<md5>.stdout.log``: a name has no
    dot). No folder is made or removed for a step: on ext4 a folder made and removed cost ~200-400 µs a step. The
    folder is made once per settings (joined anew, it was half of this function's cost in a step's start)."""
    live, stem = get_settings().live_logs_dir, key.folder.replace("/", ".")
    return child_path(live, f"{stem}.stdout.log"), child_path(live, f"{stem}.stderr.log")  # no name parsed again


class LiveLogs:
    """A running task's stdout and stderr files, created empty and held open until it ends."""

    def __init__(self, key: TargetKey) -> None:
        self.key = key
        self.stdout_path, self.stderr_path = live_log_paths(key)
        self.stdout = ahead.take(self.stdout_path) or self._create(self.stdout_path)
        self.stderr = ahead.take(self.stderr_path) or open_log(self.stderr_path)

    @staticmethod
    def _create(path: Path) -> TextIO:
        try:
            return open_log(path)
        except FileNotFoundError:  # the live logs folder is made by the first step that needs it
            path.parent.mkdir(parents=True, exist_ok=True)
            return open_log(path)

    def close(self) -> None:
        self.stdout.close()
        self.stderr.close()


def create_live_logs(key: TargetKey) -> tuple[Path, Path]:
    """The task's live stdout and stderr files, created empty: a step told RUNNING has logs to serve."""
    logs = LiveLogs(key)
    logs.close()
    return logs.stdout_path, logs.stderr_path


#: the live logs of the step that has just started in this process, until its run() takes them
_starting: LiveLogs | None = None


def open_live_logs(key: TargetKey) -> None:
    """Create the live logs of the step of ``key``, which starts now (it can be told RUNNING: its logs can be
    served), and keep them open for its run() (:func:`take_live_logs`): each is made once."""
    global _starting
    if _starting is not None:  # a step that never reached its run(): its files stay, as they are
        _starting.close()
    _starting = LiveLogs(key)


def take_live_logs(key: TargetKey) -> LiveLogs:
    """The live logs opened as the step of ``key`` started, else created now (a task run outside an attempt)."""
    global _starting
    held, _starting = _starting, None
    if held is not None and held.key == key:
        return held
    if held is not None:
        held.close()
    return LiveLogs(key)


class _ClassParams(NamedTuple):
    """A task class's parameters as luigi lists them, read from the class of ``mro`` when its classes' ``__dict__``s
    (``dicts``, each seen through a read-only view of it) held ``shape`` attributes each."""

    mro: tuple[type, ...]
    dicts: tuple[Any, ...]
    shape: list[int]
    params: list[tuple[str, luigi.Parameter]]
    #: every one is significant and public: each of luigi's ``to_str_params`` variants lists them all
    plain: bool
    #: luigi's ``get_task_family`` of the class
    family: str
    #: luigi's ``batch_param_names`` of the class: its parameters that batch
    batch: tuple[str, ...]


#: luigi's own ``Task.__init__``, which :meth:`NectarTask.__init__` does itself when it is the next one
_LUIGI_INIT = luigi.Task.__init__
#: the variant of luigi's ``to_str_params`` (only_significant, only_public) that lists a plain class's parameters
_ALL = (True, True)
#: each thread's task class being made by :meth:`NectarTask.__init__`, with its parameters read once for that making
#: (luigi's ``__init__`` asks for them 5 more times: its parameters, its values' family, its types' warning, its
#: family, its ``to_str_params``; each look compared the shape of every class of its MRO again)
_MAKING = threading.local()


class NectarTask(luigi.Task, metaclass=ReadOnceRegister):
    """A luigi task whose output is ``chains/<type>/<chain>/<Task>/<md5>/out.txt`` in a store."""

    #: ``"local"``, ``"s3"`` or None (decided by the settings: local when ENV=local)
    store_kind: ClassVar[str | None] = None
    #: this task's retry policy, when it differs from the service's (NECTAR_RETRIES, NECTAR_RETRY_DELAY,
    #: NECTAR_RETRY_BACKOFF): attempts after the first, seconds before the first retry, growth of that delay
    retries: ClassVar[int | None] = None
    retry_delay: ClassVar[float | None] = None
    retry_backoff: ClassVar[float | None] = None
    _nectar_recording: bool = False
    _nectar_chain_ref: ClassVar[tuple[str, str] | None] = None
    #: the class's parameters as luigi lists them, with the shape of the class they were read from: in each class's
    #: own ``__dict__`` from its making on (kept there, they leave its shape as it is), read there (a weak mapping's
    #: lookup made a weak reference each time: 6x the cost, and a task made asks 6 times)
    _nectar_class_params: ClassVar[_ClassParams | None] = None
    #: what the classes after it in a subclass's MRO give that subclass's parameters, kept by
    #: :func:`~nectar.luigi_internals.task_params` (held from the class's making on, as the parameters are)
    _nectar_inherited: ClassVar[Inherited | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if run is None and cls.run is not luigi.Task.run:  # a run() from a mixin outside NectarTask
            run = cls.run
        if run is not None and not getattr(run, _RECORDED, False):
            type.__setattr__(cls, _RUN, _recorded(run))  # (type's: no parameter, its metaclass need not look)
        # what is set on the class later is set now: its attributes, get_params's cache key, hold from here (a chain
        # module is executed anew for each run: each run made a new class's first task reading its parameters 3 times)
        type.__setattr__(cls, "_nectar_chain_ref", None)  # type's, as every name of the service's own is set: its
        type.__setattr__(cls, "_nectar_class_params", None)  # metaclass looks for a changed parameter at each set
        type.__setattr__(cls, "_nectar_inherited", None)
        hold_class_shape(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """luigi's ``Task.__init__``, the MD5 of its task_id kept for :attr:`target_key`, which hashes the same
        canonical JSON (a submission serialized and hashed it twice); a class whose bases put another ``__init__``
        between this one and luigi's is made by that one, as luigi would make it."""
        cls = type(self)
        if super(NectarTask, cls).__init__ is _LUIGI_INIT:
            outer = getattr(_MAKING, "made", None)
            _MAKING.made = (cls, cls._class_params())
            try:
                make_as_luigi_does(self, args, kwargs, self._identified)
            finally:
                _MAKING.made = outer
        else:
            super().__init__(*args, **kwargs)

    def _identified(self, family: str, str_params: dict[str, str]) -> str:
        """luigi's task_id of ``family`` and ``str_params`` (its significant public ones), its full MD5 kept."""
        digest = self.__dict__["_nectar_digest"] = param_digest(str_params)
        return luigi_task_id(family, str_params, digest)

    @classmethod
    def chain_ref(cls) -> tuple[str, str]:
        """``(type, chain)`` of the chain file that defines this class (luigi asks for it at every task id)."""
        ref: tuple[str, str] | None = cls.__dict__.get("_nectar_chain_ref")
        if ref is None:
            ref = chain_of_file(inspect.getfile(cls))
            type.__setattr__(cls, "_nectar_chain_ref", ref)
        return ref

    @classmethod
    def get_params(cls) -> list[tuple[str, luigi.Parameter]]:
        """luigi's parameters of the class, read once per class: luigi walks ``dir(cls)`` at every call, seven times
        for each task made (half of the CPU a schedule's fire took). Read again when the class or a base gained or
        lost an attribute (``luigi.util.inherits`` adds parameters to a class already made), or a parameter of the
        class or of a base of its metaclass was replaced (:class:`~nectar.luigi_internals.ReadOnceRegister`)."""
        return list(cls._class_params().params)

    @classmethod
    def _class_params(cls) -> _ClassParams:
        making: tuple[type, _ClassParams] | None = getattr(_MAKING, "made", None)
        if making is not None and making[0] is cls:  # read as this thread's making of a task of it began
            return making[1]
        kept: _ClassParams | None = cls.__dict__.get("_nectar_class_params")
        if kept is None or kept.mro is not cls.__mro__ or list(map(len, kept.dicts)) != kept.shape:
            luigis = super().get_params  # luigi's walk of every name of the class, unless a base has its own
            params = task_params(cls) if getattr(luigis, "__func__", None) is luigi_get_params else luigis()
            plain = all(p.significant and p.visibility == ParameterVisibility.PUBLIC for _, p in params)
            mro = cls.__mro__
            dicts = tuple(c.__dict__ for c in mro)
            family = super().get_task_family()
            batch = batched_params(params)
            kept = _ClassParams(mro, dicts, list(map(len, dicts)), params, plain, family, batch)
            type.__setattr__(cls, "_nectar_class_params", kept)
        return kept

    @classmethod
    def batch_param_names(cls) -> list[str]:
        """luigi's, read with the class's parameters (:meth:`get_params`): luigi's worker asks twice for each step it
        adds (its batcher's family, ``batchable``), each time a walk of its parameters."""
        return list(cls._class_params().batch)

    @classmethod
    def get_param_values(
        cls, params: list[tuple[str, luigi.Parameter]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> list[tuple[str, Any]]:
        """luigi's, read once for a task made: luigi's metaclass reads them for its instance cache, then the task's
        ``__init__`` read them again from the same arguments (each default looked up in luigi's configuration)."""
        return param_values_once(cls, params, args, kwargs, super().get_param_values)

    @classmethod
    def get_task_family(cls) -> str:
        """luigi's ``<namespace>.<Class>``, made once per class (and again when the class changes, as its parameters
        are): luigi's asks for the namespace twice at each call, and each task made asks for its family twice."""
        return cls._class_params().family

    def to_str_params(self, only_significant: bool = False, only_public: bool = False) -> dict[str, str]:
        """luigi's, serialized once per task (and variant, for a class with a parameter not significant or not
        public): its parameters are set in ``__init__``, which makes the task_id of them. A submission asked for
        them three times (its task_id, its key's MD5, its run's record), each serializing every parameter."""
        made: tuple[dict[str, Any], dict[tuple[bool, bool], dict[str, str]]] | None = self.__dict__.get(
            "_nectar_str_params"
        )
        if made is None or made[0] is not self.param_kwargs:  # (luigi's own clone() makes a new task)
            made = self.__dict__["_nectar_str_params"] = (self.param_kwargs, {})
        variant = _ALL if self._class_params().plain else (only_significant, only_public)
        found = made[1].get(variant)
        if found is None:
            found = made[1][variant] = super().to_str_params(*variant)
        return dict(found)

    @classmethod
    def get_task_namespace(cls) -> str:
        if cls.task_namespace != luigi.Task.task_namespace:
            return str(cls.task_namespace)
        try:
            return chain_namespace(*cls.chain_ref())
        except (ChainImportError, TypeError):
            return str(super().get_task_namespace())

    def __repr__(self) -> str:
        """luigi's ``Family(param=value, ...)``, made once: its parameters are set for good, as its task_id (luigi's
        worker logs it several times per step, walking the parameters and their configuration each time)."""
        shown: str | None = self.__dict__.get("_nectar_repr")
        if shown is None:
            shown = super().__repr__()
            if "task_id" in self.__dict__:  # made (luigi sets its task_id last): its parameters are final
                self.__dict__["_nectar_repr"] = shown
        return shown

    @functools.cached_property
    def target_key(self) -> TargetKey:
        """The key of ``out.txt``: the chain, the class and the MD5 luigi's task_id uses (kept as it was made)."""
        digest: str | None = self.__dict__.get("_nectar_digest")
        if digest is None:
            return task_key(*self.chain_ref(), self)
        return TargetKey.of_digest(*self.chain_ref(), type(self).__name__, digest)

    @property
    def store(self) -> TargetStore:
        return get_store(kind=self.store_kind)

    def output(self) -> FileSystemTarget:
        return self.store.target(self.target_key)

    def target_for(self, filename: str) -> FileSystemTarget:
        """A target for another file in this task's folder (e.g. ``summary.json``)."""
        return self.store.target(self.target_key.with_file(filename))

    def write_file(self, filename: str, text: str) -> None:
        """Write a text file in this task's folder, atomically."""
        self.store.write_text(self.target_key.with_file(filename), text)

    def params_record(self) -> dict[str, Any]:
        """What ``params.txt`` holds."""
        return params_record(self, self.target_key)


luigi_names.install(NectarTask)  # `luigi --module chains.<type>.<chain> <Task>` finds a chain task by its class name


class NectarS3Task(NectarTask):
    """A :class:`NectarTask` whose targets are always in S3."""

    store_kind = "s3"


class NectarLocalTask(NectarTask):
    """A :class:`NectarTask` whose targets are always in the local targets folder."""

    store_kind = "local"


#: how ``json.dumps`` writes a string (ASCII, every other character escaped): json's C function
_json_string: Callable[[str], str] = json.encoder.encode_basestring_ascii


def read_class(cls: type[luigi.Task]) -> None:
    """Read now what a :class:`NectarTask` class reads as its first task is made, and keeps: its parameters and family
    (:meth:`NectarTask.get_params`); a plain luigi task class keeps nothing (luigi reads them at each task made)."""
    if issubclass(cls, NectarTask):
        cls.get_task_family()


def params_text(record: Mapping[str, Any]) -> str:
    """``json.dumps(record, indent=2)``, byte for byte: params.txt's text.

    json writes an indented document in Python, key by key (~90 µs of an attempt's CPU for each step's params.txt);
    a record as :func:`params_record` makes it (strings, and one mapping of strings) is written here with json's C
    string encoder (~12 µs). Any other record is json's to write.
    """
    lines = []
    for name, value in record.items():
        if type(name) is not str:
            return json.dumps(record, indent=2)
        if type(value) is str:
            text = _json_string(value)
        elif isinstance(value, dict) and all(type(k) is str and type(v) is str for k, v in value.items()):
            inner = ",".join(f"\n    {_json_string(k)}: {_json_string(v)}" for k, v in value.items())
            text = "{" + inner + "\n  }" if value else "{}"
        else:
            return json.dumps(record, indent=2)
        lines.append(f"\n  {_json_string(name)}: {text}")
    return "{" + ",".join(lines) + "\n}" if lines else "{}"


def params_record(task: luigi.Task, key: TargetKey) -> dict[str, Any]:
    """What ``params.txt`` holds, for the task whose folder ``key`` is in."""
    return {
        "chain": key.chain_ref,
        "task": type(task).__name__,
        "task_family": task.get_task_family(),
        "task_id": task.task_id,
        "params": task.to_str_params(only_public=True),
        "key": key.path,
        "started_at": _started_at(),
    }


def _started_at() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


#: the attribute of a task instance holding its params.txt's text up to its ``started_at`` (:func:`params_head`),
#: made ahead while luigid answers the ``get_work`` that grants the step (:func:`make_folders_ahead`)
_PARAMS_AHEAD = "_nectar_params_ahead"


def params_head(task: luigi.Task, key: TargetKey) -> str:
    """params.txt's text for ``task`` (its folder's ``key``) up to the value of its last entry, ``started_at``: what
    :func:`params_text` writes of :func:`params_record`'s record but that time. Nothing in it changes once the task is
    made: its parameters, family and task_id are set by its ``__init__``, its key by them."""
    record = params_record(task, key)
    return params_text(record).rpartition(_json_string(record["started_at"]))[0]


def params_file_text(task: luigi.Task, key: TargetKey) -> str:
    """params.txt's text as the step starts (``params_text(params_record(task, key))``), its head made ahead if it
    was (:func:`make_folders_ahead`)."""
    head: str | None = task.__dict__.get(_PARAMS_AHEAD)
    if head is None:
        head = params_head(task, key)
    return f"{head}{_json_string(_started_at())}\n}}"


#: each task class's ``(type, chain)``, or None: held no longer than the class (a chain reloaded makes new classes)
_CHAIN_REFS: weakref.WeakKeyDictionary[type, tuple[str, str] | None] = weakref.WeakKeyDictionary()


def _chain_ref_of(cls: type) -> tuple[str, str] | None:
    """``(type, chain)`` of the chain file defining ``cls``; None for a class from anywhere else."""
    try:
        return _CHAIN_REFS[cls]
    except KeyError:
        pass
    try:
        ref: tuple[str, str] | None = chain_of_file(inspect.getfile(cls))
    except (ChainImportError, TypeError, OSError):
        ref = None
    _CHAIN_REFS[cls] = ref
    return ref


def log_key(task: luigi.Task) -> TargetKey | None:
    """The key of the folder holding the task's params.txt and logs: a NectarTask's ``target_key``; for a
    plain luigi task of a chain, the same formula (its chain, class and significant parameters). None for
    a task that never runs here (an external task) or is defined outside any chain file."""
    if isinstance(task, NectarTask):
        return task.target_key
    if task.run is None:
        return None
    key: TargetKey | None = task.__dict__.get("_nectar_log_key")
    if key is None:
        ref = _chain_ref_of(type(task))
        if ref is None:
            return None
        key = task.__dict__["_nectar_log_key"] = task_key(*ref, task)
    return key


def _store_of(task: luigi.Task) -> TargetStore:
    return task.store if isinstance(task, NectarTask) else get_store()


def store_disk_full(task: luigi.Task, exc: BaseException) -> str | None:
    """If ``exc``, raised by ``task``, is its store's full disk, what the store says of it
    (:meth:`~nectar.stores.base.TargetStore.disk_full`); else None (the task's own failure)."""
    try:
        return _store_of(task).disk_full(exc)
    except Exception:  # the store cannot be made: the failure is told as it is
        logger.debug("cannot ask the store of %s whether its disk is full", task, exc_info=True)
        return None


#: the attribute of a task instance set once its folder and its ``log/`` were made ahead (:func:`make_folders_ahead`)
_FOLDERS_MADE = "_nectar_folders_made"
#: the attribute of a task instance whose folder was made new as it was made ahead: nothing can be left in it
_FOLDER_NEW = "_nectar_folder_new"


def make_folders_ahead(task: luigi.Task) -> None:
    """Make the folder of ``task``'s params.txt and its ``log/`` now, where its store has folders: an attempt makes
    them while luigid answers the ``get_work`` that grants the step (:meth:`~nectar.build.Build.run`), two ``mkdir``
    calls (0.1-0.5 ms each in a folder of many steps) no longer between luigid's grant and ``run()``, nor between
    ``run()`` and DONE. Nothing is written in them until the step starts; one that fails here is made again as its
    first file is written, and says why then."""
    key = log_key(task)
    if key is None:
        return
    try:  # params.txt's text but its time, while luigid answers: no step's own file is written before the grant
        task.__dict__[_PARAMS_AHEAD] = params_head(task, key)
    except Exception:  # made again as the step starts, which says what failed
        logger.debug("could not make the params.txt of %s ahead", key.folder, exc_info=True)
    try:
        store = _store_of(task)
        new = store.make_folder_of(key.with_file(PARAMS_FILE))
        store.make_folder_of(key.with_file(STDOUT_FILE))
    except Exception:  # its writes make the folders as they would have, and fail with the reason if they must
        logger.debug("could not make the folders of %s ahead", key.folder, exc_info=True)
        return
    task.__dict__[_FOLDERS_MADE] = True
    task.__dict__[_FOLDER_NEW] = new


class _Recording:
    """params.txt when a run starts; logs captured while it runs and saved when it ends.

    With a remote store (S3), the growing logs are also copied there every ``NECTAR_LOG_SYNC`` seconds
    while the task runs (:class:`_LogSync`), so that an API on another machine can show them.
    """

    def __init__(self, task: luigi.Task, key: TargetKey) -> None:
        self.task, self.key, self.store = task, key, _store_of(task)
        #: whether its folder and ``log/`` were made ahead (:func:`make_folders_ahead`)
        self.folders_made: bool = task.__dict__.get(_FOLDERS_MADE, False)
        self.logs = take_live_logs(key)
        self._sync: _LogSync | None = None
        #: the size of each log when it was last copied to the store
        self._copied: dict[str, int] = {}

    def start(self) -> None:
        try:
            if not self.task.__dict__.get(_FOLDER_NEW, False):  # a folder made new holds nothing left
                self._remove_leftovers()
            text = params_file_text(self.task, self.key)
            self.store.write_text(self.key.with_file(PARAMS_FILE), text, new_folder=not self.folders_made)
        except BaseException:
            self.logs.close()
            raise
        interval = get_settings().log_sync_interval
        if interval > 0 and self.store.remote:
            self._sync = _LogSync(self, interval)
            self._sync.start()

    def _remove_leftovers(self) -> None:
        """Remove what writers of this step's folder killed mid-write left there (an attempt SIGKILLed while it wrote
        out.txt: ``out.txt-luigi-tmp-<n>``), said at WARNING. A file a live writer holds is passed over (its writer's
        lock, :func:`nectar.stores.local.remove_temporaries`): a writer frozen past its lease, or another run's attempt
        of the step where no luigid grants it to one worker at a time (luigid grants it to another once the one before
        stopped pinging for ``worker_disconnect_delay``, 30 s, whatever the lease of the one before)."""
        removed = self.store.remove_leftovers(self.key)
        if removed:
            logger.warning("removed %d file(s) a killed writer left in %s: %s", len(removed), self.key.folder, removed)

    def capturing(self) -> Any:
        return redirect_output(self.logs.stdout, self.logs.stderr)

    def upload(self, move: bool = False) -> None:
        """Copy the logs to the store in one commit (with ``move``, the store may take them instead); while they are
        copied as they grow (:class:`_LogSync`), only those whose size changed since their last copy."""
        files, sizes = [], {}
        for path, name in ((self.logs.stdout_path, STDOUT_FILE), (self.logs.stderr_path, STDERR_FILE)):
            if self._sync is not None:
                sizes[name] = size = path.stat().st_size
                if self._copied.get(name) == size:  # a log only grows: the same size is the same content
                    continue
            files.append((path, self.key.with_file(name)))
        self.store.put_files(files, move, new_folder=not self.folders_made)
        self._copied.update(sizes)

    def finish(self) -> None:
        if self._sync is not None:
            self._sync.halt()
        self.logs.close()
        try:
            self.upload(move=True)
        except Exception:  # the run's own outcome must not be masked by a failed log upload
            stdout, stderr = self.logs.stdout_path, self.logs.stderr_path
            logger.exception("could not save the logs of %s; they stay in %s and %s", self.key.folder, stdout, stderr)
        else:
            if not self.store.takes_moved:  # a store that moved them left nothing
                for path in (self.logs.stdout_path, self.logs.stderr_path):
                    path.unlink(missing_ok=True)


class _LogSync(threading.Thread):
    """Copies a running task's logs to the store every ``interval`` seconds, until halted."""

    def __init__(self, recording: _Recording, interval: float) -> None:
        super().__init__(name="nectar-log-sync", daemon=True)
        self.recording, self.interval = recording, interval
        self._halted = threading.Event()

    def run(self) -> None:
        """A first copy at once (another machine's API can serve the step's logs as soon as it runs), then one
        every ``interval`` seconds."""
        while True:
            try:
                self.recording.upload()
            except LeaseLost:  # the attempt is no longer ours: it writes nothing more
                return
            except Exception as exc:  # the store is briefly unreachable: the next copy (or the last) will do
                logger.debug("could not copy the logs of %s yet: %s", self.recording.key.folder, exc)
            if self._halted.wait(self.interval):
                return

    def halt(self) -> None:
        self._halted.set()
        self.join()


def _report(exc: BaseException) -> None:
    """Put why the task's run ended in its stderr log: the traceback of a failure, one line for an interrupt."""
    if isinstance(exc, Interrupted):  # its run was cancelled or reclaimed, or its worker is stopping: no fault
        print(f"interrupted: {exc}", file=sys.stderr)
    else:
        traceback.print_exc()


#: what marks a task's ``run`` as already wrapped by :func:`_recorded` (set on the wrapper, a function)
_RECORDED = "_nectar_recorded"
#: luigi's name of a task's work, replaced by its recorded wrapper (on a task class, or on one task of a class that
#: is no NectarTask): set by name, as luigi's ``Task`` has ``run`` as a method, which mypy lets none assign to
_RUN = "run"


#: the names ``functools.wraps`` copies from a wrapped function onto its wrapper, as this Python lists them
_WRAPPER_ASSIGNMENTS = functools.WRAPPER_ASSIGNMENTS


def _wraps(run: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``functools.wraps(run)``: a plain function's names, ``__dict__`` and ``__wrapped__`` copied in C (each class of a
    chain file has its ``run`` wrapped, each time a run executes the file: ``update_wrapper``'s loop, with its
    ``try`` for an attribute missing, which a function never misses, was ~115 bytecodes a class); another callable's
    by ``functools.update_wrapper`` itself."""
    if type(run) is not types.FunctionType:
        return functools.wraps(run)

    def wrapped(wrapper: Callable[..., Any]) -> Callable[..., Any]:
        names = _WRAPPER_ASSIGNMENTS
        deque(map(setattr, repeat(wrapper, len(names)), names, map(getattr, repeat(run, len(names)), names)), 0)
        wrapper.__dict__.update(run.__dict__)
        wrapper.__dict__["__wrapped__"] = run  # set last, as update_wrapper sets it: a copied one is replaced
        return wrapper

    return wrapped


def _is_generator_function(run: Callable[..., Any]) -> bool:
    """``inspect.isgeneratorfunction(run)``, a plain function's code's flag read at once."""
    if type(run) is types.FunctionType:
        return bool(run.__code__.co_flags & inspect.CO_GENERATOR)
    return inspect.isgeneratorfunction(run)


def _recorded(run: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a task's ``run`` (plain or generator) with :class:`_Recording`."""

    if _is_generator_function(run):

        @_wraps(run)
        def generator_wrapper(self: luigi.Task, *args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            key = log_key(self)
            if key is None:  # a task of no chain: nothing to record it under
                return (yield from run(self, *args, **kwargs))
            with step_locks.held(key.folder) as lock:
                if step_locks.made_meanwhile(self, lock):
                    return None
                recording = _Recording(self, key)
                recording.start()
                try:
                    with recording.capturing():
                        gen = run(self, *args, **kwargs)
                    sent: Any = None
                    while True:
                        with recording.capturing():
                            try:
                                dependency = gen.send(sent)
                            except StopIteration as stop:
                                return stop.value
                            except BaseException as exc:
                                _report(without_own_frame(exc))  # as luigi sees a run's failure
                                raise
                        try:
                            sent = yield dependency
                        except GeneratorExit:  # left by luigi for its undone dependencies: run again after them
                            step_locks.left_undone(self, lock)
                            raise
                finally:
                    recording.finish()

        setattr(generator_wrapper, _RECORDED, True)
        return generator_wrapper

    @_wraps(run)
    def wrapper(self: luigi.Task, *args: Any, **kwargs: Any) -> Any:
        key = log_key(self)
        if getattr(self, "_nectar_recording", False) or key is None:  # super().run() of a recorded run; no chain
            return run(self, *args, **kwargs)
        with step_locks.held(key.folder) as lock:
            if step_locks.made_meanwhile(self, lock):
                return None
            recording = _Recording(self, key)
            recording.start()
            self.__dict__["_nectar_recording"] = True
            try:
                with recording.capturing():
                    try:
                        return run(self, *args, **kwargs)
                    except BaseException as exc:
                        _report(without_own_frame(exc))  # as luigi sees a run's failure
                        raise
            finally:
                self.__dict__["_nectar_recording"] = False
                recording.finish()

    setattr(wrapper, _RECORDED, True)
    return wrapper


def _record_run(task: luigi.Task) -> None:
    """luigi starts ``task``: wrap its ``run`` as a NectarTask's is, unless its class's already is."""
    run = getattr(task, "run", None)
    if run is None or getattr(run, _RECORDED, False) or log_key(task) is None:
        return
    setattr(task, _RUN, types.MethodType(_recorded(type(task).run), task))


#: what nectar does as luigi starts a step, by part, in the order it is done (:func:`on_start`, :func:`_step_starts`)
START_PARTS = ("step", "worker", "recording")
#: the handler of each part set in this process (:func:`on_start`)
_start_handlers: dict[str, Callable[[luigi.Task], object]] = {}


def on_start(part: str, handler: Callable[[luigi.Task], object]) -> None:
    """From now on in this process, ``handler(task)`` is what nectar does for ``part`` (one of :data:`START_PARTS`)
    as luigi starts a step, at that part's place in their order; set again, it replaces the one before.

    luigi keeps a class's handlers of an event in a set, called in the order of their hashes, so in an order that
    differs from process to process: nectar registers one handler of luigi's START (:func:`_step_starts`), which calls
    the parts in one order everywhere."""
    if part not in START_PARTS:
        raise ValueError(f"{part!r} is none of {START_PARTS}")
    if not _start_handlers:
        luigi.Task.event_handler(Event.START)(_step_starts)
    _start_handlers[part] = handler


def _step_starts(task: luigi.Task) -> None:
    """luigi starts ``task``, a step: what nectar does, in this order, in every process.

    1. ``step``: its live logs made, then the step written RUNNING to the registry (:meth:`.StepRecorder.start`),
       so a step shown RUNNING has logs to serve, and an attempt killed from now on is blamed on this step.
    2. ``worker``: the worker told that the attempt's first step started (:func:`.spares.started`), so what it does
       then (forking its last spare) does not compete with that write, and a worker that heard it knows the
       registry shows the step.
    3. ``recording``: its ``run()`` wrapped to record its params.txt and logs (:func:`_record_run`): only needed
       before luigi calls it, which it does after every handler.

    As luigi protects each of its handlers, each part is: one that raises is logged and the next is done; a
    KeyboardInterrupt ends the event (luigi then calls no handler left, a user's neither). A user's own handlers
    of START (``@MyTask.event_handler(luigi.Event.START)``) are luigi's to call, as before."""
    for part in START_PARTS:
        handler = _start_handlers.get(part)
        if handler is None:
            continue
        try:
            handler(task)
        except KeyboardInterrupt:
            raise
        except BaseException:  # as luigi's trigger_event: a handler's failure is logged, not the step's
            logger.exception("nectar's %s part failed as %s started", part, task.task_id)


def record_every_task() -> None:
    """From now on in this process, every task of a chain luigi runs has its params.txt and logs
    recorded, a plain luigi task as a NectarTask (an attempt's process calls it once)."""
    on_start("recording", _record_run)


def _step_folder(task: luigi.Task) -> str | None:
    """The folder of ``task``'s step (its lock's name, :mod:`nectar.step_locks`); None for a task with no step here."""
    key = log_key(task)
    return key.folder if key is not None else None


step_locks.steps_found_by(_step_folder)

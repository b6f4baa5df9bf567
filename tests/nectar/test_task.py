"""The task base classes: which store they write to, params.txt and logs beside every output."""

from __future__ import annotations

import functools
import gc
import inspect
import json
import sys
import types
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import luigi
import pytest
from luigi.parameter import ParameterVisibility
from luigi.task_register import Register, TaskClassAmbigiousException

from nectar import task as task_module
from nectar.catalog import ChainCatalog
from nectar.config import Settings, configure
from nectar.errors import ChainImportError
from nectar.exposure import names_of
from nectar.keys import PARAMS_FILE, STDERR_FILE, STDOUT_FILE, TargetKey, task_key
from nectar.luigi_internals import forget_task_classes
from nectar.luigi_names import with_short_names
from nectar.stores.local import LocalStore
from nectar.stores.s3 import S3Store
from nectar.task import NectarTask, chain_of_file, log_key, params_text
from tests.helpers.one_process import all_pass_in_this_order

WriteChain = Callable[[str, str], Path]

STORES_CHAIN = """
import luigi

from nectar import NectarLocalTask, NectarS3Task, NectarTask


class Writes:
    def run(self):
        print(f"writing {type(self).__name__}")
        with self.output().open("w") as out:
            out.write(type(self).__name__)


class PlainTask(Writes, NectarTask):
    pass


class S3OnlyTask(Writes, NectarS3Task):
    pass


class LocalOnlyTask(Writes, NectarLocalTask):
    pass


class DynamicTask(NectarTask):
    '''Yields a dependency from run() and extends a parent's run().'''

    def run(self):
        print("before the dependency")
        upstream = yield PlainTask()
        print("after the dependency:", upstream.open().read())
        with self.output().open("w") as out:
            out.write("dynamic")


class ChildTask(PlainTask):
    def run(self):
        print("child first")
        super().run()
"""


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ("local", {"PlainTask": "local", "S3OnlyTask": "s3", "LocalOnlyTask": "local"}),
        ("test", {"PlainTask": "s3", "S3OnlyTask": "s3", "LocalOnlyTask": "local"}),
    ],
)
def test_store_follows_env_unless_the_class_forces_one(
    s3_settings: Settings,
    write_chain: WriteChain,
    monkeypatch: pytest.MonkeyPatch,
    env: str,
    expected: dict[str, str],
) -> None:
    monkeypatch.setenv("ENV", env)
    settings = Settings.from_env(
        chains_dir=s3_settings.chains_dir,
        local_targets_dir=s3_settings.local_targets_dir,
        data_dir=s3_settings.data_dir,
        s3_bucket=s3_settings.bucket,
    )
    configure(settings)
    write_chain("stores/where_chain", STORES_CHAIN)
    catalog = ChainCatalog(settings.chains_dir)
    tasks = {name: catalog.task("stores", "where_chain", name).instantiate({}) for name in expected}

    assert luigi.build(list(tasks.values()), local_scheduler=True, workers=1) is True

    stores = {"local": LocalStore(settings.local_targets_dir), "s3": S3Store(settings.bucket)}
    for name, task in tasks.items():
        where = {kind for kind, store in stores.items() if store.exists(task.target_key)}
        assert where == {expected[name]}, name
        store = stores[expected[name]]
        assert store.read_text(task.target_key) == name
        assert store.read_text(task.target_key.with_file(STDOUT_FILE)) == f"writing {name}\n"
        assert json.loads(store.read_text(task.target_key.with_file(PARAMS_FILE)))["task"] == name


def test_params_txt_and_logs_of_generator_and_inherited_runs(settings: Settings, write_chain: WriteChain) -> None:
    write_chain("stores/where_chain", STORES_CHAIN)
    catalog = ChainCatalog(settings.chains_dir)
    dynamic = catalog.task("stores", "where_chain", "DynamicTask").instantiate({})
    child = catalog.task("stores", "where_chain", "ChildTask").instantiate({})

    assert luigi.build([dynamic, child], local_scheduler=True, workers=1) is True

    store = LocalStore(settings.local_targets_dir)
    assert store.read_text(dynamic.target_key.with_file(STDOUT_FILE)) == (
        "before the dependency\nafter the dependency: PlainTask\n"
    )
    assert store.read_text(child.target_key.with_file(STDOUT_FILE)) == "child first\nwriting ChildTask\n"
    assert store.read_text(child.target_key.with_file(STDERR_FILE)) == ""
    text = store.read_text(dynamic.target_key.with_file(PARAMS_FILE))
    record = json.loads(text)
    assert text == json.dumps(record, indent=2)  # as json writes it, byte for byte
    assert record["chain"] == "stores/where_chain" and record["task_id"] == dynamic.task_id
    assert record["task_family"] == "stores.where_chain.DynamicTask" == dynamic.get_task_family()
    assert record["key"] == dynamic.target_key.path and record["params"] == {}
    assert not list(settings.live_logs_dir.rglob("*.log"))  # live logs are moved, not left behind


TWIN_CHAIN = """
from nectar import NectarTask


class TwinTask(NectarTask):
    def run(self):
        with self.output().open("w") as out:
            out.write(self.task_id)
"""


def test_families_are_type_chain_and_class_and_short_names_are_found_while_unambiguous(
    settings: Settings, write_chain: WriteChain
) -> None:
    """Two chains of the same name in two types, each with a ``TwinTask``: distinct families, task ids and keys."""
    catalog = ChainCatalog(settings.chains_dir)
    write_chain("north/twin_chain", TWIN_CHAIN)
    north = catalog.task("north", "twin_chain", "TwinTask").instantiate({})
    assert Register.get_task_cls("TwinTask") is type(north)  # the only TwinTask loaded: its class name finds it
    write_chain("south/twin_chain", TWIN_CHAIN)
    south = catalog.task("south", "twin_chain", "TwinTask").instantiate({})

    assert (north.get_task_family(), south.get_task_family()) == (
        "north.twin_chain.TwinTask",
        "south.twin_chain.TwinTask",
    )
    assert north.task_id.startswith("north.twin_chain.TwinTask_") and north.task_id != south.task_id
    assert north.target_key.path == "chains/north/twin_chain/TwinTask/99914b932bd37a50b983c5e7c90ae93b/out.txt"
    assert Register.get_task_cls("south.twin_chain.TwinTask") is type(south)
    with pytest.raises(TaskClassAmbigiousException):
        Register.get_task_cls("TwinTask")


def test_the_families_test_run_after_one_that_loaded_other_twin_chains_in_its_process_still_passes() -> None:
    """The test above, run in one pytest process after test_visualiser's, which executes a ``north`` and a ``south``
    twin chain of its own folder: luigi kept both ``TwinTask`` classes, and the short name ``TwinTask`` was ambiguous
    here (as in an xdist worker that ran the two files in that order; seed 5301 of a shuffled ``-n0`` run). A test's
    chain classes are forgotten at its end (``tests/conftest.py``'s ``chain_classes_forgotten``)."""
    earlier = "tests/nectar/test_visualiser.py::test_the_visualiser_shows_a_folder_per_chain_type"
    families = test_families_are_type_chain_and_class_and_short_names_are_found_while_unambiguous.__name__
    this = f"tests/nectar/test_task.py::{families}"
    all_pass_in_this_order(earlier, this)


def test_a_task_named_by_its_class_keeps_its_name() -> None:
    """A plain luigi task whose family is a chain task's class name keeps it; luigi's own families stay."""
    chain_task = type("PlainNameTask", (NectarTask,), {"task_namespace": "t.x_chain"})
    plain = type("PlainNameTask", (luigi.Task,), {})
    reg = {"t.x_chain.PlainNameTask": chain_task, "PlainNameTask": plain}

    assert with_short_names(reg, NectarTask) == reg
    assert with_short_names({"t.x_chain.PlainNameTask": chain_task}, NectarTask)["PlainNameTask"] is chain_task


def test_a_module_whose_names_change_while_they_are_read_gives_its_task_classes() -> None:
    """A chain module's globals can change while its task classes are looked for (a thread of its own binding a
    name, a warning's ``__warningregistry__``: CI once met ``abc``'s, the module of classes made by ``type()`` here):
    "dictionary changed size during iteration" was raised out of the catalog. Here a value's ``__class__``, which
    ``inspect.isclass`` reads, binds a name as it is read."""
    module = types.ModuleType("changing_chain")

    class BindsAName:
        @property
        def __class__(self) -> type:
            vars(module).setdefault("bound_meanwhile", 1)
            return BindsAName

    task = type("ChangingTask", (NectarTask,), {"task_namespace": "t.changing_chain", "__module__": "changing_chain"})
    vars(module).update(first=BindsAName(), ChangingTask=task, Alias=task)

    assert names_of(module) == {task: ["ChangingTask", "Alias"]}


MADE_CHAIN = """
import luigi

from nectar import NectarTask


class Counted(luigi.Task):
    made = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        type(self).made += 1


class MadeTask(NectarTask):
    n = luigi.IntParameter()
    word = luigi.Parameter(default="a b/é")
    quiet = luigi.Parameter(default="q", significant=False)


class MixedTask(NectarTask, Counted):
    n = luigi.IntParameter()
"""


@pytest.mark.parametrize("name", ["MadeTask", "MixedTask"])
def test_a_nectar_tasks_task_id_and_key_are_luigis_and_the_keys_formula(
    settings: Settings, write_chain: WriteChain, name: str
) -> None:
    """A NectarTask made keeps the MD5 of its task_id for its key: its task_id is luigi's ``task_id_str``, its key
    :func:`~nectar.keys.task_key`'s, both of its significant public parameters; a base's ``__init__`` between it and
    luigi's is run."""
    write_chain("made/made_chain", MADE_CHAIN)
    info = ChainCatalog(settings.chains_dir).task("made", "made_chain", name)
    task = info.instantiate({"n": "7"})
    params = task.to_str_params(only_significant=True, only_public=True)
    assert task.task_id == luigi.task.task_id_str(task.get_task_family(), params)
    assert task.target_key == task_key("made", "made_chain", task) == info.key_of(task)
    assert task.target_key.digest[:10] == task.task_id[-10:]
    assert getattr(type(task), "made", 1) == 1, "the __init__ of a base after NectarTask was not run"


class ReadTask(NectarTask):
    task_namespace = "read.read_chain"
    n = luigi.IntParameter()
    word = luigi.Parameter(default="w")
    note = luigi.Parameter(default="")


class UnhashableText(str):
    """A text luigi's instance cache cannot hash (its plain Parameter keeps a value as it is given)."""

    def __hash__(self) -> int:
        raise TypeError(f"unhashable type: {type(self).__name__!r}")


class WithinTask(ReadTask):
    """Makes a ReadTask of the arguments it is given, then is made of others."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.within = ReadTask(*args, **kwargs)
        super().__init__(n=self.within.n + 1, word=self.within.word)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[type]:
    """The classes luigi's ``Task.get_param_values`` is called for, in order."""
    read = vars(luigi.Task)["get_param_values"].__func__
    calls: list[type] = []

    def counted(cls: type, params: object, args: object, kwargs: object) -> object:
        calls.append(cls)
        return read(cls, params, args, kwargs)

    monkeypatch.setattr(luigi.Task, "get_param_values", classmethod(counted))
    return calls


def test_a_task_made_reads_its_parameter_values_once_and_luigis_cache_keeps_it(reads: list[type]) -> None:
    """luigi's metaclass reads a task's parameter values for its instance cache, then its ``__init__`` read them
    again: once now; luigi's cache answers the same task for the same values, a new one for values it cannot hash."""
    Register.clear_instance_cache()
    made = ReadTask(n=1)
    assert reads == [ReadTask]
    assert (made.n, made.word, made.note, made.param_kwargs) == (1, "w", "", {"n": 1, "word": "w", "note": ""})
    assert ReadTask(1) is made and ReadTask(n=1, word="w") is made and len(reads) == 3  # each read for the cache
    assert made.task_id == luigi.task.task_id_str("read.read_chain.ReadTask", made.to_str_params(True, True))
    unhashable = ReadTask(n=2, note=UnhashableText("u"))
    assert unhashable.note == "u" and ReadTask(n=2, note=UnhashableText("u")) is not unhashable and len(reads) == 5


def test_a_task_made_within_a_task_of_the_same_arguments_has_its_own_values(reads: list[type]) -> None:
    made = WithinTask(n=4, word="x")
    assert (made.within.n, made.within.word, made.n, made.word) == (4, "x", 5, "x")
    assert type(made.within) is ReadTask and made.within is ReadTask(n=4, word="x")
    assert made.task_id != made.within.task_id and made.param_kwargs["n"] == 5
    assert reads[:3] == [WithinTask, ReadTask, WithinTask]  # the cache's read; within's one; __init__'s own args


def test_a_task_made_without_luigis_cache_reads_its_values_once(
    reads: list[type], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Register, "_Register__instance_cache", None)
    first = ReadTask(n=6)
    assert ReadTask(n=6) is not first and ReadTask(n=6) == first and reads == [ReadTask] * 3


def test_a_task_made_raises_luigis_errors_and_sees_its_configuration_change() -> None:
    with pytest.raises(
        luigi.parameter.MissingParameterException, match=r"ReadTask\[args=\(\), kwargs=\{\}\]: requires"
    ):
        ReadTask()
    with pytest.raises(luigi.parameter.UnknownParameterException, match="unknown parameter m"):
        ReadTask(n=1, m=2)
    with pytest.raises(luigi.parameter.UnknownParameterException, match="takes at most 3 parameters"):
        ReadTask(1, "w", "", 4)
    with pytest.raises(luigi.parameter.DuplicateParameterException, match="already set"):
        ReadTask(1, n=1)
    config = luigi.configuration.get_config()
    config.add_section("read.read_chain.ReadTask")
    config.set("read.read_chain.ReadTask", "word", "configured")
    try:
        assert ReadTask(n=8).word == "configured"
    finally:
        config.remove_section("read.read_chain.ReadTask")
    assert ReadTask(n=9).word == "w"


PLAIN_CHAIN = """
import luigi


class PlainLuigiTask(luigi.Task):
    n = luigi.IntParameter(default=1)
"""


def test_a_reloaded_chains_old_classes_are_not_kept_by_its_log_keys(
    settings: Settings, write_chain: WriteChain
) -> None:
    """A plain luigi task's log folder is found from its class's chain file; that lookup does not keep the class
    alive once its chain is reloaded (a chain edited all day would otherwise keep every version of its classes)."""
    write_chain("plain/kept_chain", PLAIN_CHAIN)
    catalog = ChainCatalog(settings.chains_dir)
    task = catalog.task("plain", "kept_chain", "PlainLuigiTask").instantiate({"n": "2"})
    key = log_key(task)
    assert key is not None and key.path.startswith("chains/plain/kept_chain/PlainLuigiTask/")
    old = weakref.ref(type(task))
    del task
    Register.clear_instance_cache()
    write_chain("plain/kept_chain", PLAIN_CHAIN + "\n# edited\n")
    catalog.refresh_chain("plain", "kept_chain")
    fresh = catalog.task("plain", "kept_chain", "PlainLuigiTask").instantiate({"n": "2"})
    assert log_key(fresh) == key and type(fresh) is not old()
    gc.collect()
    assert old() is None


#: params.txt records: as :func:`~nectar.task.params_record` makes them (strings, one mapping of strings), with what
#: json escapes (quotes, backslashes, control characters, non-ASCII, a lone surrogate), and records it does not make
PARAMS_RECORDS = [
    {"chain": "a/b_chain", "task": "T", "params": {"n": "5", "day": "2024-01-01"}, "started_at": "2024-01-01T00:00:00"},
    {"task": "T", "params": {}, "key": "a/b_chain/T/0123"},
    {'quote"s': "back\\slash", "params": {"ctl\n\t\x00\x1f\x7f": "é中\U0001f600\u2028\ud800"}},
    {},
    {"params": {"n": 5}},
    {"n": 5, "f": 1.5, "b": True, "none": None, "list": ["a", 1]},
    {"params": {"nested": {"x": "y"}}},
    {1: "non-string key"},
]


@pytest.mark.parametrize("record", PARAMS_RECORDS)
def test_params_txt_is_written_as_json_writes_it_indented(record: dict[object, object]) -> None:
    """params.txt's text, made with json's C string encoder, is ``json.dumps(record, indent=2)`` byte for byte."""
    assert params_text(record) == json.dumps(record, indent=2)


class ParamsTextTask(luigi.Task):
    """A task whose parameters json escapes (quotes, backslashes, control characters, non-ASCII), one not public."""

    text = luigi.Parameter(default='quote" back\\slash\n\t\x1f é中\U0001f600\u2028')
    n = luigi.IntParameter(default=5)
    hidden = luigi.Parameter(default="h", visibility=ParameterVisibility.PRIVATE)


class NoParamsTextTask(luigi.Task):
    """A task without parameters: params.txt's ``params`` is ``{}``."""


STARTED = "2024-01-02T03:04:05+00:00"


@pytest.mark.parametrize(
    "make",
    [ParamsTextTask, functools.partial(ParamsTextTask, text="", n=-1), NoParamsTextTask],
    ids=["escaped", "empty", "none"],
)
def test_params_txt_made_of_its_task_is_its_records_json(
    make: Callable[[], luigi.Task], monkeypatch: pytest.MonkeyPatch
) -> None:
    """params.txt's text, made of the task without its record (:func:`~nectar.task.params_file_text`), is the record
    json writes indented (:func:`~nectar.task.params_record`), byte for byte."""
    monkeypatch.setattr(task_module, "_started_at", lambda: STARTED)
    task = make()
    key = TargetKey.of_digest("plain", "text_chain", type(task).__name__, task_module.param_digest({}))
    record = task_module.params_record(task, key)
    assert record["started_at"] == STARTED and "hidden" not in record["params"]
    assert task_module.params_file_text(task, key) == json.dumps(record, indent=2)


def test_params_txt_made_ahead_is_its_own_tasks_with_the_time_its_step_starts(
    settings: Settings, write_chain: WriteChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What is made of params.txt while luigid answers (:func:`~nectar.task.make_folders_ahead`) is its own task's,
    and its time is the one at which the step starts: another task made ahead since (a reused process's next run),
    or one not made ahead, writes its own."""
    write_chain("plain/ahead_chain", PLAIN_CHAIN)
    found = ChainCatalog(settings.chains_dir).task("plain", "ahead_chain", "PlainLuigiTask")
    tasks = [found.instantiate({"n": n}) for n in ("2", "3", "4")]
    monkeypatch.setattr(task_module, "_started_at", lambda: "2023-12-31T23:59:59+00:00")
    for task in tasks[:2]:
        task_module.make_folders_ahead(task)
    for n, task in zip(("2", "3", "4"), tasks, strict=True):
        started = f"2024-01-01T00:00:0{n}+00:00"
        monkeypatch.setattr(task_module, "_started_at", lambda started=started: started)
        key = log_key(task)
        assert key is not None
        written = json.loads(task_module.params_file_text(task, key))
        assert written == {**task_module.params_record(task, key), "started_at": started}
        assert (written["params"], written["key"]) == ({"n": n}, key.path)


class StartedTask(luigi.Task):
    """A task whose run() and whose user's START handler note that they were called (in ``StartedTask.calls``)."""

    calls: ClassVar[list[str]] = []

    def run(self) -> None:
        self.calls.append("run")


@StartedTask.event_handler(luigi.Event.START)
def _users_start(task: luigi.Task) -> None:
    StartedTask.calls.append("user")


def test_nectars_start_parts_run_in_their_order_each_protected_and_a_users_handler_still_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The parts are set in the reverse of their order, the step's raises (a registry that cannot be written): luigi
    starting a step does each in :data:`START_PARTS`'s order, the ones after a failure too, and the user's own handler
    of START, then run()."""
    monkeypatch.setattr(task_module, "_start_handlers", {})
    monkeypatch.setattr(StartedTask, "calls", [])
    monkeypatch.setitem(luigi.Task._event_callbacks, luigi.Task, {})  # nectar's own, as in a fresh process

    def part(name: str) -> Callable[[luigi.Task], None]:
        def done(task: luigi.Task) -> None:
            StartedTask.calls.append(name)
            if name == "step":
                raise RuntimeError("the registry cannot be written")

        return done

    for name in reversed(task_module.START_PARTS):
        task_module.on_start(name, part(name))
    assert len(luigi.Task._event_callbacks[luigi.Task][luigi.Event.START]) == 1

    assert luigi.build([StartedTask()], local_scheduler=True, workers=1)
    nectars = [call for call in StartedTask.calls if call != "user"]
    assert nectars == ["step", "worker", "recording", "run"], StartedTask.calls
    assert StartedTask.calls.count("user") == 1, StartedTask.calls  # where among them is luigi's to say


#: the module the classes of the wrapped-run tests claim to be defined in (forgotten after each test)
WRAPPED = "tests.nectar.wrapped_runs"


@pytest.fixture
def wrapped() -> Iterator[str]:
    yield WRAPPED
    forget_task_classes(WRAPPED)


def a_plain_run(self: luigi.Task, *args: int) -> None:
    """Its doc."""


def a_generator_run(self: luigi.Task) -> Iterator[luigi.Task]:
    """Yields."""
    yield from ()


a_plain_run.__dict__.update(marked="kept", __wrapped__="replaced as functools.wraps replaces it")


@pytest.mark.parametrize("run", [a_plain_run, a_generator_run], ids=["plain", "generator"])
def test_a_classs_recorded_run_carries_its_runs_names_as_functools_wraps_gives_them(
    wrapped: str, run: Callable[..., object]
) -> None:
    """A chain task's ``run`` is wrapped (its steps recorded) with its name, doc, module, annotations, attributes and
    ``__wrapped__`` as ``functools.wraps`` gives a wrapper; a generator run's wrapper is a generator function."""
    cls: Any = type("WrappedRunTask", (NectarTask,), {"__module__": wrapped, "run": run})
    recorded = vars(cls)["run"]
    assert recorded is not run
    given = functools.update_wrapper(lambda: None, run)
    for name in [*functools.WRAPPER_ASSIGNMENTS, "__wrapped__"]:
        assert getattr(recorded, name) == getattr(given, name), name
    assert recorded.__wrapped__ is run
    assert {k: v for k, v in vars(recorded).items() if k != task_module._RECORDED} == vars(given)
    assert inspect.isgeneratorfunction(recorded) == inspect.isgeneratorfunction(run)


def test_classes_made_again_wrap_their_runs_without_functools_walk(wrapped: str) -> None:
    """Each class of a chain file has its ``run`` wrapped, each time a run executes the file: a plain function's
    names are copied at once, not through ``functools.update_wrapper``'s loop, nor ``inspect``'s unwrapping."""
    walks: list[str] = []
    walked = {functools.update_wrapper.__code__, inspect.isgeneratorfunction.__code__}

    def seen(frame: types.FrameType, event: str, arg: object) -> None:
        if event == "call" and frame.f_code in walked:
            walks.append(frame.f_code.co_name)

    was = sys.getprofile()
    sys.setprofile(seen)
    try:
        made = [type(f"Wrapped{n}Task", (NectarTask,), {"__module__": wrapped, "run": a_plain_run}) for n in range(2)]
    finally:
        sys.setprofile(was)
    assert walks == []
    assert [vars(cls)["run"].__wrapped__ for cls in made] == [a_plain_run, a_plain_run]


@pytest.mark.parametrize("path", ["/c/chains/etl/daily_chain.py", "/c/chains/other/daily_chain.py", "x/t/a_chain.py"])
def test_a_chain_files_type_and_chain_are_read_from_its_path_as_a_text_or_a_path(path: str) -> None:
    parts = Path(path).parts
    assert chain_of_file(path) == chain_of_file(Path(path)) == (parts[-2], parts[-1].removesuffix(".py"))


@pytest.mark.parametrize(
    "path", ["/c/chains/etl/daily.py", "/c/chains/etl/daily_chain.txt", "/c/chains/e-t/a_chain.py"]
)
def test_a_path_of_no_chain_is_refused_each_time(path: str) -> None:
    for _ in range(2):
        with pytest.raises(ChainImportError):
            chain_of_file(path)

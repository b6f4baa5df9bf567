"""A task class looked up by name (``Register.get_task_cls``, which luigi's ``load_task`` and ``luigi --module`` call)
while another thread forgets a module's classes (:func:`nectar.luigi_internals.forget_task_classes`) is found: the
forgetting deletes from luigi's ``Register._reg`` in place, and a lookup iterating that list while a class below its
position went skipped the class after it ("No task forget_race.AfterTask. Did you mean: forget_race.AfterTask")."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import luigi
import pytest
from luigi.task_register import Register, TaskClassAmbigiousException, TaskClassNotFoundException, load_task

from harness import REPO
from nectar.luigi_internals import forget_task_classes

FORGOTTEN = "tests.nectar.forgotten_while_looked_up"
KEPT = "tests.nectar.kept_while_looked_up"
DEADLINE = 60  # only a hung thread or process waits that long


class Gate:
    """Holds the first lookup that reads :data:`KEPT`'s ``HeldTask``'s family, once armed, until opened: the lookup
    stands at that class of luigi's list while the test forgets a class below it."""

    def __init__(self) -> None:
        self.armed = False
        self.reached = threading.Event()
        self.opened = threading.Event()

    def pause(self) -> None:
        if self.armed:
            self.armed = False
            self.reached.set()
            assert self.opened.wait(DEADLINE)


def registered(gate: Gate) -> tuple[type, type, type]:
    """A (of :data:`FORGOTTEN`), then B, whose family's read waits on ``gate``, and C (both of :data:`KEPT`), each
    registered right after the one before."""
    forgotten = type("ForgottenTask", (luigi.Task,), {"__module__": FORGOTTEN, "task_namespace": "forget_race"})

    def get_task_family(cls: type) -> str:
        gate.pause()
        return f"forget_race.{cls.__name__}"

    held = type(
        "HeldTask",
        (luigi.Task,),
        {"__module__": KEPT, "task_namespace": "forget_race", "get_task_family": classmethod(get_task_family)},
    )
    after = type("AfterTask", (luigi.Task,), {"__module__": KEPT, "task_namespace": "forget_race"})
    at = Register._reg.index(forgotten)
    assert Register._reg[at : at + 3] == [forgotten, held, after]
    return forgotten, held, after


def class_of_loaded_task(name: str) -> type:
    """The class of the task luigi's ``load_task`` makes (as its worker does for a dynamic requirement)."""
    return type(load_task(None, name, {}))


def looked_up_while_forgotten(gate: Gate, look_up: Callable[[str], Any]) -> None:
    """``look_up("forget_race.AfterTask")`` in a thread held at B while A is forgotten: it answers C."""
    forgotten, held, after = registered(gate)
    answers: list[object] = []

    def reader() -> None:
        try:
            answers.append(look_up("forget_race.AfterTask"))
        except Exception as exc:  # noqa: BLE001  (the answer the test reports)
            answers.append(exc)

    gate.armed = True
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    assert gate.reached.wait(DEADLINE)  # the lookup stands at B
    forget_task_classes(FORGOTTEN)  # A, below it, is deleted
    gate.opened.set()
    thread.join(DEADLINE)
    assert not thread.is_alive()

    assert answers == [after]
    assert forgotten not in Register._reg
    assert held in Register._reg and after in Register._reg


@pytest.fixture
def gate() -> Iterator[Gate]:
    made = Gate()
    yield made
    made.opened.set()
    forget_task_classes(FORGOTTEN)
    forget_task_classes(KEPT)


@pytest.mark.parametrize("look_up", [Register.get_task_cls, class_of_loaded_task])
def test_a_class_the_service_looks_up_while_a_module_before_it_is_forgotten_is_found(
    gate: Gate, look_up: Callable[[str], Any]
) -> None:
    import nectar.task  # noqa: F401,PLC0415  (the service's registry: luigi's, extended with chain tasks' class names)

    looked_up_while_forgotten(gate, look_up)


def test_a_class_looked_up_in_a_process_without_the_services_extension_is_found() -> None:
    """A process that forgets classes but never imported :mod:`nectar.task` (luigi's own ``_get_reg``)."""
    script = (
        "import sys; from luigi.task_register import Register\n"
        "from tests.nectar.test_forget_while_looked_up import Gate, looked_up_while_forgotten\n"
        "assert 'nectar.task' not in sys.modules\n"
        "looked_up_while_forgotten(Gate(), Register.get_task_cls)\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=DEADLINE, check=False
    )
    assert ran.returncode == 0, ran.stderr


def test_a_lookup_from_a_copy_keeps_luigis_answers(gate: Gate) -> None:
    """luigi's own rules: two unrelated classes of one family are ambiguous, a subclass of the same family is the
    class answered, a class not ``_visible_in_registry`` is not found."""
    ns = {"__module__": KEPT, "task_namespace": "forget_rules"}
    type("TwiceTask", (luigi.Task,), ns)
    type("TwiceTask", (luigi.Task,), ns)
    base = type("DerivedTask", (luigi.Task,), ns)
    derived = type("DerivedTask", (base,), ns)
    type("HiddenTask", (luigi.Task,), {**ns, "_visible_in_registry": False})

    with pytest.raises(TaskClassAmbigiousException):
        Register.get_task_cls("forget_rules.TwiceTask")
    assert Register.get_task_cls("forget_rules.DerivedTask") is derived
    with pytest.raises(TaskClassNotFoundException):
        Register.get_task_cls("forget_rules.HiddenTask")

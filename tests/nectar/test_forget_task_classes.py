"""Forgetting a chain's task classes (:func:`nectar.luigi_internals.forget_task_classes`, as the catalog drops a
chain whose file is gone) keeps every class another thread defines meanwhile: it rebuilt luigi's ``Register._reg``
from a copy and put the copy back, dropping a class appended between the two. luigi's registry is read through the
seam (:func:`nectar.luigi_internals.task_classes`)."""

from __future__ import annotations

import queue
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

import luigi
import pytest

from nectar.luigi_internals import forget_task_classes, task_classes

FORGOTTEN = "tests.nectar.forgotten_chain"
DEFINED = "tests.nectar.defined_meanwhile"


class Definer:
    """A thread that defines a new task class (of the module :data:`DEFINED`) each time it is asked, and says when
    it has (:meth:`define`): the asking thread waits, so the class is made exactly where it asked."""

    def __init__(self) -> None:
        self.asked: queue.Queue[bool] = queue.Queue()
        self.made: queue.Queue[type] = queue.Queue()
        self.classes: list[type] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.asked.get():
            name = f"Meanwhile{len(self.classes) + self.made.qsize()}Task"
            self.made.put(type(name, (luigi.Task,), {"__module__": DEFINED}))

    def define(self) -> None:
        self.asked.put(True)
        self.classes.append(self.made.get(timeout=60))  # only a hung thread waits that long

    def stop(self) -> None:
        self.asked.put(False)
        self.thread.join(timeout=60)


@pytest.fixture
def definer() -> Iterator[Definer]:
    made = Definer()
    yield made
    made.stop()
    forget_task_classes(DEFINED)


def at_every_instruction(code: types.CodeType, then: Any) -> Any:
    """A trace function that calls ``then()`` before each instruction of a frame running ``code`` the first time it
    runs (bytecode by bytecode, its nested frames untraced): another thread's work placed at each point a thread switch
    could come. Once an instruction, a loop's too: a loop over the list the other thread appends to still ends (a
    comprehension is inlined in its function from Python 3.12 on, traced with it).

    Opcode events are asked for at each of the frame's events: Python 3.13 ignores ``f_trace_opcodes`` set as the
    frame is called (3.11 does not) and gives them from the next event it traces, the frame's first line, on."""
    reached: set[int] = set()

    def local(frame: types.FrameType, event: str, arg: object) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode" and frame.f_lasti not in reached:
            reached.add(frame.f_lasti)
            then()
        return local

    def calls(frame: types.FrameType, event: str, arg: object) -> Any:
        if event == "call" and frame.f_code is code:
            frame.f_trace_opcodes = True
            return local
        return None

    return calls


def test_a_class_another_thread_defines_while_a_module_is_forgotten_is_kept(definer: Definer) -> None:
    doomed = [type(f"Doomed{n}Task", (luigi.Task,), {"__module__": FORGOTTEN}) for n in range(3)]
    assert set(doomed) <= set(task_classes())
    was = sys.gettrace()
    sys.settrace(at_every_instruction(forget_task_classes.__code__, definer.define))
    try:
        forget_task_classes(FORGOTTEN)
    finally:
        sys.settrace(was)

    assert len(definer.classes) > 3  # a class made before each instruction: the window held open at each
    kept = set(task_classes())
    assert not [cls for cls in kept if cls.__module__ == FORGOTTEN]
    assert [cls.__name__ for cls in definer.classes if cls not in kept] == []

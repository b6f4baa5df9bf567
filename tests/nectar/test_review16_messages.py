"""review16 (round 62): a task that takes luigid's messages (``accepts_messages = True``; luigi's visualiser sends
them, luigid hands them to the task's worker at its next ping, and the task answers with ``respond``) gets them when
the service runs it, as under ``python -m luigi``. luigi's worker puts each message (a ``SchedulerMessage``, which
holds its worker's scheduler client, to answer through) on the task's ``multiprocessing.Queue``, which pickles it
in its feeder thread; the service's client (``LuigidRPC``) holds a ``threading.local`` that does not pickle: the
feeder prints its traceback to the step's stderr and drops the message."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import lifeline_env
from nectar.keys import TargetKey
from nectar.registry import RunState
from nectar.task import live_log_paths
from tests.conftest import wait_until
from tests.nectar.test_review15_luigid_view import Served, served  # noqa: F401 (a fixture)
from tests.nectar.test_spare import ended

CHAIN = """
import os
import queue

import luigi

OUT = os.environ["REVIEW15_OUT"]


class MessageTask(luigi.Task):
    n = luigi.IntParameter()
    accepts_messages = True

    def run(self):
        open(os.path.join(OUT, f"started-{self.n}"), "w").close()
        while not os.path.exists(os.path.join(OUT, f"gate-{self.n}")):  # the test's gate: it ends a task never told
            try:
                message = self.scheduler_messages.get(timeout=0.05)
            except queue.Empty:
                continue
            message.respond(f"got {message.content}")
            return
"""


def told(on: Served, out: Path, n: int, stderr: Callable[[], str]) -> tuple[Any, str]:
    """Once ``MessageTask(n=n)`` runs: a message sent to it through luigid, and what it answered, once it did (or
    None, once its step's stderr, ``stderr()``, shows a traceback: the message lost), with that stderr. The task's
    gate opened after."""
    wait_until(lambda: (out / f"started-{n}").exists())
    running = on.scheduler.call("task_list", status="RUNNING", upstream_status="", search=f"n={n})") or {}
    ((task_id, task),) = [(task_id, task) for task_id, task in running.items() if task["name"] == "MessageTask"]
    sent = on.scheduler.call("send_scheduler_message", worker=task["worker_running"], task=task_id, content="hi")

    def answered() -> dict[str, Any] | None:
        answer = on.scheduler.call("get_scheduler_message_response", task_id=task_id, message_id=sent["message_id"])
        return answer if answer.get("response") or "Traceback" in stderr() else None

    answer = wait_until(answered)
    said = stderr()
    (out / f"gate-{n}").write_text("")
    return answer.get("response"), said


def test_a_task_that_accepts_messages_gets_luigids_message_and_answers_it(
    served: Served,  # noqa: F811 (the fixture)
    write_chain: Callable[[str, str], Path],
) -> None:
    chain, out = write_chain("review15/message_chain", CHAIN), Path(os.environ["REVIEW15_OUT"])
    env = {**os.environ, "PYTHONPATH": str(chain.parent), **lifeline_env()}
    env.pop("LUIGI_CONFIG_PATH", None)
    argv = [sys.executable, "-m", "luigi", "--module", chain.stem, "MessageTask", "--n", "1"]
    luigi = subprocess.Popen([*argv, "--scheduler-url", served.luigid], env=env, stdout=subprocess.DEVNULL)
    try:
        assert told(served, out, 1, lambda: "")[0] == "got hi"
    finally:
        (out / "gate-1").write_text("")
        luigi.wait(timeout=120)
    submission = served.nectar.submit("review15", "message_chain", "MessageTask", {"n": 2})
    assert submission.run is not None
    live = live_log_paths(TargetKey.parse(submission.run.key))[1]  # the running step's stderr

    def stderr() -> str:
        return live.read_text() if live.exists() else ""

    answer, said = told(served, out, 2, stderr)
    run = ended(served.nectar, submission.run.id)
    assert run.state == RunState.DONE, run.error
    assert answer == "got hi", said

"""review23: the local store's disk full (``local_targets/``, ``ENV=local``: the README's first deploy and its Docker
volume), an operator's everyday fault beside review21's registry disk full, which is mended (503 naming it, workers
waiting). Here the registry has room and the store has none:

- ``/healthz`` says the store is ``ok`` (it checks the folder is there, not that a file can be written in it), so a
  probe or an alert on it sees nothing;
- every queued run is claimed, meets ``OSError: [Errno 28] No space left on device`` as its first step records its
  ``params.txt``, and burns its attempts in a moment: by hand, a trigger's 2,000 queued runs went FAILED at ~50 a
  second, 322 ``No space left`` tracebacks in the worker's log, while the README's disk-full promise for the registry
  is "workers keep running and wait, and a run cut off meanwhile ends once there is room".

The disk is made full for real: review21's 4 MB tmpfs (root only; skipped where ``mount`` is refused)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from flask.testing import FlaskClient

from nectar.config import Settings
from nectar.registry import RunState
from nectar.service import Nectar
from tests.api.test_review21_disk_full import fill, small_disk  # noqa: F401 (small_disk: the fixture, a 4 MB tmpfs)
from tests.conftest import wait_until
from tests.helpers.registries import closed_at_end

HELLO = "/api/chains/testchains/hello_luigiworld_chain/WithDependencyTask"


def test_healthz_says_the_local_stores_disk_is_full(
    client_for: Callable[[Settings], FlaskClient],
    settings: Settings,
    small_disk: Path,  # noqa: F811 (the fixture)
) -> None:
    targets = small_disk / "targets"
    targets.mkdir()
    client = client_for(settings.replace(local_targets_dir=targets))
    fill(small_disk)
    health = client.get("/healthz").get_json()
    assert health["data"]["store"]["ok"] is False, health


def test_a_run_meeting_the_stores_full_disk_waits_for_room_and_ends_done(
    client_for: Callable[[Settings], FlaskClient],
    settings: Settings,
    small_disk: Path,  # noqa: F811 (the fixture)
    tmp_path: Path,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """The store's disk full, one run and a worker: once an attempt met the full disk, the disk is emptied; the run
    ends DONE, as a run cut off by the registry's full disk does (a full disk is no failure of the task's: the
    attempt is not counted, as an unreachable luigid's is not). On main it is FAILED, 'OSError: [Errno 28] No space
    left on device' (the suite's settings give no retry; with retries, each burns in a moment, see above)."""
    targets = small_disk / "targets"
    targets.mkdir()
    on_small = settings.replace(local_targets_dir=targets)
    client = client_for(on_small)
    fill(small_disk)
    answer = client.post(HELLO, json={"aparam": "full"})
    assert answer.status_code == 202, answer.get_json()
    run_id = answer.get_json()["data"]["run_id"]
    nectar = closed_at_end(Nectar(on_small))
    start_worker(on_small, workers=1)
    log = tmp_path / "worker-0.log"
    # the worker met the full disk and said so (its errno's text, or a line of its own naming the full disk)
    wait_until(
        lambda: any(said in log.read_text() for said in ("No space left on device", "disk is full", "full disk"))
    )
    (small_disk / "filler").unlink()
    wait_until(lambda: not nectar.runs.get(run_id).state.active, timeout=120)  # type: ignore[union-attr]
    run = nectar.runs.get(run_id)
    assert run is not None and run.state == RunState.DONE, (run, log.read_text()[-2000:])

"""review24 (round 70), written as a guard for the mend of review23's store-disk-full finding (a run meeting the local
store's full disk should wait for room, as one meeting the registry's does): a run held up by the full disk must say
so where its user looks. Before the mend it failed at once, its ``error`` naming ``No space left on device`` (passed);
with wt70-xfails' first mend (95c94fc: requeued, ``requeued: local store ... has no room``) it passed; since its
818e58c (merged: the worker claims no run while the store has no room, and says so in its log and ``/healthz``) the
run's answer (``GET /api/runs/<id>``: its state, ``error`` or what it waits for) is a plain ``PENDING`` for as long as
the disk stays full: a user polling the run cannot tell a full disk from a long queue. Same 4 MB tmpfs as
review21's and review23's (root only; skipped where ``mount`` is refused)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from flask.testing import FlaskClient

from nectar.config import Settings
from tests.api.test_review21_disk_full import fill, small_disk  # noqa: F401 (small_disk: the fixture, a 4 MB tmpfs)
from tests.api.test_review23_store_disk_full import HELLO
from tests.conftest import wait_until

#: what names the full disk, in the errno's words or in the service's own
SAID = ("No space left on device", "disk is full", "full disk", "no room")


def test_a_run_held_up_by_the_stores_full_disk_says_so_in_its_answer(
    client_for: Callable[[Settings], FlaskClient],
    settings: Settings,
    small_disk: Path,  # noqa: F811 (the fixture)
    tmp_path: Path,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    targets = small_disk / "targets"
    targets.mkdir()
    on_small = settings.replace(local_targets_dir=targets)
    client = client_for(on_small)
    fill(small_disk)
    answer = client.post(HELLO, json={"aparam": "full-visible"})
    assert answer.status_code == 202, answer.get_json()
    run_id = answer.get_json()["data"]["run_id"]
    start_worker(on_small, workers=1)
    log = tmp_path / "worker-0.log"
    wait_until(lambda: any(said in log.read_text() for said in SAID))  # the worker met the full disk
    seen: list[str] = []

    def says_why_or_is_held() -> bool:  # the answer names it, the run ended, or the worker holds its claims
        seen.append(json.dumps(client.get(f"/api/runs/{run_id}").get_json()))
        ended = '"PENDING"' not in seen[-1] and '"RUNNING"' not in seen[-1]
        return any(said in seen[-1] for said in SAID) or ended or "not claiming runs" in log.read_text()

    wait_until(says_why_or_is_held)
    assert any(said in seen[-1] for said in SAID), seen[-1]

"""Which ENOSPC is the store's (``LocalStore.disk_full``): a run meeting it waits for room uncounted (the attempt's end,
:mod:`nectar.attempt`), while a task's own full disk elsewhere stays the task's failure. The store's disk is made full
for real (review21's 4 MB tmpfs: root only, skipped where ``mount`` is refused). The store's own write is its whatever
the room when asked: the disk may be freed between the error and the attempt's end."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from nectar.keys import TargetKey
from nectar.stores.local import LocalStore
from tests.api.test_review21_disk_full import fill, small_disk  # noqa: F401 (small_disk: the fixture, a 4 MB tmpfs)


def test_a_full_disk_is_the_stores_only_where_it_is_the_stores(small_disk: Path, tmp_path: Path) -> None:  # noqa: F811
    store = LocalStore(small_disk / "targets")
    store.check()
    fill(small_disk)
    with pytest.raises(OSError) as met:  # a write the full disk refuses, as a step's params.txt met it
        with (small_disk / "targets" / "params.txt").open("w") as out:
            out.write("x" * (1 << 20))
    said = store.disk_full(met.value)
    assert said is not None and "has no room" in said and str(store.root) in said, said
    elsewhere = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "task-own.csv"))
    assert store.disk_full(elsewhere) is None  # a file of the task's own, on another disk
    assert LocalStore(tmp_path / "targets").disk_full(OSError(errno.ENOSPC, "No space left on device")) is None
    assert store.disk_full(ValueError("not a disk")) is None
    key = TargetKey("t", "c_chain", "Task", "0" * 32)
    with pytest.raises(OSError) as recorded:  # the store's own write, as a run's params.txt
        store.write_text(key.with_file("params.txt"), "x" * (1 << 20), new_folder=True)
    (small_disk / "filler").unlink()  # room again before the attempt's end asks
    assert store.disk_full(recorded.value) is not None
